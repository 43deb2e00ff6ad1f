"""The wallet's money invariants against both implementations: a key's quota as a hard cap,
counters exact across a regeneration with requests in flight, the shortfall total, and
exactly-once credits. Races run on real threads."""

from __future__ import annotations

import dataclasses

import pytest

from chalicelib.billing.wallet import Wallet
from chalicelib.core.domain import Account, ApiKey, Hold, HoldResult, LedgerEntry, LedgerKind
from chalicelib.core.errors import Conflict, NotFound
from tests.contract.money import race

KEY = ApiKey(key_id="key_1", key_hash="a" * 64, account_id="acct_1", name="Production", created_at=2,
             hint="sk-abc…wxyz")


def hold(request_id: str, amount: int, *, key_quota: bool = False, at: int = 1_000) -> Hold:
    return Hold(request_id=request_id, account_id="acct_1", key_hash=KEY.key_hash, amount=amount, created_at=at,
                expires_at=at + 10_000, key_quota=key_quota)


def entry(request_id: str, prompt: int = 0, completion: int = 0, at: int = 1_000) -> LedgerEntry:
    return LedgerEntry(account_id="acct_1", entry_id=f"{at:013d}#{request_id}", kind="charge", amount=0,
                       created_at=at + 1, request_id=request_id, key_id="key_1", prompt_tokens=prompt,
                       completion_tokens=completion)


@pytest.fixture
def funded(repos):
    repos.accounts.create(Account(account_id="acct_1", email="a@example.com", created_at=1))
    repos.keys.create(KEY)
    repos.wallets.credit(LedgerEntry("acct_1", "0000000000000#credit", "credit", 10_000, 0))
    return repos


def with_quota(repos, quota: int | None) -> None:
    repos.keys.save_settings(dataclasses.replace(repos.keys.get_by_id("key_1"), quota=quota))


def the_key(repos) -> ApiKey:
    return repos.keys.get_by_id("key_1")


def balance(repos) -> tuple[int, int]:
    b = repos.wallets.balance("acct_1")
    return b.available, b.held


# The key's quota is a hard cap.

def test_settling_beyond_the_hold_charges_at_most_what_the_key_quota_has_left(funded):
    with_quota(funded, 500)
    assert funded.wallets.hold(hold("r1", 100, key_quota=True)) is HoldResult.HELD
    settlement = funded.wallets.settle(hold("r1", 100, key_quota=True), 10_000, entry("r1"))
    assert (settlement.charged, settlement.shortfall) == (500, 9_500)
    key = the_key(funded)
    assert (key.spent, key.quota_left, key.reserved) == (500, 0, 0)
    assert balance(funded) == (9_500, 0)
    last = funded.wallets.ledger("acct_1")[-1]
    assert (last.amount, last.shortfall) == (-500, 9_500)


def test_requests_in_flight_share_what_the_quota_has_left_and_it_never_goes_negative(funded):
    with_quota(funded, 500)
    funded.wallets.hold(hold("r1", 200, key_quota=True))
    funded.wallets.hold(hold("r2", 200, key_quota=True))
    assert funded.wallets.settle(hold("r1", 200, key_quota=True), 1_000, entry("r1")).charged == 300
    assert the_key(funded).quota_left == 0
    assert funded.wallets.settle(hold("r2", 200, key_quota=True), 1_000, entry("r2")).charged == 200
    key = the_key(funded)
    assert (key.spent, key.quota_left, key.reserved) == (500, 0, 0)


def test_the_wallet_caps_a_settlement_when_it_has_less_than_the_quota(funded):
    with_quota(funded, 20_000)
    funded.wallets.hold(hold("r1", 100, key_quota=True))
    settlement = funded.wallets.settle(hold("r1", 100, key_quota=True), 50_000, entry("r1"))
    assert (settlement.charged, settlement.shortfall) == (10_000, 40_000)
    assert balance(funded) == (0, 0)
    assert (the_key(funded).spent, the_key(funded).quota_left) == (10_000, 10_000)


def test_a_quota_set_while_a_request_is_in_flight_caps_its_settlement(funded):
    funded.wallets.hold(hold("r1", 100))
    with_quota(funded, 300)  # 200 left: the request in flight holds 100 of it
    assert funded.wallets.settle(hold("r1", 100), 1_000, entry("r1")).charged == 300
    key = the_key(funded)
    assert (key.spent, key.quota_left, key.reserved) == (300, 0, 0)


def test_a_quota_removed_while_requests_are_in_flight_is_not_brought_back(funded):
    with_quota(funded, 500)
    funded.wallets.hold(hold("r1", 100, key_quota=True))
    funded.wallets.hold(hold("r2", 100, key_quota=True))
    with_quota(funded, None)
    assert funded.wallets.settle(hold("r1", 100, key_quota=True), 2_000, entry("r1")).charged == 2_000
    assert funded.wallets.release(hold("r2", 100, key_quota=True))
    key = the_key(funded)
    assert (key.quota, key.quota_left, key.spent, key.reserved) == (None, None, 2_000, 0)


def test_racing_requests_whose_usage_passes_their_holds_never_spend_past_the_quota(funded):
    with_quota(funded, 1_000)

    def one(n: int) -> int:
        if funded.wallets.hold(hold(f"r{n}", 100, key_quota=True)) is not HoldResult.HELD:
            return 0
        return funded.wallets.settle(hold(f"r{n}", 100, key_quota=True), 5_000, entry(f"r{n}")).charged

    charged = race(30, one)
    key = the_key(funded)
    assert sum(charged) == key.spent == 1_000
    assert (key.quota_left, key.reserved) == (0, 0)
    assert balance(funded) == (9_000, 0)
    ledger = funded.wallets.ledger("acct_1")
    assert sum(e.amount for e in ledger) == 9_000
    settled = sum(1 for e in ledger if e.kind == "charge")
    assert funded.wallets.balance("acct_1").shortfall == sum(e.shortfall for e in ledger) == settled * 5_000 - 1_000


def test_the_shortfall_of_every_settlement_is_totalled_on_the_account(funded):
    funded.wallets.hold(hold("r1", 100))
    funded.wallets.settle(hold("r1", 100), 9_000, entry("r1"))  # fully charged
    funded.wallets.hold(hold("r2", 100))
    funded.wallets.settle(hold("r2", 100), 1_500, entry("r2"))  # 1 000 left: 500 short
    funded.wallets.settle(hold("r3", 0), 70, entry("r3"))  # nothing left: 70 short
    assert funded.wallets.balance("acct_1").shortfall == 570
    assert [e.shortfall for e in funded.wallets.ledger("acct_1")] == [0, 0, 500, 70]


# Regeneration with requests in flight.

def test_requests_in_flight_when_the_key_is_regenerated_count_on_it_exactly(funded):
    with_quota(funded, 5_000)
    for n in range(10):
        assert funded.wallets.hold(hold(f"r{n}", 100, key_quota=True)) is HoldResult.HELD
    funded.keys.replace_hash(KEY, "b" * 64, "sk-bbb…bbbb")
    funded.keys.replace_hash(KEY, "c" * 64, "sk-ccc…cccc")  # twice: the old hash forwards twice
    for n in range(6):
        funded.wallets.settle(hold(f"r{n}", 100, key_quota=True), 40, entry(f"r{n}", prompt=3, completion=2))
    assert funded.wallets.release(hold("r6", 100, key_quota=True))
    assert funded.wallets.release(hold("r7", 100, key_quota=True))
    # The sweeper's way: the holds it finds expired, released.
    for expired in funded.wallets.expired_holds(1_000_000):
        assert funded.wallets.release(expired)

    key = the_key(funded)
    assert key.key_hash == "c" * 64
    assert (key.reserved, key.requests, key.spent, key.quota_left) == (0, 6, 240, 4_760)
    assert (key.prompt_tokens, key.completion_tokens) == (18, 12)
    assert funded.keys.get_by_hash("a" * 64) is None and funded.keys.get_by_hash("b" * 64) is None
    assert balance(funded) == (9_760, 0)


def test_an_old_secret_cannot_hold_once_its_key_is_regenerated(funded):
    funded.keys.replace_hash(KEY, "b" * 64, "sk-bbb…bbbb")
    assert funded.wallets.hold(hold("r1", 100)) is HoldResult.KEY_REFUSED
    assert balance(funded) == (10_000, 0)


def test_settings_saved_on_a_key_read_before_its_regeneration_land_on_the_key(funded):
    funded.keys.replace_hash(KEY, "b" * 64, "sk-bbb…bbbb")
    saved = funded.keys.save_settings(dataclasses.replace(KEY, name="Renamed", quota=700))
    assert (saved.key_hash, saved.name, saved.quota_left) == ("b" * 64, "Renamed", 700)
    assert funded.keys.get_by_hash("a" * 64) is None
    assert the_key(funded) == saved


def test_a_regeneration_racing_settlements_loses_none_of_their_counts(funded):
    for n in range(20):
        funded.wallets.hold(hold(f"r{n}", 100))

    def one(n: int) -> None:
        if n == 20:
            funded.keys.replace_hash(KEY, "b" * 64, "sk-bbb…bbbb")
        else:
            funded.wallets.settle(hold(f"r{n}", 100), 40, entry(f"r{n}", prompt=1))

    race(21, one)
    key = the_key(funded)
    assert (key.key_hash, key.reserved, key.requests, key.spent, key.prompt_tokens) == ("b" * 64, 0, 20, 800, 20)
    assert balance(funded) == (9_200, 0)


# Exactly-once credits.

@pytest.fixture
def wallet(funded) -> Wallet:
    clock = iter(range(5_000, 1_000_000))
    return Wallet(funded.wallets, now_ms=lambda: next(clock))


def test_a_reference_credits_once_however_many_race_for_it(funded, wallet):
    results = race(20, lambda n: wallet.credit("acct_1", 500, "evt_1", LedgerKind.TOPUP, note="top-up"))
    assert sum(result.applied for result in results) == 1
    assert len({result.entry for result in results}) == 1
    credits = [e for e in funded.wallets.ledger("acct_1") if e.reference == "evt_1"]
    assert [(e.amount, e.kind, e.note) for e in credits] == [(500, "topup", "top-up")]
    assert balance(funded) == (10_500, 0)


def test_a_repeated_credit_returns_the_first_one_and_changes_nothing(funded, wallet):
    first = wallet.credit("acct_1", 250, "invoice-7", LedgerKind.ADJUSTMENT)
    again = wallet.credit("acct_1", 250, "invoice-7", LedgerKind.ADJUSTMENT, note="sent twice")
    assert (first.applied, again.applied) == (True, False)
    assert again.entry == first.entry and first.entry.entry_id.startswith("0000000005000#credit#adjustment#")
    assert again.balance == first.balance and first.balance.available == 10_250
    assert len(funded.wallets.ledger("acct_1")) == 2


def test_a_reference_names_one_credit_across_accounts_and_amounts(funded, wallet):
    funded.accounts.create(Account(account_id="acct_2", email="b@example.com", created_at=1))
    wallet.credit("acct_1", 250, "evt_9", LedgerKind.TOPUP)
    with pytest.raises(Conflict):
        wallet.credit("acct_2", 250, "evt_9", LedgerKind.TOPUP)
    with pytest.raises(Conflict):
        wallet.credit("acct_1", 999, "evt_9", LedgerKind.TOPUP)
    assert funded.wallets.balance("acct_2").available == 0
    # Another kind of credit is another claim.
    assert wallet.credit("acct_1", 5, "evt_9", LedgerKind.BONUS).applied
    assert balance(funded) == (10_255, 0)


def test_a_credit_to_an_unknown_account_claims_nothing(funded, wallet):
    with pytest.raises(NotFound):
        wallet.credit("acct_9", 100, "evt_2", LedgerKind.TOPUP)
    assert wallet.credit("acct_1", 100, "evt_2", LedgerKind.TOPUP).applied


def test_credits_and_charges_sort_in_time_order(funded, wallet):
    funded.wallets.hold(hold("r1", 100, at=1_000))
    wallet.credit("acct_1", 300, "evt_3", LedgerKind.TOPUP)  # at 5 000
    funded.wallets.hold(hold("r2", 100, at=9_000))
    funded.wallets.settle(hold("r2", 100, at=9_000), 50, entry("r2", at=9_000))
    funded.wallets.settle(hold("r1", 100, at=1_000), 70, entry("r1", at=1_000))
    assert [e.amount for e in funded.wallets.ledger("acct_1")] == [10_000, -70, 300, -50]
