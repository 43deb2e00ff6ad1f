"""Typed values of usage monitoring: one request's contribution to the live rollups, the rollup rows
read back, and the filters and pages of the request log.

Rollups are kept per account × key × model × channel × UTC quarter-hour: every time zone's offset is
a whole number of quarter-hours, so hours and days in any zone are sums of whole buckets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chalicelib.core.domain import UsageEvent

QUARTER_HOUR_MS = 15 * 60 * 1000
# Upper bounds (ms) of the latency histogram's buckets; the last bucket takes everything above.
LATENCY_BOUNDS_MS = (50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10_000, 15_000, 20_000,
                     30_000, 60_000, 120_000)
HISTOGRAM_SIZE = len(LATENCY_BOUNDS_MS) + 1


def quarter_hour(epoch_ms: int) -> int:
    """The start of the UTC quarter-hour the moment falls in, in epoch ms."""
    return epoch_ms - epoch_ms % QUARTER_HOUR_MS


def latency_bucket(latency_ms: int) -> int:
    """The index of the histogram bucket a latency falls in."""
    for index, bound in enumerate(LATENCY_BOUNDS_MS):
        if latency_ms <= bound:
            return index
    return len(LATENCY_BOUNDS_MS)


@dataclass(frozen=True)
class UsageDelta:
    """What one request adds to its rollup, written in the transaction that settles or releases it.
    `at` is the request's recorded time (its usage event's `time`), which picks the bucket."""

    at: int  # epoch ms
    key_id: str
    model: str
    channel: str | None
    error: bool  # failed: counted as a request and an error, never as spend
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    images: int = 0
    cost: int = 0  # units charged
    latency_ms: int = 0
    ttft_ms: int | None = None

    @property
    def bucket(self) -> int:
        return quarter_hour(self.at)

    @property
    def rollup_id(self) -> str:
        """The rollup row within the account: `<13-digit bucket ms>#<key>#<model>#<channel>`."""
        return f"{self.bucket:013d}#{self.key_id}#{self.model}#{self.channel or '-'}"


# What rollup rows can be summed by.
ROLLUP_DIMENSIONS = ("bucket", "model", "key_id", "channel", "account_id")


@dataclass(frozen=True)
class RollupRow:
    """One account × key × model × channel × quarter-hour's counters (or a sum of such rows, whose
    labels other than the one summed by are None)."""

    account_id: str | None
    bucket: int | None  # epoch ms, UTC quarter-hour start
    key_id: str | None
    model: str | None
    channel: str | None
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    images: int = 0
    cost: int = 0
    latency_sum_ms: int = 0
    ttft_sum_ms: int = 0
    ttft_count: int = 0
    histogram: tuple[int, ...] = field(default=(0,) * HISTOGRAM_SIZE)


@dataclass(frozen=True)
class LogFilter:
    """Which usage events a log page or export reads: [since_ms, until_ms), newest first for pages."""

    since_ms: int
    until_ms: int
    account_id: str | None = None  # None: every account (operators)
    key_id: str | None = None
    model: str | None = None
    # "success" (2xx), "error" (anything else), or one HTTP status; None: all.
    status: str | None = None


@dataclass(frozen=True)
class LogPage:
    events: tuple[UsageEvent, ...]
    cursor: str | None  # the next page's, None after the last
    as_of: int  # epoch ms: events recorded before this are in (the usage stream's delivery lag)
