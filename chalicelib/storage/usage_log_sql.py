"""The request log's query, shared by its two engines: DuckDB over the local usage files and Athena over
the usage bucket. Both read the same JSON lines (UsageEvent.to_json_line) in the same partitions
(`usage/year=YYYY/month=MM/day=DD/`), so one SQL shape serves both:

    SELECT <the event's fields> FROM <the partitions of the range>
    WHERE "time" >= ? AND "time" < ?                         the filter's [since, until)
      [AND account_id = ?] [AND key_id = ?] [AND model = ?] [AND <status>]
      [AND ("time" < ? OR ("time" = ? AND request_id < ?))]  a page's cursor (the last row seen)
    ORDER BY "time" DESC, request_id DESC                      (ASC for exports)

Every value is a `?` parameter; nothing from a request is ever part of the SQL text. `time` is compared
as text: the gateway writes every event's time in one form, ISO 8601 UTC with milliseconds
(`2024-05-01T12:34:56.789+00:00`), whose text order is its time order, and the bounds are written in it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from chalicelib.core.domain import UsageEvent
from chalicelib.core.errors import InvalidRequest
from chalicelib.core.usage import LogFilter
from chalicelib.storage.cursors import decode_cursor, encode_cursor

# The event's fields, in UsageEvent's order, so a row is UsageEvent(*row).
FIELDS = tuple(field.name for field in dataclasses.fields(UsageEvent))
INTEGER_FIELDS = frozenset({"status", "prompt_tokens", "cached_tokens", "completion_tokens", "images",
                            "cost_units", "shortfall_units", "latency_ms", "ttft_ms"})
BOOLEAN_FIELDS = frozenset({"stream"})
SELECT_LIST = ", ".join(f'"{name}"' for name in FIELDS)

_STATUS = re.compile(r"[1-5][0-9][0-9]")
_CURSOR_FIELDS = {"time": str, "request_id": str}


@dataclass(frozen=True)
class Position:
    """Where a page ended: its last event's time and request id."""

    time: str
    request_id: str


@dataclass(frozen=True)
class Predicate:
    """A WHERE clause's text (with `?` placeholders) and its values, in order."""

    sql: str
    values: tuple[object, ...]


def iso_ms(epoch_ms: int) -> str:
    """The moment in the form events carry their time."""
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def days_of(where: LogFilter) -> list[date]:
    """The UTC days overlapping [since, until), oldest first; none for an empty range."""
    if where.until_ms <= where.since_ms:
        return []
    first = datetime.fromtimestamp(where.since_ms / 1000, tz=UTC).date()
    last = datetime.fromtimestamp((where.until_ms - 1) / 1000, tz=UTC).date()
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]


def predicate(where: LogFilter, after: Position | None, *, newest_first: bool) -> Predicate:
    """The filter (and the cursor's position, if any) as a WHERE clause with parameters."""
    clauses = ['"time" >= ?', '"time" < ?']
    values: list[object] = [iso_ms(where.since_ms), iso_ms(where.until_ms)]
    for column, value in (("account_id", where.account_id), ("key_id", where.key_id), ("model", where.model)):
        if value is not None:
            clauses.append(f"{column} = ?")
            values.append(value)
    if where.status is not None:
        status = status_predicate(where.status)
        clauses.append(status.sql)
        values.extend(status.values)
    if after is not None:
        beyond = "<" if newest_first else ">"
        clauses.append(f'("time" {beyond} ? OR ("time" = ? AND request_id {beyond} ?))')
        values.extend((after.time, after.time, after.request_id))
    return Predicate(" AND ".join(clauses), tuple(values))


def status_predicate(status: str) -> Predicate:
    """"success" (2xx), "error" (anything else) or one 3-digit status; InvalidRequest otherwise."""
    if status == "success":
        return Predicate("status BETWEEN ? AND ?", (200, 299))
    if status == "error":
        return Predicate("NOT (status BETWEEN ? AND ?)", (200, 299))
    if _STATUS.fullmatch(status):
        return Predicate("status = ?", (int(status),))
    raise InvalidRequest("status must be success, error or an HTTP status such as 429.", param="status",
                         code="invalid_value")


def order_by(*, newest_first: bool) -> str:
    direction = "DESC" if newest_first else "ASC"
    return f'ORDER BY "time" {direction}, request_id {direction}'


def decode_position(cursor: str | None) -> Position | None:
    """The position a cursor names; InvalidRequest (param `cursor`) if it is not one."""
    if cursor is None:
        return None
    values = decode_cursor(cursor, _CURSOR_FIELDS)
    return Position(values["time"], values["request_id"])


def encode_position(event: UsageEvent) -> str:
    return encode_cursor({"time": event.time, "request_id": event.request_id})


def paged(rows: Iterator[UsageEvent], limit: int) -> tuple[tuple[UsageEvent, ...], str | None]:
    """The first `limit` events of `limit` + 1 read, and the next page's cursor if there was one more."""
    events = []
    for event in rows:
        events.append(event)
        if len(events) > limit:
            break
    if len(events) > limit:
        return tuple(events[:limit]), encode_position(events[limit - 1])
    return tuple(events), None
