"""`python -m bench.usage` (and part of `make bench`): the usage reports over a month of made-up usage.

A temporary data directory gets 30 UTC days of usage (bench/usage_data.py): N events of one account
(5 keys, 6 models, 2 channels; ~2% failures at no cost; a third of the chat requests streamed) and N/5
of 10 other accounts, in the usage files' real layout and in the SQLite rollups. A gateway built on it
(deps.build_gateway, one-machine storage) then answers, through its UsageReports, for the main account:

- the 30-day summary (day series, model breakdown), and with an hour series      target < 300 ms
- the 30-day log's first page of 50, and the page after following 10 cursors      target < 2 s
- a page filtered by key and model
- the 30-day CSV export (render_usage.csv_lines): its first 1,000 rows, and all of it (rows per second)
- an operator's summary over every account, by account

each the median of 5 runs after a warm-up (of 3 for the whole export, and for any call that takes
over 2 s). It prints the files and bytes the
DuckDB engine reads for the 30-day queries against all there are, and the query the Athena engine would
send for the same first page, with the bytes it would scan (the same files, as JSON in the bucket) and
what that costs at $5 per TB.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any

from bench.usage_data import MAIN, generate
from chalicelib import deps
from chalicelib.api.render_usage import csv_lines
from chalicelib.config import Settings
from chalicelib.storage.athena_usage_log import AthenaUsageLog
from chalicelib.storage.duckdb_usage_log import DuckDbUsageLog
from chalicelib.storage.local_usage_sink import usage_files
from chalicelib.usage.reports import UsageQuery

RUNS = 5
EXPORT_RUNS = 3
SLOW_MS, SLOW_RUNS = 2000, 3
PAGE = 50
DEEP = 10  # cursors followed to the deep page
ATHENA_USD_PER_TB = 5
ATHENA_MIN_BYTES = 10 * 1000**2  # Athena bills at least 10 MB a query


def timed(call: Callable[[], Any], runs: int = RUNS) -> tuple[float, Any]:
    """The median wall time (ms) of `runs` calls after one warm-up, and the last call's answer; of
    SLOW_RUNS when the warm-up took over SLOW_MS, to keep the whole run within a couple of minutes."""
    started = time.perf_counter()
    answer = call()
    if (time.perf_counter() - started) * 1000 > SLOW_MS:
        runs = min(runs, SLOW_RUNS)
    took = []
    for _ in range(runs):
        started = time.perf_counter()
        answer = call()
        took.append((time.perf_counter() - started) * 1000)
    return statistics.median(took), answer


def verdict(ms: float, target_ms: float) -> str:
    return f"target < {target_ms:,.0f} ms: {'met' if ms < target_ms else 'MISSED'}"


def run(events: int, keep: Path | None = None) -> None:
    with tempfile.TemporaryDirectory(prefix="tokenway-usage-bench-") as temporary:
        data_dir = keep or Path(temporary)
        print(f"\n== usage reports: {events:,} events of one account over 30 days, and a fifth as many of 10 others "
              "(one-machine storage: SQLite rollups, DuckDB over the usage files) ==")
        started = time.perf_counter()
        made = generate(data_dir, events)
        took = time.perf_counter() - started
        db_bytes = sum(path.stat().st_size for path in data_dir.glob("tokenway.db*"))
        print(f"  generated {made.events:,} events ({made.main_events:,} of the main account) in {took:.1f} s "
              f"({made.events / took:,.0f} events/s): {made.files} files, {made.bytes / 1e6:,.1f} MB of JSON lines; "
              f"{made.rollup_rows:,} rollup rows ({db_bytes / 1e6:,.1f} MB database)")
        measure(data_dir, made.since.isoformat(), made.until.isoformat(), made.keys)


def measure(data_dir: Path, since: str, until: str, keys: tuple[str, ...]) -> None:
    settings = Settings(storage="sqlite", data_dir=data_dir)
    reports = deps.build_gateway(settings).usage
    month = UsageQuery(since=since, until=until, tz="UTC")
    hourly = UsageQuery(since=since, until=until, tz="UTC", granularity="hour")
    by_account = UsageQuery(since=since, until=until, tz="UTC", group_by="account")
    filtered = UsageQuery(since=since, until=until, tz="UTC", key_id=keys[1], model="gpt-4o")
    print(f"  {'30 days, main account (median of ' + str(RUNS) + ' after a warm-up)':<52}{'ms':>10}")

    ms, summary = timed(lambda: reports.summary(MAIN, month))
    print(f"  {'summary, day series + model breakdown':<52}{ms:>10,.1f}   {verdict(ms, 300)}"
          f"  ({summary.totals.requests:,} requests, {len(summary.series)} days, {len(summary.breakdown)} models)")
    ms, summary = timed(lambda: reports.summary(MAIN, hourly))
    print(f"  {'summary, hour series':<52}{ms:>10,.1f}   {verdict(ms, 300)}  ({len(summary.series)} hours)")
    ms, summary = timed(lambda: reports.summary(None, by_account, operator=True))
    print(f"  {'operator summary, every account, by account':<52}{ms:>10,.1f}"
          f"   ({summary.totals.requests:,} requests, {len(summary.breakdown)} accounts)")

    ms, page = timed(lambda: reports.logs(MAIN, month, limit=PAGE))
    print(f"  {'log, first page of 50':<52}{ms:>10,.1f}   {verdict(ms, 2000)}")
    started = time.perf_counter()
    cursor = page.cursor
    for _ in range(DEEP - 1):
        cursor = reports.logs(MAIN, month, limit=PAGE, cursor=cursor).cursor
    walk = (time.perf_counter() - started) * 1000
    ms, deep = timed(lambda: reports.logs(MAIN, month, limit=PAGE, cursor=cursor))
    print(f"  {f'log, page {DEEP + 1} (after {DEEP} cursors)':<52}{ms:>10,.1f}   {verdict(ms, 2000)}"
          f"  (the {DEEP} pages before it: {walk:,.0f} ms)")
    assert len(deep.events) == PAGE and deep.events[0].time <= page.events[-1].time
    ms, _ = timed(lambda: reports.logs(MAIN, filtered, limit=PAGE))
    print(f"  {'log, first page filtered by key and model':<52}{ms:>10,.1f}   {verdict(ms, 2000)}")

    ms, _ = timed(lambda: _export_rows(reports, month, 1000))
    print(f"  {'CSV export, first 1,000 rows':<52}{ms:>10,.1f}")
    ms, rows = timed(lambda: _export_rows(reports, month, None), EXPORT_RUNS)
    print(f"  {'CSV export, every row (median of ' + str(EXPORT_RUNS) + ')':<52}{ms:>10,.1f}"
          f"   ({rows:,} rows, {rows / ms * 1000:,.0f} rows/s)")

    where = reports.log_filter(MAIN, month)
    engine = DuckDbUsageLog(data_dir)
    read = [Path(name) for name in engine.files(where)]
    every = usage_files(data_dir)
    read_bytes = sum(path.stat().st_size for path in read)
    every_bytes = sum(path.stat().st_size for path in every)
    newest = engine.partitions(where)[-1]
    newest_bytes = sum(path.stat().st_size for path in newest.glob("*.jsonl"))
    print(f"  DuckDB: the 30-day range has {len(engine.partitions(where))} partitions, {len(read)} of {len(every)} "
          f"files, {read_bytes / 1e6:,.1f} of {every_bytes / 1e6:,.1f} MB, all read by an export; a page reads the "
          f"newest days until it is full (the first page: 1 partition, {newest_bytes / 1e6:,.1f} MB)")
    athena(settings, where, read_bytes)


def _export_rows(reports: Any, query: UsageQuery, limit: int | None) -> int:
    """CSV rows of the export read (the header not counted), up to `limit`; the export is closed after."""
    lines = csv_lines(reports.export(MAIN, query))
    try:
        return sum(1 for _ in islice(lines, None if limit is None else limit + 1)) - 1
    finally:
        lines.close()


def athena(settings: Settings, where: Any, scanned: int) -> None:
    """The first page's query as the Athena engine writes it (not sent), and what it would scan."""
    engine = AthenaUsageLog(None, database=settings.usage_database, table=settings.usage_table,
                            workgroup=settings.usage_workgroup)
    query = engine.query(where, None, newest_first=True, limit=PAGE + 1)
    assert query is not None
    billed = max(scanned, ATHENA_MIN_BYTES)
    print("  Athena, the same first page (StartQueryExecution; ExecutionParameters in order):")
    print(f"    {query.sql}")
    print(f"    parameters: {', '.join(repr(value) for value in query.values)}")
    print(f"    scans the range's partitions, the same files as JSON in the bucket (uncompressed): "
          f"{scanned / 1e6:,.1f} MB; at ${ATHENA_USD_PER_TB}/TB: ${billed / 1e12 * ATHENA_USD_PER_TB:.4f} a query "
          f"(every page and export of the range scans it all again)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000,
                        help="the main account's events over the 30 days (default 1,000,000)")
    parser.add_argument("--keep", type=Path, help="write the data directory here and keep it (an empty directory)")
    args = parser.parse_args()
    run(args.events, args.keep)


if __name__ == "__main__":
    main()
