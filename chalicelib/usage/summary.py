"""Usage summaries from the live rollups: totals, a series by hour or day in the viewer's time zone,
and a breakdown by model, key, channel or account.

Every rollup row is one UTC quarter-hour; a zone's hours and days are whole sets of them (every
zone's offset is a whole number of quarter-hours), so a local day's totals are exact, across
daylight-saving changes too. Percentiles come from the rollups' fixed latency histogram: the upper
bound of the bucket the percentile falls in (an estimate, never below the true value's bucket).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from chalicelib.core.usage import HISTOGRAM_SIZE, LATENCY_BOUNDS_MS, RollupRow
from chalicelib.usage.ranges import TimeRange

Granularity = Literal["hour", "day"]
GroupBy = Literal["model", "key", "channel", "account"]


@dataclass
class Totals:
    """Counters summed over rows, and what is derived from them."""

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
    histogram: list[int] = field(default_factory=lambda: [0] * HISTOGRAM_SIZE)

    def add(self, row: RollupRow, *, latency: bool = True) -> None:
        """Add a row's counters (without `latency`: leave the latency sums and histogram out)."""
        self.requests += row.requests
        self.errors += row.errors
        self.prompt_tokens += row.prompt_tokens
        self.cached_tokens += row.cached_tokens
        self.completion_tokens += row.completion_tokens
        self.images += row.images
        self.cost += row.cost
        if not latency:
            return
        self.latency_sum_ms += row.latency_sum_ms
        self.ttft_sum_ms += row.ttft_sum_ms
        self.ttft_count += row.ttft_count
        for index, count in enumerate(row.histogram):
            self.histogram[index] += count

    @property
    def successes(self) -> int:
        return self.requests - self.errors

    def latency_mean_ms(self) -> float | None:
        return round(self.latency_sum_ms / self.requests, 1) if self.requests else None

    def ttft_mean_ms(self) -> float | None:
        return round(self.ttft_sum_ms / self.ttft_count, 1) if self.ttft_count else None

    def percentile_ms(self, fraction: float) -> int | None:
        """The upper bound of the histogram bucket holding the `fraction` percentile (the last
        bucket, open-ended, reports its lower bound)."""
        total = sum(self.histogram)
        if not total:
            return None
        rank, seen = fraction * total, 0
        for index, count in enumerate(self.histogram):
            seen += count
            if seen >= rank and count:
                return LATENCY_BOUNDS_MS[min(index, len(LATENCY_BOUNDS_MS) - 1)]
        return LATENCY_BOUNDS_MS[-1]


@dataclass(frozen=True)
class Summary:
    range: TimeRange
    granularity: Granularity
    group_by: GroupBy
    totals: Totals
    series: list[tuple[datetime, Totals]]  # each period's local start, in order, empty periods included
    breakdown: list[tuple[str | None, Totals]]  # by spend, then requests, descending
    as_of: int  # epoch ms


# The rollup label each breakdown sums by.
DIMENSION = {"model": "model", "key": "key_id", "channel": "channel", "account": "account_id"}


def summarize(by_bucket: Iterable[RollupRow], by_group: Iterable[RollupRow], span: TimeRange, *,
              granularity: Granularity, group_by: GroupBy, now_ms: int) -> Summary:
    """The summary of the range's rollups summed per bucket (the series: counters, no latency needed) and
    per `group_by` (the breakdown, and the totals as its sum)."""
    starts = _periods(span, granularity)
    periods = {_ms(start): Totals() for start in starts}
    for row in by_bucket:
        if row.bucket is None or not span.since_ms <= row.bucket < span.until_ms:
            continue
        periods[_ms(_period_start(span.local(row.bucket), granularity))].add(row, latency=False)
    totals = Totals()
    groups: dict[str | None, Totals] = {}
    dimension = DIMENSION[group_by]
    for row in by_group:
        totals.add(row)
        groups.setdefault(getattr(row, dimension), Totals()).add(row)
    breakdown = sorted(groups.items(), key=lambda item: (-item[1].cost, -item[1].requests, str(item[0])))
    return Summary(span, granularity, group_by, totals, [(start, periods[_ms(start)]) for start in starts],
                   breakdown, now_ms)


def _ms(moment: datetime) -> int:
    """A period's start as an instant: two local hours with the same wall time (the hour repeated when
    daylight saving ends) are different periods."""
    return int(moment.timestamp() * 1000)


def _period_start(moment: datetime, granularity: Granularity) -> datetime:
    if granularity == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _periods(span: TimeRange, granularity: Granularity) -> list[datetime]:
    """Every local period the range touches, in order (wall-clock steps, normalised through UTC so
    that daylight-saving changes give 23- and 25-hour days, and skip or repeat no hour)."""
    starts = []
    current = _period_start(span.local(span.since_ms), granularity)
    while _ms(current) < span.until_ms:
        starts.append(current)
        if granularity == "hour":
            later = (current.astimezone(UTC) + timedelta(hours=1)).astimezone(span.zone)
        else:
            later = (current.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=span.zone)
        current = _period_start(later, granularity)
    return starts
