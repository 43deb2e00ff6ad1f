"""The request log on one machine: DuckDB reads the usage files (local_usage_sink.py) where they lie.

    page(filter, cursor) / export(filter)
      → the day partitions of [since, until) that exist   usage/year=YYYY/month=MM/day=DD/
      → a day at a time (newest first for a page, until it is full; oldest first for an export),
        its files read by read_json (a cut last line is skipped: ignore_errors)
      → the query of usage_log_sql.py, every value a parameter, on a connection of this call's own

Each call opens its own in-memory connection (cheap, and a connection is not shared across the
gateway's threads); an export keeps its connection while it is consumed and closes it when done.
Lines are written whole and synchronously, so the log is complete up to now: `as_of` is now.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import duckdb

from chalicelib.core.domain import UsageEvent
from chalicelib.core.errors import StorageError
from chalicelib.core.usage import LogFilter, LogPage
from chalicelib.storage.cursors import page_limit
from chalicelib.storage.local_usage_sink import USAGE_PREFIX
from chalicelib.storage.ports import UsageLog
from chalicelib.storage.usage_log_sql import (
    FIELDS,
    INTEGER_FIELDS,
    SELECT_LIST,
    Position,
    days_of,
    decode_position,
    order_by,
    paged,
    predicate,
)

EXPORT_BATCH = 1000
_PARTITION = re.compile(r"year=(\d{4})/month=(\d{2})/day=(\d{2})")


def _column_type(name: str) -> str:
    if name in INTEGER_FIELDS:
        return "BIGINT"
    return "BOOLEAN" if name == "stream" else "VARCHAR"


# The columns are given, not sniffed: a partition of nothing but nulls in a field reads the same, and
# fields the reader does not need (cost_usd, which is derived from cost_units) are left out.
_COLUMNS = "{" + ", ".join(f"'{name}': '{_column_type(name)}'" for name in FIELDS) + "}"
_SOURCE = (f"read_json(?, format = 'newline_delimited', columns = {_COLUMNS}, ignore_errors = true, "
           "hive_partitioning = false)")


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class DuckDbUsageLog(UsageLog):
    """The usage events under `<data_dir>/usage/`, queried with DuckDB."""

    def __init__(self, data_dir: Path, *, now_ms: Callable[[], int] = _wall_clock_ms) -> None:
        self._root = Path(data_dir) / USAGE_PREFIX
        self._now_ms = now_ms

    def page(self, where: LogFilter, *, limit: int, cursor: str | None = None) -> LogPage:
        """Events newest first (by time, then request id), `limit` at a time."""
        limit = page_limit(limit)
        after = decode_position(cursor)
        as_of = self._now_ms()
        # Each day's partition holds that UTC day's events, so days read newest first give the events
        # newest first: a page reads the days it needs, not the whole range.
        days = [day for day in reversed(self.partitions(where))
                if after is None or _day_of(day) <= after.time[:10]]
        with _connection() as connection:
            events = _events_of_days(connection, days, where, after, newest_first=True, wanted=limit + 1)
            found, next_cursor = paged(events, limit)
        return LogPage(found, next_cursor, as_of)

    def export(self, where: LogFilter) -> Iterator[UsageEvent]:
        """Every event of the filter, oldest first, read a day at a time in batches as they are consumed."""
        days = self.partitions(where)
        if not days:
            return
        with _connection() as connection:
            yield from _events_of_days(connection, days, where, None, newest_first=False, wanted=None)

    def partitions(self, where: LogFilter) -> list[Path]:
        """The day partitions of the filter's range that exist, oldest first: all a query reads."""
        wanted = set(days_of(where))
        if not wanted or not self._root.is_dir():
            return []
        found = []
        for directory in self._root.glob("year=*/month=*/day=*"):
            match = _PARTITION.fullmatch(directory.relative_to(self._root).as_posix())
            if match is None or not directory.is_dir():
                continue
            try:
                day = date(*(int(part) for part in match.groups()))
            except ValueError:  # not a calendar day: no event's partition
                continue
            if day in wanted:
                found.append((day, directory))
        return [directory for _, directory in sorted(found)]

    def files(self, where: LogFilter) -> list[str]:
        """The usage files of those partitions."""
        return [path for partition in self.partitions(where) for path in _files(partition)]


def _files(partition: Path) -> list[str]:
    return [str(path) for path in sorted(partition.glob("*.jsonl"))]


def _day_of(partition: Path) -> str:
    """A partition's UTC day as the events' times begin, `YYYY-MM-DD`."""
    match = _PARTITION.search(partition.as_posix())
    assert match is not None
    return "-".join(match.groups())


def _events_of_days(connection: duckdb.DuckDBPyConnection, days: list[Path], where: LogFilter,
                    after: Position | None, *, newest_first: bool, wanted: int | None) -> Iterator[UsageEvent]:
    """The filter's events of each day's partition in turn (in the order given), in order within each, until
    `wanted` are found (None: all)."""
    found = 0
    for day in days:
        files = _files(day)
        if not files:
            continue
        limit = None if wanted is None else wanted - found
        for event in _events(_query(connection, files, where, after, newest_first=newest_first, limit=limit),
                             EXPORT_BATCH):
            found += 1
            yield event
        if wanted is not None and found >= wanted:
            return


def _query(connection: duckdb.DuckDBPyConnection, files: list[str], where: LogFilter, after: Position | None,
           *, newest_first: bool, limit: int | None) -> duckdb.DuckDBPyConnection:
    condition = predicate(where, after, newest_first=newest_first)
    sql = f"SELECT {SELECT_LIST} FROM {_SOURCE} WHERE {condition.sql} {order_by(newest_first=newest_first)}"
    values: list[object] = [files, *condition.values]
    if limit is not None:
        sql += " LIMIT ?"
        values.append(limit)
    try:
        return connection.execute(sql, values)
    except duckdb.Error as exc:
        raise StorageError(f"The usage files could not be read: {type(exc).__name__}") from exc


@contextmanager
def _connection() -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB connection for one call, closed after it."""
    try:
        connection = duckdb.connect(":memory:")
    except duckdb.Error as exc:
        raise StorageError(f"The usage files could not be read: {type(exc).__name__}") from exc
    try:
        yield connection
    finally:
        connection.close()


def _events(cursor: duckdb.DuckDBPyConnection, batch: int) -> Iterator[UsageEvent]:
    while True:
        try:
            rows = cursor.fetchmany(batch)
        except duckdb.Error as exc:
            raise StorageError(f"The usage files could not be read: {type(exc).__name__}") from exc
        if not rows:
            return
        for row in rows:
            yield UsageEvent(*row)
