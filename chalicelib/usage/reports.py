"""What the dashboard and the request log read: summaries from the live rollups, the log and its
exports from the usage events, each for one account (a customer's) or every account (an operator's).
A customer never reads another account's rows: the account is always part of the query."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from chalicelib.core.domain import UsageEvent
from chalicelib.core.errors import InvalidRequest, NotFound
from chalicelib.core.usage import LogFilter, LogPage
from chalicelib.storage.ports import KeyRepo, UsageLog, UsageRollupRepo
from chalicelib.storage.usage_log_sql import status_predicate
from chalicelib.usage.ranges import TimeRange, time_range
from chalicelib.usage.summary import DIMENSION, Summary, summarize

MAX_LOG_PAGE = 200
# Reads a summary makes beside the request's own thread (threads of their own keep their storage connections).
_READS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="usage-read")


@dataclass(frozen=True)
class UsageQuery:
    """A query's parameters, as the routes read them from the query string (all optional)."""

    since: str | None = None
    until: str | None = None
    tz: str | None = None
    granularity: str | None = None
    group_by: str | None = None
    key_id: str | None = None
    model: str | None = None
    status: str | None = None


class UsageReports:
    def __init__(self, rollups: UsageRollupRepo, log: UsageLog, keys: KeyRepo, *,
                 now_ms: Callable[[], int]) -> None:
        self._rollups = rollups
        self._log = log
        self._keys = keys
        self._now_ms = now_ms

    def summary(self, account_id: str | None, query: UsageQuery, *, operator: bool = False) -> Summary:
        """Totals, series and breakdown of the account's usage (None: every account's)."""
        span = self.range(query)
        granularity = _choice(query.granularity or "day", ("hour", "day"), "granularity")
        groups = ("model", "key", "channel", "account") if operator else ("model", "key")
        group_by = _choice(query.group_by or "model", groups, "group_by")
        # Summed in storage: a quarter-hour's row per bucket for the series, one per group for the breakdown
        # (and the totals). The two reads run side by side: storage works outside the interpreter's lock.
        series = _READS.submit(self._rollups.sums, account_id, span.since_ms, span.until_ms, "bucket",
                               latency=False)
        by_group = self._rollups.sums(account_id, span.since_ms, span.until_ms, DIMENSION[group_by])
        by_bucket = series.result()
        return summarize(by_bucket, by_group, span, granularity=granularity,  # type: ignore[arg-type]
                         group_by=group_by, now_ms=self._now_ms())

    def spend(self, account_id: str, since_ms: int, until_ms: int) -> int:
        """What the account was charged in [since_ms, until_ms) (whole quarter-hours), in units."""
        return sum(row.cost for row in self._rollups.sums(account_id, since_ms, until_ms, "account_id"))

    def logs(self, account_id: str | None, query: UsageQuery, *, limit: int = 50, cursor: str | None = None
             ) -> LogPage:
        return self._log.page(self.log_filter(account_id, query), limit=max(1, min(limit, MAX_LOG_PAGE)),
                              cursor=cursor)

    def export(self, account_id: str | None, query: UsageQuery) -> Iterator[UsageEvent]:
        return self._log.export(self.log_filter(account_id, query))

    def range(self, query: UsageQuery) -> TimeRange:
        return time_range(query.since, query.until, query.tz, now_ms=self._now_ms())

    def log_filter(self, account_id: str | None, query: UsageQuery) -> LogFilter:
        span = self.range(query)
        if query.key_id is not None and account_id is not None:
            key = self._keys.get_by_id(query.key_id)
            if key is None or key.account_id != account_id:
                raise NotFound(f"No API key `{query.key_id}`.", param="key_id")
        status = query.status
        if status is not None:
            status_predicate(status)  # refused here, before any partition is listed or file read
        return LogFilter(span.since_ms, span.until_ms, account_id=account_id, key_id=query.key_id,
                         model=query.model, status=status)


def _choice(value: str, allowed: tuple[str, ...], name: str) -> str:
    if value not in allowed:
        raise InvalidRequest(f"{name} must be one of {', '.join(allowed)}.", param=name, code="invalid_value")
    return value

