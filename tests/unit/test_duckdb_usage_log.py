"""The request log over the usage files, as LocalUsageSink writes them across several UTC days."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chalicelib.core.domain import UsageEvent
from chalicelib.core.errors import InvalidRequest
from chalicelib.core.usage import LogFilter
from chalicelib.storage.duckdb_usage_log import DuckDbUsageLog
from chalicelib.storage.local_usage_sink import LocalUsageSink, usage_files

NOW_MS = 1_773_100_000_000


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def event(request_id: str, time: str, *, account: str = "acct_1", key: str = "key_1", model: str = "test-chat",
          status: int = 200, **fields) -> UsageEvent:
    values = {"endpoint": "chat/completions", "channel": "primary", "stream": False, "prompt_tokens": 10,
              "completion_tokens": 5, "cost_units": 18_000, **fields}
    return UsageEvent(time=time, request_id=request_id, account_id=account, key_id=key, model=model,
                      status=status, **values)


def write(directory: Path, events: list[UsageEvent]) -> None:
    sink = LocalUsageSink(directory, host="gw1")
    for sent in events:
        sink.put(sent)
    sink.close()


# Four UTC days, with requests at equal times, other accounts, keys, models and statuses among them.
EVENTS = [
    event("req_01", "2026-03-07T10:00:00.000+00:00"),
    event("req_02", "2026-03-08T09:00:00.000+00:00", status=500, error_type="upstream_error"),
    event("req_03", "2026-03-08T09:00:00.000+00:00", account="acct_2", key="key_2"),
    event("req_04", "2026-03-08T09:00:00.000+00:00", model="test-embed", ttft_ms=None, latency_ms=12),
    event("req_05", "2026-03-08T23:59:59.999+00:00", status=429, error_type="rate_limit_error"),
    event("req_06", "2026-03-09T00:00:00.000+00:00", stream=True, ttft_ms=120, cached_tokens=3),
    event("req_07", "2026-03-09T12:30:00.500+00:00", status=201),
    event("req_08", "2026-03-10T08:00:00.000+00:00", key="key_2", images=2, shortfall_units=7),
]
EVERY_DAY = LogFilter(ms("2026-03-07T00:00:00"), ms("2026-03-11T00:00:00"))


@pytest.fixture
def log(tmp_path: Path) -> DuckDbUsageLog:
    write(tmp_path, EVENTS)
    return DuckDbUsageLog(tmp_path, now_ms=lambda: NOW_MS)


def newest_first(events: list[UsageEvent]) -> list[UsageEvent]:
    return sorted(events, key=lambda e: (e.time, e.request_id), reverse=True)


def all_pages(log: DuckDbUsageLog, where: LogFilter, limit: int) -> list[list[UsageEvent]]:
    pages, cursor = [], None
    while True:
        page = log.page(where, limit=limit, cursor=cursor)
        pages.append(list(page.events))
        if page.cursor is None:
            return pages
        cursor = page.cursor


def test_a_page_holds_the_newest_events_as_written_and_as_of_now(log):
    page = log.page(EVERY_DAY, limit=3)

    assert list(page.events) == newest_first(EVENTS)[:3]
    assert page.as_of == NOW_MS
    assert page.cursor is not None


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 8, 50])
def test_pages_through_cursors_read_every_event_once_newest_first_even_at_equal_times(log, limit):
    pages = all_pages(log, EVERY_DAY, limit)

    assert [e for page in pages for e in page] == newest_first(EVENTS)
    assert all(len(page) == limit for page in pages[:-1]) and 0 < len(pages[-1]) <= limit


@pytest.mark.parametrize(("where", "expected"), [
    (LogFilter(EVERY_DAY.since_ms, EVERY_DAY.until_ms, account_id="acct_2"), ["req_03"]),
    (LogFilter(EVERY_DAY.since_ms, EVERY_DAY.until_ms, key_id="key_2"), ["req_08", "req_03"]),
    (LogFilter(EVERY_DAY.since_ms, EVERY_DAY.until_ms, model="test-embed"), ["req_04"]),
    (LogFilter(EVERY_DAY.since_ms, EVERY_DAY.until_ms, account_id="acct_1", key_id="key_1", model="test-chat",
               status="success"), ["req_07", "req_06", "req_01"]),
    (LogFilter(EVERY_DAY.since_ms, EVERY_DAY.until_ms, status="success"),
     ["req_08", "req_07", "req_06", "req_04", "req_03", "req_01"]),
    (LogFilter(EVERY_DAY.since_ms, EVERY_DAY.until_ms, status="error"), ["req_05", "req_02"]),
    (LogFilter(EVERY_DAY.since_ms, EVERY_DAY.until_ms, status="429"), ["req_05"]),
    (LogFilter(EVERY_DAY.since_ms, EVERY_DAY.until_ms, status="404"), []),
    # [since, until) to the millisecond, across midnight.
    (LogFilter(ms("2026-03-08T23:59:59.999"), ms("2026-03-09T00:00:00")), ["req_05"]),
    (LogFilter(ms("2026-03-08T09:00:00.001"), ms("2026-03-09T00:00:00.001")), ["req_06", "req_05"]),
    (LogFilter(ms("2026-03-11T00:00:00"), ms("2026-03-20T00:00:00")), []),
    (LogFilter(EVERY_DAY.until_ms, EVERY_DAY.since_ms), []),
])
def test_filters_choose_the_events(log, where, expected):
    assert [e.request_id for e in log.page(where, limit=100).events] == expected
    assert [e.request_id for e in log.export(where)] == expected[::-1]


def test_only_the_partitions_of_the_range_are_read(log, tmp_path):
    where = LogFilter(ms("2026-03-08T12:00:00"), ms("2026-03-09T00:00:00.001"))

    root = tmp_path / "usage"
    assert log.partitions(where) == [root / "year=2026/month=03/day=08", root / "year=2026/month=03/day=09"]
    assert log.files(where) == [str(path) for path in usage_files(tmp_path) if "day=08" in str(path)
                                or "day=09" in str(path)]
    # A day ending exactly at until is not read.
    assert log.partitions(LogFilter(ms("2026-03-09T05:00:00"), ms("2026-03-10T00:00:00"))) == [
        root / "year=2026/month=03/day=09"]


def test_events_outside_the_range_in_a_read_partition_stay_out(tmp_path):
    # An event filed under another day than its time (as Firehose may, by its arrival) is read only by time.
    misfiled = tmp_path / "usage/year=2026/month=03/day=09/usage-other.jsonl"
    misfiled.parent.mkdir(parents=True)
    misfiled.write_bytes(event("req_late", "2026-03-08T23:59:59.000+00:00").to_json_line())
    log = DuckDbUsageLog(tmp_path)

    assert log.page(LogFilter(ms("2026-03-09T00:00:00"), ms("2026-03-10T00:00:00")), limit=5).events == ()


def test_a_range_without_files_is_an_empty_page(tmp_path):
    log = DuckDbUsageLog(tmp_path, now_ms=lambda: NOW_MS)

    page = log.page(EVERY_DAY, limit=10)

    assert (page.events, page.cursor, page.as_of) == ((), None, NOW_MS)
    assert list(log.export(EVERY_DAY)) == []


def test_a_partial_last_line_is_skipped(log, tmp_path):
    [path] = [p for p in usage_files(tmp_path) if "day=10" in str(p)]
    with path.open("ab") as file:
        file.write(event("req_cut", "2026-03-10T09:00:00.000+00:00").to_json_line()[:70])

    assert [e.request_id for e in log.page(EVERY_DAY, limit=2).events] == ["req_08", "req_07"]
    assert [e.request_id for e in log.export(EVERY_DAY)][-1] == "req_08"


@pytest.mark.parametrize("cursor", [
    "not base64!", base64.urlsafe_b64encode(b"[1, 2]").decode(), base64.urlsafe_b64encode(b'{"time": 5}').decode(),
    base64.urlsafe_b64encode(b'{"time": "x", "request_id": 3}').decode(), "",
])
def test_a_cursor_the_log_did_not_give_is_refused(log, cursor):
    with pytest.raises(InvalidRequest) as refused:
        log.page(EVERY_DAY, limit=2, cursor=cursor)

    assert (refused.value.status, refused.value.param) == (400, "cursor")


@pytest.mark.parametrize("status", ["ok", "2000", "20", "2xx", "' OR 1=1 --"])
def test_a_status_filter_that_is_none_of_the_forms_is_refused(log, status):
    with pytest.raises(InvalidRequest) as refused:
        log.page(LogFilter(EVERY_DAY.since_ms, EVERY_DAY.until_ms, status=status), limit=2)

    assert refused.value.param == "status"


def test_a_page_holds_at_least_one_event(log):
    with pytest.raises(InvalidRequest) as refused:
        log.page(EVERY_DAY, limit=0)

    assert refused.value.param == "limit"


@pytest.mark.parametrize("value", ["x' OR 1=1 --", "test-chat' OR '1'='1", '"; DROP TABLE t; --', "%", "*"])
def test_filter_values_are_parameters_never_sql(log, value):
    for field in ("account_id", "key_id", "model"):
        where = LogFilter(EVERY_DAY.since_ms, EVERY_DAY.until_ms, **{field: value})
        assert log.page(where, limit=10).events == ()
        assert list(log.export(where)) == []


def test_a_cursor_of_strange_text_is_a_position_not_sql(log):
    from chalicelib.storage.cursors import encode_cursor

    cursor = encode_cursor({"time": "9' OR 1=1 --", "request_id": "x"})

    assert [e.request_id for e in log.page(EVERY_DAY, limit=100, cursor=cursor).events] == [
        e.request_id for e in newest_first(EVENTS)]


def test_an_export_reads_every_event_oldest_first_as_it_is_consumed(tmp_path):
    start = ms("2026-03-07T22:00:00")
    events = [event(f"req_{n:05d}", datetime.fromtimestamp((start + n * 20_000) / 1000, tz=UTC)
                    .isoformat(timespec="milliseconds"), key=f"key_{n % 3}") for n in range(5000)]
    write(tmp_path, events[::-1])
    log = DuckDbUsageLog(tmp_path)
    where = LogFilter(start, start + 5000 * 20_000)

    exported = log.export(where)
    first = next(exported)

    assert first == events[0]
    assert [first, *exported] == events
    assert len(log.partitions(where)) == 3
