"""Billing over the SQLite wallet: holds, settlement, release and the sweeper."""

from __future__ import annotations

import logging
import threading

import pytest

from chalicelib.billing.holds import Billing, Quote
from chalicelib.billing.pricing import Usage, charge
from chalicelib.core.domain import Account, ApiKey, LedgerEntry, Prices
from chalicelib.core.errors import InsufficientQuota
from chalicelib.storage.ports import LimitCharge
from chalicelib.storage.sqlite.limit_repo import SqliteLimitRepo
from tests.sqlite_store import Store, store_in

KEY = ApiKey(key_id="key_1", key_hash="h1", account_id="acct_1", name="k", created_at=0, hint="")
# One unit per input token, ten per output token.
PRICES = Prices(input_per_1m=10**6, output_per_1m=10 * 10**6)


def units(amount: int) -> Quote:
    """A quote of `amount` units and no output."""
    return Quote(PRICES, Usage(prompt_tokens=amount))


@pytest.fixture
def clock():
    return {"now": 1_000_000}


@pytest.fixture
def store(tmp_path) -> Store:
    store = store_in(tmp_path)
    store.accounts.create(Account("acct_1", "a@example.com", 0))
    store.keys.create(KEY)
    store.wallets.credit(LedgerEntry("acct_1", "0000000000000#credit", "credit", 1_000, 0))
    return store


@pytest.fixture
def keys(store):
    return store.keys


@pytest.fixture
def wallets(store):
    return store.wallets


@pytest.fixture
def billing(wallets, keys, clock):
    return Billing(wallets, keys, now_ms=lambda: clock["now"], hold_ttl_ms=1_000)


def test_a_hold_moves_money_from_available_to_held(billing, wallets):
    reservation = billing.reserve("r1", KEY, units(400), timeout_s=1)
    assert reservation.hold.amount == 400
    assert (wallets.balance("acct_1").available, wallets.balance("acct_1").held) == (600, 400)


def test_settling_charges_the_cost_and_returns_the_rest(billing, wallets):
    reservation = billing.reserve("r1", KEY, units(400), timeout_s=1)
    settlement = billing.settle(reservation, 150, model="m", key_id="key_1")
    assert (settlement.charged, settlement.shortfall) == (150, 0)
    assert wallets.balance("acct_1").available == 850 and wallets.balance("acct_1").held == 0


def test_settling_twice_charges_once(billing, wallets):
    reservation = billing.reserve("r1", KEY, units(400), timeout_s=1)
    billing.settle(reservation, 150, model="m", key_id="key_1")
    again = billing.settle(reservation, 150, model="m", key_id="key_1")
    assert again.charged == 0
    assert wallets.balance("acct_1").available == 850
    assert [e.amount for e in wallets.ledger("acct_1")] == [1_000, -150]


def test_an_unaffordable_output_cap_is_lowered_to_what_the_wallet_affords(billing):
    # 100 units of prompt; 10 units per output token; 1000 available → 90 tokens
    quote = Quote(PRICES, Usage(prompt_tokens=100), output_tokens=500)
    reservation = billing.reserve("r1", KEY, quote, timeout_s=1)
    assert reservation.output_tokens == 90 and reservation.hold.amount == 1_000


def test_a_request_that_cannot_afford_its_minimum_is_refused(billing, wallets):
    with pytest.raises(InsufficientQuota):
        billing.reserve("r1", KEY, units(1_001), timeout_s=1)
    assert wallets.balance("acct_1").held == 0


def test_the_sweeper_releases_expired_holds_only(billing, wallets, clock):
    billing.reserve("old", KEY, units(100), timeout_s=1)
    clock["now"] += 2_500  # past 1 s timeout + 1 s grace
    billing.reserve("new", KEY, units(100), timeout_s=1)
    assert billing.sweep() == 1
    assert wallets.balance("acct_1").held == 100
    assert billing.sweep() == 0


def test_a_late_settle_after_the_sweeper_still_charges_once_from_available(billing, wallets, clock):
    reservation = billing.reserve("r1", KEY, units(100), timeout_s=1)
    clock["now"] += 10_000
    billing.sweep()
    settlement = billing.settle(reservation, 60, model="m", key_id="key_1")
    assert settlement.charged == 60
    assert wallets.balance("acct_1").available == 940 and wallets.balance("acct_1").held == 0


def test_concurrent_requests_never_overdraw_and_the_ledger_sums_to_the_balance(billing, wallets):
    # 1000 units afford 10 requests of 100; 50 race for them.
    refused = []
    barrier = threading.Barrier(50)

    def one(n: int) -> None:
        barrier.wait()
        try:
            reservation = billing.reserve(f"r{n}", KEY, units(100), timeout_s=1)
        except InsufficientQuota:
            refused.append(n)
            return
        billing.settle(reservation, 100, model="m", key_id="key_1")

    threads = [threading.Thread(target=one, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    balance = wallets.balance("acct_1")
    assert len(refused) == 40
    assert balance.available == 0 and balance.held == 0
    assert sum(entry.amount for entry in wallets.ledger("acct_1")) == balance.total


def test_a_request_that_uses_exactly_its_quote_is_charged_exactly_its_hold(billing, wallets):
    # One rule prices the hold and the settlement: fine prices, a plan multiplier and
    # several choices round the same way in both.
    prices = Prices(input_per_1m=333, cached_input_per_1m=33, output_per_1m=777)
    quote = Quote(prices, Usage(prompt_tokens=12_345), output_tokens=321, choices=3, multiplier_ppm=1_234_567)
    reservation = billing.reserve("r1", KEY, quote, timeout_s=1)
    used = Usage(prompt_tokens=12_345, completion_tokens=321 * 3)
    assert reservation.hold.amount == charge(prices, used, 1_234_567) == quote.amount(321)
    assert billing.settle(reservation, charge(prices, used, 1_234_567), model="m", key_id="key_1").charged == \
        reservation.hold.amount


def test_a_prompt_that_the_provider_may_cache_is_held_for_at_the_cache_write_price(billing):
    # Per token: 3 units input, 3.75 cache write (the wallet holds 1 000 units).
    prices = Prices(input_per_1m=3_000_000, cache_write_per_1m=3_750_000)
    quote = Quote(prices, Usage(prompt_tokens=200))
    reservation = billing.reserve("r-cache", KEY, quote, timeout_s=1)
    written = Usage(prompt_tokens=200, cache_write_tokens=200)
    assert reservation.hold.amount == charge(prices, written) == 750
    settlement = billing.settle(reservation, charge(prices, written), model="m", key_id="key_1")
    assert (settlement.charged, settlement.shortfall) == (750, 0)
    # Cheaper cache writes hold the prompt at the input price.
    assert Quote(Prices(input_per_1m=3_000_000, cache_write_per_1m=1_000_000), Usage(prompt_tokens=200)).amount(0) \
        == 600


@pytest.mark.parametrize("available", [0, 1, 7, 99, 100, 101, 555, 999, 1_000, 10**6])
def test_the_affordable_output_is_the_largest_cap_whose_hold_fits(available):
    quote = Quote(Prices(input_per_1m=10**6, output_per_1m=3_300_000), Usage(prompt_tokens=7), output_tokens=500,
                  choices=2, multiplier_ppm=1_500_000)
    tokens = quote.affordable_output(available)
    if quote.amount(0) > available:
        assert tokens == -1
        return
    assert quote.amount(tokens) <= available
    assert tokens == 500 or quote.amount(tokens + 1) > available

def test_a_shortfall_is_logged_with_its_request_and_totalled_on_the_account(billing, wallets, caplog):
    quote = Quote(Prices(input_per_1m=10**6), Usage(prompt_tokens=100))
    reservation = billing.reserve("r-short", KEY, quote, timeout_s=1)
    with caplog.at_level(logging.WARNING, logger="chalicelib.billing.holds"):
        settlement = billing.settle(reservation, 1_500, model="m", key_id="key_1")
    assert (settlement.charged, settlement.shortfall) == (1_000, 500)
    assert wallets.balance("acct_1").shortfall == 500
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "r-short" in warning and "acct_1" in warning and "shortfall of 500 units" in warning


def test_the_sweeper_releases_holds_of_a_key_regenerated_since_on_the_key(billing, wallets, keys, clock):
    billing.reserve("r1", KEY, Quote(Prices(input_per_1m=10**6), Usage(prompt_tokens=100)), timeout_s=1)
    keys.replace_hash(KEY, "h2", "sk-new…")
    clock["now"] += 2_500
    assert billing.sweep() == 1
    assert keys.get_by_hash("h2").reserved == 0
    assert (wallets.balance("acct_1").available, wallets.balance("acct_1").held) == (1_000, 0)


def test_the_sweeper_gives_back_the_slots_of_requests_that_never_finished(store, wallets, keys, clock):
    limits = SqliteLimitRepo(store.db)
    billing = Billing(wallets, keys, now_ms=lambda: clock["now"], hold_ttl_ms=1_000, limits=limits)
    one_at_a_time = [LimitCharge("key#key_1", tokens=0, concurrency=1)]
    now_s = clock["now"] // 1000
    assert limits.admit("crashed", one_at_a_time, now_s + 5, now_s=now_s).admitted
    billing.sweep()  # its lease has not expired: the slot stays taken
    assert not limits.admit("next", one_at_a_time, now_s + 5, now_s=now_s).admitted
    clock["now"] += 5_000
    billing.sweep()
    assert limits.admit("next", one_at_a_time, now_s + 60, now_s=now_s + 5).admitted
    assert limits.expired_leases(now_s + 10) == []
