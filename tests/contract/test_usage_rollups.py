"""The live usage rollups against both implementations: each request counted once, by the
transaction that settles or releases it, at what the wallet actually charged; concurrent
requests of one row summed exactly; rows read back by bucket range, per account or for all
accounts across a UTC day's end."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chalicelib.core.domain import Account, ApiKey, Hold, HoldResult, LedgerEntry
from chalicelib.core.usage import HISTOGRAM_SIZE, QUARTER_HOUR_MS, RollupRow, UsageDelta
from tests.contract.money import race

KEY = ApiKey(key_id="key_1", key_hash="a" * 64, account_id="acct_1", name="Production", created_at=2,
             hint="sk-abc…wxyz")
OTHER_KEY = ApiKey(key_id="key_2", key_hash="b" * 64, account_id="acct_2", name="Staging", created_at=3,
                   hint="sk-def…wxyz")
MIDNIGHT = int(datetime(2026, 11, 26, tzinfo=UTC).timestamp() * 1000)  # a UTC day's start
BUCKET = MIDNIGHT + 40 * QUARTER_HOUR_MS  # 10:00 UTC
Q = QUARTER_HOUR_MS


def hold(request_id: str, amount: int = 500, *, key: ApiKey = KEY, at: int = BUCKET) -> Hold:
    return Hold(request_id=request_id, account_id=key.account_id, key_hash=key.key_hash, amount=amount,
                created_at=at, expires_at=at + 60_000)


def entry(request_id: str, *, key: ApiKey = KEY, at: int = BUCKET) -> LedgerEntry:
    return LedgerEntry(account_id=key.account_id, entry_id=f"{at:013d}#{request_id}", kind="charge", amount=0,
                       created_at=at + 1, request_id=request_id, key_id=key.key_id, model="gpt-4o")


def usage(*, at: int = BUCKET + 7_000, key: ApiKey = KEY, error: bool = False, latency_ms: int = 250,
          ttft_ms: int | None = None, **counts: int) -> UsageDelta:
    return UsageDelta(at=at, key_id=key.key_id, model="gpt-4o", channel="openai-main", error=error,
                      latency_ms=latency_ms, ttft_ms=ttft_ms, **counts)


def histogram(**at_index: int) -> tuple[int, ...]:
    counts = [0] * HISTOGRAM_SIZE
    for index, count in at_index.items():
        counts[int(index.removeprefix("b"))] = count
    return tuple(counts)


@pytest.fixture
def funded(repos):
    for account_id, key, n in (("acct_1", KEY, 1), ("acct_2", OTHER_KEY, 2)):
        repos.accounts.create(Account(account_id=account_id, email=f"{account_id}@example.com", created_at=n))
        repos.keys.create(key)
        repos.wallets.credit(LedgerEntry(account_id, "0000000000000#credit", "credit", 100_000, 0))
    return repos


def settled(repos, request_id: str, cost: int, delta: UsageDelta | None, *, key: ApiKey = KEY,
            amount: int = 500, at: int = BUCKET) -> int:
    """Hold and settle one request; what was charged."""
    assert repos.wallets.hold(hold(request_id, amount, key=key, at=at)) is HoldResult.HELD
    return repos.wallets.settle(hold(request_id, amount, key=key, at=at), cost, entry(request_id, key=key, at=at),
                                delta).charged


def everything(repos, account_id: str | None = "acct_1") -> list[RollupRow]:
    return repos.rollups.rows(account_id, MIDNIGHT - 2 * 86_400_000, MIDNIGHT + 2 * 86_400_000)


def test_a_settled_request_is_in_its_rollup_at_once_with_what_was_charged(funded):
    delta = usage(prompt_tokens=1_200, cached_tokens=200, completion_tokens=300, images=1, cost=999,
                  latency_ms=250, ttft_ms=90)
    assert settled(funded, "r1", 420, delta) == 420
    assert everything(funded) == [RollupRow(
        account_id="acct_1", bucket=BUCKET, key_id="key_1", model="gpt-4o", channel="openai-main",
        requests=1, errors=0, prompt_tokens=1_200, cached_tokens=200, completion_tokens=300, images=1, cost=420,
        latency_sum_ms=250, ttft_sum_ms=90, ttft_count=1, histogram=histogram(b3=1),
    )]


def test_a_failed_request_released_counts_as_a_request_and_an_error_at_no_cost(funded):
    assert funded.wallets.hold(hold("r1")) is HoldResult.HELD
    assert funded.wallets.release(hold("r1"), usage(error=True, latency_ms=40, prompt_tokens=10)) is True
    (row,) = everything(funded)
    assert (row.requests, row.errors, row.cost, row.prompt_tokens, row.latency_sum_ms) == (1, 1, 0, 10, 40)
    assert row.histogram == histogram(b0=1)
    assert (row.ttft_sum_ms, row.ttft_count) == (0, 0)
    assert funded.wallets.balance("acct_1").available == 100_000


def test_a_settled_request_that_failed_counts_as_an_error_at_what_was_charged(funded):
    settled(funded, "r1", 0, usage(error=True))
    (row,) = everything(funded)
    assert (row.requests, row.errors, row.cost) == (1, 1, 0)


def test_a_free_request_settled_at_no_charge_still_counts(funded):
    assert settled(funded, "r1", 0, usage(prompt_tokens=5)) == 0
    (row,) = everything(funded)
    assert (row.requests, row.errors, row.cost, row.prompt_tokens) == (1, 0, 0, 5)


def test_a_free_request_whose_hold_is_zero_counts_and_closes_its_hold(funded):
    assert settled(funded, "r1", 0, usage(), amount=0) == 0
    assert funded.wallets.expired_holds(BUCKET + 10**9) == []
    assert [row.requests for row in everything(funded)] == [1]
    assert funded.keys.get_by_id("key_1").requests == 1


def test_a_repeated_settle_or_release_adds_nothing(funded):
    settled(funded, "r1", 300, usage(completion_tokens=50))
    assert funded.wallets.settle(hold("r1"), 300, entry("r1"), usage(completion_tokens=50)).charged == 0
    assert funded.wallets.release(hold("r1"), usage(error=True)) is False
    assert funded.wallets.hold(hold("r2")) is HoldResult.HELD
    assert funded.wallets.release(hold("r2"), usage(error=True)) is True
    assert funded.wallets.release(hold("r2"), usage(error=True)) is False
    (row,) = everything(funded)
    assert (row.requests, row.errors, row.cost, row.completion_tokens) == (2, 1, 300, 50)


def test_the_sweepers_release_adds_nothing(funded):
    assert funded.wallets.hold(hold("r1")) is HoldResult.HELD
    assert funded.wallets.release(hold("r1"), None) is True
    assert everything(funded) == []
    assert funded.wallets.release(hold("r1"), usage(error=True)) is False
    assert everything(funded) == []


def test_a_request_settled_after_the_sweeper_gave_its_hold_back_is_counted_once_at_its_charge(funded):
    assert funded.wallets.hold(hold("r1")) is HoldResult.HELD
    assert funded.wallets.release(hold("r1"), None) is True
    assert funded.wallets.settle(hold("r1"), 700, entry("r1"), usage()).charged == 700
    assert funded.wallets.settle(hold("r1"), 700, entry("r1"), usage()).charged == 0
    (row,) = everything(funded)
    assert (row.requests, row.cost) == (1, 700)


def test_a_shortfall_settlement_counts_what_was_charged(funded):
    settled(funded, "r1", 250_000, usage(cost=250_000))
    (row,) = everything(funded)
    assert (row.requests, row.cost) == (1, 100_000)
    assert funded.wallets.balance("acct_1").available == 0


def test_concurrent_settlements_of_one_row_sum_exactly(funded):
    for n in range(20):
        assert funded.wallets.hold(hold(f"r{n}", 300)) is HoldResult.HELD

    def one(n: int) -> int:
        return funded.wallets.settle(hold(f"r{n}", 300), 100 + n, entry(f"r{n}"),
                                     usage(prompt_tokens=10, completion_tokens=n, latency_ms=100 * n,
                                           ttft_ms=n if n % 2 else None)).charged

    charged = race(20, one)
    (row,) = everything(funded)
    assert row.cost == sum(charged) == sum(100 + n for n in range(20))
    assert (row.requests, row.errors, row.prompt_tokens, row.completion_tokens) == (20, 0, 200, sum(range(20)))
    assert row.latency_sum_ms == sum(100 * n for n in range(20))
    assert (row.ttft_sum_ms, row.ttft_count) == (sum(range(1, 20, 2)), 10)
    assert sum(row.histogram) == 20


def test_each_request_lands_in_its_latency_bucket_and_ttft_counts_only_when_known(funded):
    for n, (latency, ttft) in enumerate([(50, 20), (51, None), (120, 40), (60_000, 1_000), (120_001, None)]):
        settled(funded, f"r{n}", 10, usage(latency_ms=latency, ttft_ms=ttft))
    (row,) = everything(funded)
    assert row.histogram == histogram(b0=1, b1=1, b2=1, b16=1, b18=1)
    assert (row.ttft_sum_ms, row.ttft_count) == (1_060, 3)
    assert row.latency_sum_ms == 50 + 51 + 120 + 60_000 + 120_001


def test_rows_are_per_key_model_channel_and_quarter_hour(funded):
    settled(funded, "r1", 10, usage())
    settled(funded, "r2", 10, usage(at=BUCKET + Q - 1))
    settled(funded, "r3", 10, usage(at=BUCKET + Q))
    settled(funded, "r4", 10, UsageDelta(at=BUCKET, key_id="key_1", model="gpt-4o", channel=None, error=False))
    rows = everything(funded)
    assert [(row.bucket, row.channel, row.requests) for row in rows] == [
        (BUCKET, None, 1), (BUCKET, "openai-main", 2), (BUCKET + Q, "openai-main", 1)]


def test_rows_read_the_buckets_starting_in_the_range(funded):
    for n in range(3):
        settled(funded, f"r{n}", 10 + n, usage(at=BUCKET + n * Q + 60_000))
    settled(funded, "other", 10, usage(key=OTHER_KEY), key=OTHER_KEY)

    def buckets(since: int, until: int) -> list[int]:
        return [row.bucket for row in funded.rollups.rows("acct_1", since, until)]

    assert buckets(BUCKET + Q, BUCKET + 2 * Q) == [BUCKET + Q]
    assert buckets(BUCKET + 1, BUCKET + 2 * Q + 1) == [BUCKET + Q, BUCKET + 2 * Q]
    assert buckets(BUCKET, BUCKET + 3 * Q) == [BUCKET, BUCKET + Q, BUCKET + 2 * Q]
    assert buckets(BUCKET - Q, BUCKET) == []
    assert buckets(BUCKET + 3 * Q, BUCKET + 4 * Q) == []
    assert [row.account_id for row in funded.rollups.rows("acct_2", BUCKET, BUCKET + Q)] == ["acct_2"]


def test_every_accounts_rows_across_a_utc_days_end(funded):
    settled(funded, "late", 10, usage(at=MIDNIGHT - 1), at=MIDNIGHT - 1)
    settled(funded, "early", 20, usage(key=OTHER_KEY, at=MIDNIGHT), key=OTHER_KEY, at=MIDNIGHT)
    settled(funded, "next", 30, usage(at=MIDNIGHT + Q), at=MIDNIGHT + Q)
    settled(funded, "before", 40, usage(at=MIDNIGHT - 2 * Q), at=MIDNIGHT - 2 * Q)

    def read(since: int, until: int) -> list[tuple[str, int, int]]:
        return [(row.account_id, row.bucket, row.cost) for row in funded.rollups.rows(None, since, until)]

    assert read(MIDNIGHT - Q, MIDNIGHT + Q) == [("acct_1", MIDNIGHT - Q, 10), ("acct_2", MIDNIGHT, 20)]
    assert read(MIDNIGHT - 2 * Q, MIDNIGHT + 2 * Q) == [
        ("acct_1", MIDNIGHT - 2 * Q, 40), ("acct_1", MIDNIGHT - Q, 10), ("acct_2", MIDNIGHT, 20),
        ("acct_1", MIDNIGHT + Q, 30)]
    assert read(MIDNIGHT, MIDNIGHT + 86_400_000) == [("acct_2", MIDNIGHT, 20), ("acct_1", MIDNIGHT + Q, 30)]
    assert read(MIDNIGHT - 86_400_000, MIDNIGHT) == [("acct_1", MIDNIGHT - 2 * Q, 40), ("acct_1", MIDNIGHT - Q, 10)]


@pytest.mark.parametrize("by", ["bucket", "model", "key_id", "channel", "account_id"])
def test_rows_summed_by_a_label_equal_the_rows_added_up(funded, by):
    from chalicelib.storage.rollups import summed

    settled(funded, "r1", 10, usage(at=BUCKET + 60_000))
    settled(funded, "r2", 20, usage(at=BUCKET + Q + 60_000))
    settled(funded, "r3", 30, UsageDelta(at=BUCKET, key_id="key_1", model="gpt-4o", channel=None, error=True,
                                         latency_ms=9000))
    settled(funded, "r4", 40, usage(key=OTHER_KEY), key=OTHER_KEY)
    for account in ("acct_1", None):
        expected = summed(funded.rollups.rows(account, BUCKET, BUCKET + 2 * Q), by)
        found = funded.rollups.sums(account, BUCKET, BUCKET + 2 * Q, by)
        assert sorted(found, key=lambda row: str(getattr(row, by))) == sorted(
            expected, key=lambda row: str(getattr(row, by)))
        assert sum(row.requests for row in found) == (3 if account else 4)
    # The sums themselves, not only their agreement with the rows (DynamoDB sums the rows in Python).
    every = funded.rollups.sums(None, BUCKET, BUCKET + 2 * Q, by)
    if by == "bucket":
        assert sorted((r.bucket, r.requests, r.errors, r.cost) for r in every) == [
            (BUCKET, 3, 1, 80), (BUCKET + Q, 1, 0, 20)]
    if by == "account_id":
        assert sorted((r.account_id, r.requests, r.cost) for r in every) == [("acct_1", 3, 60), ("acct_2", 1, 40)]
    assert funded.rollups.sums("acct_1", BUCKET + 2 * Q, BUCKET + 3 * Q, by) == []
