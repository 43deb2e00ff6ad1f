"""The usage benchmark's made-up month (bench/usage_data.py) is what the gateway would have written: each
line is UsageEvent.to_json_line() of its event, the rollup rows are what the settlements' add_usage would
have left, and the reports over the data directory count every event."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from bench.usage_data import MAIN, OTHERS, generate
from chalicelib import deps
from chalicelib.config import Settings
from chalicelib.core.domain import UsageEvent
from chalicelib.core.usage import UsageDelta
from chalicelib.storage.local_usage_sink import usage_files
from chalicelib.storage.sqlite.database import Database
from chalicelib.storage.sqlite.usage_rollup_repo import add_usage
from chalicelib.usage.reports import UsageQuery

UNTIL = date(2026, 11, 27)
MAIN_EVENTS = 2000


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[bytes]]:
    data_dir = tmp_path_factory.mktemp("usage-bench")
    made = generate(data_dir, MAIN_EVENTS, days=30, until=UNTIL)
    assert (made.since, made.until, made.main_events, made.events) == (date(2026, 10, 28), UNTIL, 2000, 2400)
    lines = [line for path in usage_files(data_dir) for line in path.read_bytes().splitlines(keepends=True)]
    assert len(lines) == made.events and made.files == 30
    return data_dir, lines


def event_of(line: bytes) -> UsageEvent:
    fields = json.loads(line)
    del fields["cost_usd"]
    return UsageEvent(**fields)


def at_ms(event: UsageEvent) -> int:
    return int(datetime.fromisoformat(event.time).timestamp() * 1000)


def test_each_line_is_its_events_json_line_in_its_days_partition(month: tuple[Path, list[bytes]]) -> None:
    data_dir, lines = month
    assert all(event_of(line).to_json_line() == line for line in lines)
    for path in usage_files(data_dir):
        day = datetime.strptime(path.parent.relative_to(data_dir).as_posix(), "usage/year=%Y/month=%m/day=%d").date()
        assert {datetime.fromisoformat(event_of(line).time).astimezone(UTC).date()
                for line in path.read_bytes().splitlines()} == {day}
    events = [event_of(line) for line in lines]
    assert {event.account_id for event in events} == {MAIN, *OTHERS}
    main = [event for event in events if event.account_id == MAIN]
    assert len(main) == MAIN_EVENTS
    assert len({event.key_id for event in main}) == 5 and len({event.model for event in main}) == 6
    assert {event.channel for event in main} == {"primary", "fallback"}
    failed = [event for event in events if event.status != 200]
    assert 0.005 < len(failed) / len(events) < 0.04
    assert all(event.cost_units == event.prompt_tokens == event.completion_tokens == 0 for event in failed)
    assert 0.2 < sum(event.ttft_ms is not None for event in events) / len(events) < 0.4


def test_the_rollups_are_what_the_settlements_would_have_added(month: tuple[Path, list[bytes]],
                                                               tmp_path: Path) -> None:
    data_dir, lines = month
    expected = Database(tmp_path / "settled.db")
    with expected.write() as tx:
        for event in map(event_of, lines):
            usage = UsageDelta(at=at_ms(event), key_id=event.key_id or "", model=event.model or "",
                               channel=event.channel, error=event.status != 200, prompt_tokens=event.prompt_tokens,
                               cached_tokens=event.cached_tokens, completion_tokens=event.completion_tokens,
                               latency_ms=event.latency_ms, ttft_ms=event.ttft_ms)
            add_usage(tx, event.account_id or "", usage, event.cost_units)
    generated = Database(data_dir / "tokenway.db")
    every_row = "SELECT * FROM usage_rollups ORDER BY account_id, rollup_id"
    with expected.read() as want, generated.read() as got:
        assert [tuple(row) for row in got.execute(every_row)] == [tuple(row) for row in want.execute(every_row)]


def test_the_reports_over_the_data_directory_count_every_event(month: tuple[Path, list[bytes]]) -> None:
    data_dir, lines = month
    reports = deps.build_gateway(Settings(storage="sqlite", data_dir=data_dir)).usage
    query = UsageQuery(since="2026-10-28", until="2026-11-27", tz="UTC")
    main = [event for event in map(event_of, lines) if event.account_id == MAIN]

    totals = reports.summary(MAIN, query).totals
    assert (totals.requests, totals.errors, totals.prompt_tokens, totals.cached_tokens, totals.completion_tokens,
            totals.cost, totals.latency_sum_ms, totals.ttft_sum_ms, totals.ttft_count) == (
        len(main), sum(event.status != 200 for event in main), sum(event.prompt_tokens for event in main),
        sum(event.cached_tokens for event in main), sum(event.completion_tokens for event in main),
        sum(event.cost_units for event in main), sum(event.latency_ms for event in main),
        sum(event.ttft_ms or 0 for event in main), sum(event.ttft_ms is not None for event in main))
    assert reports.summary(None, query, operator=True).totals.requests == len(lines)
    assert sorted(reports.export(MAIN, query), key=lambda event: event.request_id) == sorted(
        main, key=lambda event: event.request_id)
