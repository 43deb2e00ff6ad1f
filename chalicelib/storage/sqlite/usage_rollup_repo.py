"""The live usage rollups on SQLite: the `usage_rollups` table, added to inside the wallet's
settle and release transactions (`add_usage`), read back by bucket range.

    settle() / release() closing a request ─► add_usage(tx, account, usage, charged)
        INSERT the row with this request's counters, or ON CONFLICT add them to the row's:
        one statement under the transaction's write lock, so concurrent requests of one row
        sum exactly and a rolled-back settlement leaves no count behind
"""

from __future__ import annotations

import sqlite3

from chalicelib.core.usage import ROLLUP_DIMENSIONS, RollupRow, UsageDelta
from chalicelib.storage.ports import UsageRollupRepo
from chalicelib.storage.rollups import COUNTERS, HISTOGRAM_COLUMNS, LABELS, counters, labels, row_of
from chalicelib.storage.sqlite.database import Database

_COLUMNS = ("account_id", "rollup_id", *LABELS, *COUNTERS)
_UPSERT = (
    f"INSERT INTO usage_rollups ({', '.join(_COLUMNS)}) VALUES ({', '.join(':' + name for name in _COLUMNS)}) "
    "ON CONFLICT (account_id, rollup_id) DO UPDATE SET "
    + ", ".join(f"{name} = {name} + excluded.{name}" for name in COUNTERS)
)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM usage_rollups"
_LATENCY = frozenset({"latency_sum_ms", "ttft_sum_ms", "ttft_count", *HISTOGRAM_COLUMNS})


def add_usage(tx: sqlite3.Connection, account_id: str, usage: UsageDelta, charged: int, *,
              error: bool = False) -> None:
    """Add one closed request to its rollup row, inside the caller's transaction."""
    tx.execute(_UPSERT, {"account_id": account_id, "rollup_id": usage.rollup_id, **labels(usage),
                         **counters(usage, charged, error=error)})


class SqliteUsageRollupRepo(UsageRollupRepo):
    def __init__(self, db: Database) -> None:
        self._db = db

    def rows(self, account_id: str | None, since_ms: int, until_ms: int) -> list[RollupRow]:
        with self._db.read() as tx:
            if account_id is not None:
                # rollup_id starts with the 13-digit bucket, so a bucket starts in [since, until) exactly
                # when the id sorts in [since, until) written the same way: the primary key's own range.
                found = tx.execute(f"{_SELECT} WHERE account_id = ? AND rollup_id >= ? AND rollup_id < ? "
                                   "ORDER BY rollup_id",
                                   (account_id, f"{since_ms:013d}", f"{until_ms:013d}")).fetchall()
            else:
                found = tx.execute(f"{_SELECT} WHERE bucket >= ? AND bucket < ? "
                                   "ORDER BY bucket, account_id, rollup_id", (since_ms, until_ms)).fetchall()
        return [row_of(row["account_id"], dict(row)) for row in found]

    def sums(self, account_id: str | None, since_ms: int, until_ms: int, by: str, *,
             latency: bool = True) -> list[RollupRow]:
        if by not in ROLLUP_DIMENSIONS:
            raise ValueError(f"rollups are summed by one of {ROLLUP_DIMENSIONS}, not {by!r}")
        # `by` is one of the fixed column names above, never a request's text; the values are parameters.
        sums = ", ".join(f"SUM({name}) AS {name}" if latency or name not in _LATENCY else f"0 AS {name}"
                         for name in COUNTERS)
        with self._db.read() as tx:
            if account_id is not None:
                found = tx.execute(f"SELECT {by} AS value, {sums} FROM usage_rollups WHERE account_id = ? "
                                   f"AND rollup_id >= ? AND rollup_id < ? GROUP BY {by}",
                                   (account_id, f"{since_ms:013d}", f"{until_ms:013d}")).fetchall()
            else:
                found = tx.execute(f"SELECT {by} AS value, {sums} FROM usage_rollups WHERE bucket >= ? "
                                   f"AND bucket < ? GROUP BY {by}", (since_ms, until_ms)).fetchall()
        labels = dict.fromkeys(("account_id", "bucket", "key_id", "model", "channel"))
        return [RollupRow(**{**labels, by: row["value"]},
                          **{name: row[name] for name in COUNTERS if name not in HISTOGRAM_COLUMNS},
                          histogram=tuple(row[name] for name in HISTOGRAM_COLUMNS)) for row in found]

