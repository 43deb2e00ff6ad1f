"""What one closed request adds to its usage rollup row, as both backends store it.

A row's counters are plain integers, the latency histogram among them as one counter per
bucket (`h0` … `h18`), so that every backend adds a request with atomic increments alone:

    counters(usage, charged)   requests 1; errors 1 if it failed; its tokens and images;
                               cost = what the settlement charged (not what the usage priced);
                               latency_sum_ms; ttft_sum_ms and ttft_count 1 if a first token came;
                               h<latency_bucket(latency_ms)> 1
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from chalicelib.core.usage import HISTOGRAM_SIZE, RollupRow, UsageDelta, latency_bucket

HISTOGRAM_COLUMNS = tuple(f"h{index}" for index in range(HISTOGRAM_SIZE))
COUNTERS = ("requests", "errors", "prompt_tokens", "cached_tokens", "completion_tokens", "images", "cost",
            "latency_sum_ms", "ttft_sum_ms", "ttft_count", *HISTOGRAM_COLUMNS)
# The row's identity beside account_id and rollup_id: the same for every request the row counts.
LABELS = ("bucket", "key_id", "model", "channel")


def counters(usage: UsageDelta, charged: int, *, error: bool = False) -> dict[str, int]:
    """Every counter's increment for one request (zero where it adds nothing); `error` also
    counts it as failed whatever `usage.error` says (a released hold)."""
    added = dict.fromkeys(COUNTERS, 0)
    added.update(
        requests=1,
        errors=int(error or usage.error),
        prompt_tokens=usage.prompt_tokens,
        cached_tokens=usage.cached_tokens,
        completion_tokens=usage.completion_tokens,
        images=usage.images,
        cost=charged,
        latency_sum_ms=usage.latency_ms,
        ttft_sum_ms=usage.ttft_ms or 0,
        ttft_count=int(usage.ttft_ms is not None),
    )
    added[HISTOGRAM_COLUMNS[latency_bucket(usage.latency_ms)]] = 1
    return added


def labels(usage: UsageDelta) -> dict[str, Any]:
    return {"bucket": usage.bucket, "key_id": usage.key_id, "model": usage.model, "channel": usage.channel}


def utc_day(epoch_ms: int) -> str:
    """The UTC date a moment falls on, `YYYY-MM-DD`."""
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%d")


def row_of(account_id: str, values: dict[str, Any]) -> RollupRow:
    """A rollup row from its stored values; a counter never written is 0."""
    return RollupRow(
        account_id=account_id,
        bucket=int(values["bucket"]),
        key_id=values["key_id"],
        model=values["model"],
        channel=values.get("channel"),
        **{name: int(values.get(name) or 0) for name in COUNTERS if name not in HISTOGRAM_COLUMNS},
        histogram=tuple(int(values.get(name) or 0) for name in HISTOGRAM_COLUMNS),
    )


def summed(rows: list[RollupRow], by: str) -> list[RollupRow]:
    """Rows summed per value of `by` (a backend that cannot sum in its query sums here)."""
    sums: dict[Any, dict[str, Any]] = {}
    for row in rows:
        value = getattr(row, by)
        total = sums.get(value)
        if total is None:
            total = sums[value] = {name: 0 for name in COUNTERS if name not in HISTOGRAM_COLUMNS}
            total["histogram"] = [0] * HISTOGRAM_SIZE
        for name in total:
            if name != "histogram":
                total[name] += getattr(row, name)
        for index, count in enumerate(row.histogram):
            total["histogram"][index] += count
    labels = dict.fromkeys(("account_id", "bucket", "key_id", "model", "channel"))
    return [RollupRow(**{**labels, by: value}, **{**total, "histogram": tuple(total["histogram"])})
            for value, total in sums.items()]
