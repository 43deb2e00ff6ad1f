"""Summaries from rollup rows: each request in the right local hour and day of the viewer's time zone
(including half-hour zones and daylight-saving changes), percentiles from the histogram, and the
ranges refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chalicelib.core.errors import InvalidRequest
from chalicelib.core.usage import HISTOGRAM_SIZE, RollupRow, latency_bucket, quarter_hour
from chalicelib.storage.rollups import summed
from chalicelib.usage.ranges import time_range
from chalicelib.usage.summary import DIMENSION, summarize

NOW = int(datetime(2026, 11, 27, 12, tzinfo=UTC).timestamp() * 1000)


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def row(moment: str, *, cost: int = 100, requests: int = 1, errors: int = 0, model: str = "deepseek-chat",
        key_id: str = "key_1", latency_ms: int = 400) -> RollupRow:
    histogram = [0] * HISTOGRAM_SIZE
    histogram[latency_bucket(latency_ms)] = requests
    return RollupRow(account_id="acct_1", bucket=quarter_hour(at(moment)), key_id=key_id, model=model,
                     channel="fake", requests=requests, errors=errors, cost=cost, latency_sum_ms=latency_ms * requests,
                     histogram=tuple(histogram))


def summary_of(rows, span, *, granularity="day", group_by="model"):
    return summarize(summed(rows, "bucket"), summed(rows, DIMENSION[group_by]), span, granularity=granularity,
                     group_by=group_by, now_ms=NOW)


def days(rows, tz: str, since: str, until: str) -> dict[str, int]:
    span = time_range(since, until, tz, now_ms=NOW)
    summary = summary_of(rows, span)
    return {start.date().isoformat(): totals.requests for start, totals in summary.series}


def test_each_request_is_in_its_local_day_in_shanghai():
    rows = [row("2026-11-01T15:59:00+00:00"),  # 23:59 on the 1st in Shanghai
            row("2026-11-01T16:00:00+00:00"),  # 00:00 on the 2nd
            row("2026-11-02T15:45:00+00:00")]  # 23:45 on the 2nd
    assert days(rows, "Asia/Shanghai", "2026-11-01", "2026-11-03") == {"2026-11-01": 1, "2026-11-02": 2}


def test_each_request_is_in_its_local_day_in_st_johns_across_the_end_of_daylight_saving():
    # St John's is UTC-2:30 until 2026-11-01 02:00 local, then UTC-3:30.
    rows = [row("2026-11-01T02:29:00+00:00"),  # 23:59 on Oct 31 (-2:30)
            row("2026-11-01T02:30:00+00:00"),  # 00:00 on Nov 1
            row("2026-11-02T03:15:00+00:00"),  # 23:45 on Nov 1 (-3:30)
            row("2026-11-02T03:30:00+00:00")]  # 00:00 on Nov 2
    assert days(rows, "America/St_Johns", "2026-10-31", "2026-11-03") == {
        "2026-10-31": 1, "2026-11-01": 2, "2026-11-02": 1}


def test_a_day_with_a_repeated_hour_has_25_hourly_periods_each_counted_once():
    rows = [row("2026-11-01T05:30:00+00:00"), row("2026-11-01T06:30:00+00:00")]  # 01:30 EDT, then 01:30 EST
    span = time_range("2026-11-01", "2026-11-02", "America/New_York", now_ms=NOW)
    summary = summary_of(rows, span, granularity="hour")
    assert len(summary.series) == 25
    ones = [(start.isoformat(), totals.requests) for start, totals in summary.series if totals.requests]
    assert ones == [("2026-11-01T01:00:00-04:00", 1), ("2026-11-01T01:00:00-05:00", 1)]


def test_totals_breakdown_and_percentiles():
    rows = [row("2026-11-01T10:00:00+00:00", cost=300, requests=3, latency_ms=80),
            row("2026-11-01T10:00:00+00:00", cost=0, requests=1, errors=1, model="qwen-plus", latency_ms=9000),
            row("2026-11-01T11:00:00+00:00", cost=50, requests=1, model="qwen-plus", key_id="key_2", latency_ms=400)]
    span = time_range("2026-11-01", "2026-11-02", "UTC", now_ms=NOW)
    summary = summary_of(rows, span)
    totals = summary.totals
    assert (totals.requests, totals.errors, totals.successes, totals.cost) == (5, 1, 4, 350)
    assert totals.percentile_ms(0.5) == 100 and totals.percentile_ms(0.95) == 10_000
    assert [(name, t.cost, t.requests) for name, t in summary.breakdown] == [
        ("deepseek-chat", 300, 3), ("qwen-plus", 50, 2)]
    by_key = summary_of(rows, span, group_by="key").breakdown
    assert [(name, t.requests) for name, t in by_key] == [("key_1", 4), ("key_2", 1)]


def test_rows_outside_the_range_are_left_out():
    rows = [row("2026-10-31T23:45:00+00:00"), row("2026-11-01T00:00:00+00:00"), row("2026-11-02T00:00:00+00:00")]
    assert days(rows, "UTC", "2026-11-01", "2026-11-02") == {"2026-11-01": 1}


@pytest.mark.parametrize(("since", "until", "tz", "param"), [
    ("2026-11-02", "2026-11-01", "UTC", "from"),
    ("2026-11-01", "2026-11-01", "UTC", "from"),
    ("yesterday", "2026-11-01", "UTC", "from"),
    ("2026-11-01", "2026-13-01", "UTC", "to"),
    ("2025-01-01", "2026-11-01", "UTC", "to"),  # more than 400 days
    ("2026-11-01", "2026-11-02", "Mars/Olympus", "tz"),
    ("2026-11-01", "2026-11-02", "../../etc/passwd", "tz"),
])
def test_a_bad_range_or_zone_is_refused_naming_the_field(since, until, tz, param):
    with pytest.raises(InvalidRequest) as refused:
        time_range(since, until, tz, now_ms=NOW)
    assert refused.value.param == param


def test_the_default_range_is_the_last_seven_local_days():
    span = time_range(None, None, "Asia/Shanghai", now_ms=NOW)
    assert span.local(span.since_ms).isoformat() == "2026-11-21T00:00:00+08:00"
    assert span.local(span.until_ms).isoformat() == "2026-11-28T00:00:00+08:00"
