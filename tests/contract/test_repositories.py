"""One contract, two implementations: SQLite and DynamoDB."""

from __future__ import annotations

import dataclasses

import pytest

from chalicelib.core.domain import (
    Account,
    ApiKey,
    Channel,
    Group,
    Hold,
    HoldResult,
    LedgerEntry,
    ModelEntry,
    ModelKind,
    Prices,
    Route,
    Settlement,
)
from chalicelib.core.errors import Conflict, NotFound

ACCOUNT = Account(account_id="acct_1", email="a@example.com", created_at=1)
KEY = ApiKey(key_id="key_1", key_hash="h" * 64, account_id="acct_1", name="Production", created_at=2,
             hint="sk-abc…wxyz", group="default")


def hold(request_id: str = "r1", amount: int = 100, expires_at: int = 10_000) -> Hold:
    return Hold(request_id=request_id, account_id="acct_1", key_hash=KEY.key_hash, amount=amount,
                created_at=1_000, expires_at=expires_at)


def charge(request_id: str = "r1") -> LedgerEntry:
    return LedgerEntry(account_id="acct_1", entry_id=f"0000000001000#{request_id}", kind="charge", amount=0,
                       created_at=2_000, request_id=request_id, key_id="key_1", model="m")


def credit(amount: int, n: int = 0) -> LedgerEntry:
    return LedgerEntry(account_id="acct_1", entry_id=f"0000000000{n:03d}#credit", kind="credit", amount=amount,
                       created_at=n, note="top-up")


@pytest.fixture
def funded(repos):
    repos.accounts.create(ACCOUNT)
    repos.keys.create(KEY)
    repos.wallets.credit(credit(1_000))
    return repos


def balance(repos):
    b = repos.wallets.balance("acct_1")
    return b.available, b.held


def test_accounts_are_created_once_and_read_back(repos):
    repos.accounts.create(ACCOUNT)
    assert repos.accounts.get("acct_1") == ACCOUNT
    assert repos.accounts.get("acct_2") is None
    with pytest.raises(Conflict):
        repos.accounts.create(ACCOUNT)


def test_keys_are_found_by_hash_only(repos):
    repos.keys.create(KEY)
    assert repos.keys.get_by_hash(KEY.key_hash) == KEY
    assert repos.keys.get_by_hash("0" * 64) is None
    with pytest.raises(Conflict):
        repos.keys.create(KEY)


def test_the_catalog_keeps_channels_and_models(repos):
    channel = Channel("deepseek", "https://api.deepseek.com/v1", "secret")
    model = ModelEntry(name="m", kind=ModelKind.CHAT,
                       prices=Prices(input_per_1m=280_000_000, output_per_1m=420_000_000, cached_input_per_1m=0),
                       routes=(Route("deepseek", "deepseek-chat"), Route("backup", "x")), context_window=128_000,
                       max_output_tokens=8_192, use_case="chat", timeout_s=30.5)
    repos.catalog.put_channel(channel)
    repos.catalog.put_model(model)
    group = Group("pro", multiplier_ppm=1_200_000, models=("m",), description="Pro plan")
    repos.catalog.put_group(group)
    assert repos.catalog.load() == ([channel], [model], [group])


def test_the_catalog_keeps_a_models_cache_write_price(repos):
    repos.catalog.put_channel(Channel("claude", "https://api.anthropic.com/v1", "secret", kind="anthropic"))
    model = ModelEntry(name="c", kind=ModelKind.CHAT, routes=(Route("claude", "claude-sonnet-4-5"),),
                       prices=Prices(input_per_1m=3_000_000_000, output_per_1m=15_000_000_000,
                                     cached_input_per_1m=300_000_000, cache_write_per_1m=3_750_000_000),
                       max_output_tokens=64_000)
    repos.catalog.put_model(model)
    assert repos.catalog.load()[1] == [model]


def test_a_credit_adds_to_the_balance_and_the_ledger(funded):
    assert balance(funded) == (1_000, 0)
    assert [e.amount for e in funded.wallets.ledger("acct_1")] == [1_000]
    assert funded.wallets.ledger("acct_1")[0] == credit(1_000)


def test_a_credit_to_an_unknown_account_is_refused(repos):
    with pytest.raises(NotFound):
        repos.wallets.credit(credit(5))
    assert repos.wallets.ledger("acct_1") == []


def test_a_hold_needs_the_money_available(funded):
    assert funded.wallets.hold(hold("r1", 600)) is HoldResult.HELD
    assert balance(funded) == (400, 600)
    assert funded.wallets.hold(hold("r2", 401)) is HoldResult.WALLET_SHORT
    assert balance(funded) == (400, 600)
    assert funded.wallets.hold(hold("r1", 1)) is not HoldResult.HELD  # a request holds once


def test_settle_charges_from_the_hold_and_returns_the_rest(funded):
    funded.wallets.hold(hold("r1", 300))
    settlement = funded.wallets.settle(hold("r1", 300), 120, charge("r1"))
    assert (settlement.charged, settlement.shortfall) == (120, 0)
    assert balance(funded) == (880, 0)
    entry = funded.wallets.ledger("acct_1")[-1]
    assert (entry.kind, entry.amount, entry.request_id, entry.shortfall) == ("charge", -120, "r1", 0)
    assert funded.keys.get_by_hash(KEY.key_hash).spent == 120


def test_settle_beyond_the_hold_takes_the_rest_from_available_down_to_zero(funded):
    funded.wallets.hold(hold("r1", 300))
    settlement = funded.wallets.settle(hold("r1", 300), 1_500, charge("r1"))
    assert (settlement.charged, settlement.shortfall) == (1_000, 500)
    assert balance(funded) == (0, 0)
    assert funded.wallets.ledger("acct_1")[-1].shortfall == 500


def test_settle_beyond_the_hold_charges_in_full_when_available(funded):
    funded.wallets.hold(hold("r1", 300))
    assert funded.wallets.settle(hold("r1", 300), 450, charge("r1")).charged == 450
    assert balance(funded) == (550, 0)


def test_a_second_settle_charges_nothing(funded):
    funded.wallets.hold(hold("r1", 300))
    funded.wallets.settle(hold("r1", 300), 100, charge("r1"))
    assert funded.wallets.settle(hold("r1", 300), 100, charge("r1")).charged == 0
    assert balance(funded) == (900, 0)
    assert len(funded.wallets.ledger("acct_1")) == 2


@pytest.mark.parametrize("cost", [0, 100])
def test_a_second_settle_counts_nothing_on_the_key(funded, cost):
    funded.wallets.hold(hold("r1", 300))
    entry = dataclasses.replace(charge("r1"), prompt_tokens=5, completion_tokens=7)
    funded.wallets.settle(hold("r1", 300), cost, entry)
    assert funded.wallets.settle(hold("r1", 300), cost, entry) == Settlement(charged=0, shortfall=0)
    key = funded.keys.get_by_hash(KEY.key_hash)
    assert (key.requests, key.prompt_tokens, key.completion_tokens, key.spent, key.reserved) == (1, 5, 7, cost, 0)
    assert balance(funded) == (1_000 - cost, 0)


def test_a_settle_after_release_charges_from_available(funded):
    funded.wallets.hold(hold("r1", 300))
    assert funded.wallets.release(hold("r1", 300))
    assert funded.wallets.settle(hold("r1", 300), 100, charge("r1")).charged == 100
    assert balance(funded) == (900, 0)


def test_release_gives_the_hold_back_once(funded):
    funded.wallets.hold(hold("r1", 300))
    assert funded.wallets.release(hold("r1", 300))
    assert not funded.wallets.release(hold("r1", 300))
    assert balance(funded) == (1_000, 0)
    assert len(funded.wallets.ledger("acct_1")) == 1


def test_a_free_request_writes_no_ledger_entry(funded):
    funded.wallets.hold(hold("r1", 0))
    assert funded.wallets.settle(hold("r1", 0), 0, charge("r1")).charged == 0
    assert len(funded.wallets.ledger("acct_1")) == 1 and balance(funded) == (1_000, 0)


def test_expired_holds_are_listed_for_the_sweeper(funded):
    funded.wallets.hold(hold("old", 10, expires_at=5_000))
    funded.wallets.hold(hold("new", 10, expires_at=50_000))
    assert [h.request_id for h in funded.wallets.expired_holds(10_000)] == ["old"]
    assert funded.wallets.expired_holds(10_000)[0] == hold("old", 10, expires_at=5_000)


def test_the_ledger_sums_to_the_balance(funded):
    for n, cost in enumerate([100, 250, 2_000]):
        funded.wallets.hold(hold(f"r{n}", 50))
        funded.wallets.settle(hold(f"r{n}", 50), cost, charge(f"r{n}"))
    funded.wallets.credit(credit(70, 1))
    available, held = balance(funded)
    assert held == 0 and available == 70
    assert sum(e.amount for e in funded.wallets.ledger("acct_1")) == available + held
