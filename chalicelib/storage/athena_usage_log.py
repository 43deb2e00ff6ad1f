"""The request log on AWS: Athena queries the usage bucket, where Firehose writes the events.

    page(filter, cursor) / export(filter)
      → StartQueryExecution: the query of usage_log_sql.py, pruned to the range's partitions by
        year/month/day predicates (partition projection, infra/template.yaml), every value passed in
        ExecutionParameters (each a SQL literal, as Athena takes them) and never in the query's text
      → GetQueryExecution until SUCCEEDED, waiting at most `timeout_s`
            ├── FAILED or CANCELLED → StorageError (the reason is logged; the query and values never
            │                         reach the message)
            └── still running at the deadline → stopped, StorageError
      → GetQueryResults, page by page as the rows are consumed → UsageEvent

Firehose delivers an event up to its buffering interval after it is put: a page is complete for
events recorded before `as_of` = now − buffer_s. The workgroup caps the bytes one query may scan.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

from chalicelib.core.domain import UsageEvent
from chalicelib.core.errors import StorageError
from chalicelib.core.usage import LogFilter, LogPage
from chalicelib.storage.cursors import page_limit
from chalicelib.storage.dynamodb.common import storage_errors
from chalicelib.storage.ports import UsageLog
from chalicelib.storage.usage_log_sql import (
    BOOLEAN_FIELDS,
    FIELDS,
    INTEGER_FIELDS,
    SELECT_LIST,
    Position,
    Predicate,
    days_of,
    decode_position,
    order_by,
    paged,
    predicate,
)

log = logging.getLogger(__name__)

RESULTS_PAGE = 1000  # GetQueryResults' largest page
_NAME = re.compile(r"[A-Za-z0-9_]+")
_RUNNING = frozenset({"QUEUED", "RUNNING"})


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class AthenaUsageLog(UsageLog):
    """The usage events in the usage bucket, through the Glue table over it, queried with Athena."""

    def __init__(self, athena_client: Any, *, database: str, table: str, workgroup: str, buffer_s: int = 60,
                 sleep: Callable[[float], None] = time.sleep, now_ms: Callable[[], int] = _wall_clock_ms,
                 timeout_s: float = 30.0) -> None:
        for name in (database, table):
            # Names come from the deployment, never a request; they are quoted identifiers in the query.
            if not _NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a Glue database or table name")
        self._athena = athena_client
        self._source = f'"{database}"."{table}"'
        self._database = database
        self._workgroup = workgroup
        self._buffer_ms = buffer_s * 1000
        self._sleep = sleep
        self._now_ms = now_ms
        self._timeout_s = timeout_s

    def page(self, where: LogFilter, *, limit: int, cursor: str | None = None) -> LogPage:
        """Events newest first (by time, then request id), `limit` at a time."""
        limit = page_limit(limit)
        after = decode_position(cursor)
        as_of = self._now_ms() - self._buffer_ms
        query = self.query(where, after, newest_first=True, limit=limit + 1)
        if query is None:
            return LogPage((), None, as_of)
        events, next_cursor = paged(self._run(query), limit)
        return LogPage(events, next_cursor, as_of)

    def export(self, where: LogFilter) -> Iterator[UsageEvent]:
        """Every event of the filter, oldest first, its results read page by page as they are consumed."""
        query = self.query(where, None, newest_first=False, limit=None)
        if query is not None:
            yield from self._run(query)

    def query(self, where: LogFilter, after: Position | None, *, newest_first: bool,
              limit: int | None) -> Predicate | None:
        """The query's text and its values (None for an empty range, which needs no query)."""
        partitions = _partition_predicate(days_of(where))
        if partitions is None:
            return None
        condition = predicate(where, after, newest_first=newest_first)
        sql = (f"SELECT {SELECT_LIST} FROM {self._source} WHERE ({partitions.sql}) AND {condition.sql} "
               f"{order_by(newest_first=newest_first)}")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"  # a validated count, not a request's text
        return Predicate(sql, partitions.values + condition.values)

    def _run(self, query: Predicate) -> Iterator[UsageEvent]:
        with storage_errors("start the request log query"):
            execution_id = self._athena.start_query_execution(
                QueryString=query.sql, QueryExecutionContext={"Database": self._database},
                WorkGroup=self._workgroup, ExecutionParameters=[_literal(value) for value in query.values],
            )["QueryExecutionId"]
        self._wait(execution_id)
        yield from self._results(execution_id)

    def _wait(self, execution_id: str) -> None:
        waited, interval = 0.0, 0.1
        while True:
            with storage_errors("read the request log query's state"):
                status = self._athena.get_query_execution(QueryExecutionId=execution_id)["QueryExecution"]["Status"]
            state = status["State"]
            if state == "SUCCEEDED":
                return
            if state not in _RUNNING:
                reason = status.get("StateChangeReason", "")
                category = status.get("AthenaError", {}).get("ErrorCategory")
                log.warning("request log query %s %s (error category %s): %s", execution_id, state, category, reason)
                raise StorageError(f"The request log query {state.lower()} (Athena query {execution_id}).")
            if waited >= self._timeout_s:
                with storage_errors("stop the request log query"):
                    self._athena.stop_query_execution(QueryExecutionId=execution_id)
                raise StorageError(f"The request log query did not finish within {self._timeout_s:g} s "
                                   f"(Athena query {execution_id}, stopped).")
            self._sleep(interval)
            waited += interval
            interval = min(interval * 2, 1.0)

    def _results(self, execution_id: str) -> Iterator[UsageEvent]:
        request: dict[str, Any] = {"QueryExecutionId": execution_id, "MaxResults": RESULTS_PAGE}
        first = True
        while True:
            with storage_errors("read the request log query's results"):
                response = self._athena.get_query_results(**request)
            result_set = response["ResultSet"]
            names = [column["Name"] for column in result_set.get("ResultSetMetadata", {}).get("ColumnInfo", [])]
            rows = [[datum.get("VarCharValue") for datum in row["Data"]] for row in result_set.get("Rows", [])]
            if first and rows and rows[0] == names:  # a SELECT's first page opens with the column names
                rows = rows[1:]
            first = False
            for row in rows:
                yield _event(dict(zip(names, row, strict=True)))
            if not response.get("NextToken"):
                return
            request["NextToken"] = response["NextToken"]


def _partition_predicate(days: list[date]) -> Predicate | None:
    """One (year, month, day range) clause per month of the range, as the Firehose prefix writes them."""
    if not days:
        return None
    months: dict[tuple[int, int], list[date]] = {}
    for day in days:
        months.setdefault((day.year, day.month), []).append(day)
    clauses, values = [], []
    for (year, month), in_month in months.items():
        clauses.append("(year = ? AND month = ? AND day BETWEEN ? AND ?)")
        values.extend((f"{year:04d}", f"{month:02d}", f"{in_month[0].day:02d}", f"{in_month[-1].day:02d}"))
    return Predicate(" OR ".join(clauses), tuple(values))


def _literal(value: object) -> str:
    """A value as the SQL literal Athena takes for an execution parameter (text quoted, quotes doubled)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"no literal for {type(value).__name__}")
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("'", "''") + "'"


def _event(row: dict[str, str | None]) -> UsageEvent:
    values: list[object] = []
    for name in FIELDS:
        text = row.get(name)
        if text is None:
            values.append(None)
        elif name in INTEGER_FIELDS:
            values.append(int(text))
        elif name in BOOLEAN_FIELDS:
            values.append(text == "true")
        else:
            values.append(text)
    return UsageEvent(*values)
