"""Request limit counters on SQLite: tables `limit_counters` and `limit_leases` (see schema_v2.py).

    admit(request, charges)   one write transaction (the file's lock, across processes):
                              read each scope's window and in-flight counter; a limit exceeded →
                              nothing written, refused; else every window +1 request and + the
                              estimate, every in-flight counter +1, the lease inserted
    finish(request)           one write transaction: the lease deleted (it exists: the slots go back
                              once), its in-flight counters -1, each token correction added
    expired_leases(now)       the sweeper's list: leases past their expiry, to finish

Windows past their expiry are deleted by the admissions that come after them (DynamoDB's TTL,
done here by the writer).
"""

from __future__ import annotations

import json
import sqlite3

from chalicelib.storage.ports import Admission, Lease, LimitCharge, LimitRepo, ScopeCount
from chalicelib.storage.sqlite.database import Database, first

WINDOW_S = 60


class SqliteLimitRepo(LimitRepo):
    def __init__(self, db: Database) -> None:
        self._db = db

    def admit(self, request_id: str, charges: list[LimitCharge], lease_expires_at_s: int, *,
              now_s: int) -> Admission:
        minute = now_s // WINDOW_S
        reset_s = (minute + 1) * WINDOW_S - now_s
        with self._db.write() as tx:
            before = [_count(tx, charge.scope, minute, reset_s) for charge in charges]
            for charge, count in zip(charges, before, strict=True):
                # Invariants, checked under the write lock so that no other admission moves in between:
                # a window's requests <= rpm, its tokens <= tpm, a scope's requests in flight <= concurrency.
                if charge.rpm is not None and count.requests + 1 > charge.rpm:
                    return Admission(False, tuple(before), charge.scope, "rpm", reset_s)
                if charge.tpm is not None and count.tokens + charge.tokens > charge.tpm:
                    return Admission(False, tuple(before), charge.scope, "tpm", reset_s)
                if charge.concurrency is not None and count.inflight + 1 > charge.concurrency:
                    return Admission(False, tuple(before), charge.scope, "concurrency", 1)
            tx.execute("DELETE FROM limit_counters WHERE expires_at_s IS NOT NULL AND expires_at_s < ?", (now_s,))
            for charge, count in zip(charges, before, strict=True):
                tx.execute(
                    "INSERT INTO limit_counters (counter_id, requests, tokens, expires_at_s) VALUES (?, 1, ?, ?) "
                    "ON CONFLICT (counter_id) DO UPDATE SET requests = requests + 1, tokens = tokens + excluded.tokens",
                    (count.window_id, charge.tokens, (minute + 2) * WINDOW_S))
                tx.execute("INSERT INTO limit_counters (counter_id, inflight) VALUES (?, 1) "
                           "ON CONFLICT (counter_id) DO UPDATE SET inflight = inflight + 1", (charge.scope,))
            # Invariant: a request holds its slots once (its id is the lease's key).
            tx.execute("INSERT INTO limit_leases (request_id, scopes, expires_at_s) VALUES (?, ?, ?)",
                       (request_id, json.dumps([charge.scope for charge in charges]), lease_expires_at_s))
        after = tuple(ScopeCount(count.scope, count.window_id, count.requests + 1, count.tokens + charge.tokens,
                                 count.inflight + 1, reset_s) for charge, count in zip(charges, before, strict=True))
        return Admission(True, after)

    def finish(self, request_id: str, token_corrections: list[tuple[str, int]]) -> bool:
        with self._db.write() as tx:
            # Invariant: the slots go back once: only the transaction that deletes the lease gives them.
            row = first(tx.execute("DELETE FROM limit_leases WHERE request_id = ? RETURNING scopes", (request_id,)))
            if row is None:
                return False
            for scope in json.loads(row["scopes"]):
                tx.execute("UPDATE limit_counters SET inflight = inflight - 1 WHERE counter_id = ? AND inflight > 0",
                           (scope,))
            for window_id, delta in token_corrections:
                # A correction is unconditional: the tokens were used, whatever the limit.
                tx.execute("UPDATE limit_counters SET tokens = tokens + ? WHERE counter_id = ?", (delta, window_id))
        return True

    def expired_leases(self, now_s: int) -> list[Lease]:
        with self._db.read() as tx:
            rows = tx.execute("SELECT request_id, scopes, expires_at_s FROM limit_leases WHERE expires_at_s <= ? "
                              "ORDER BY expires_at_s", (now_s,)).fetchall()
        return [Lease(row["request_id"], tuple(json.loads(row["scopes"])), row["expires_at_s"]) for row in rows]


def _count(tx: sqlite3.Connection, scope: str, minute: int, reset_s: int) -> ScopeCount:
    window_id = f"{scope}#{minute}"
    window = first(tx.execute("SELECT requests, tokens FROM limit_counters WHERE counter_id = ?", (window_id,)))
    inflight = first(tx.execute("SELECT inflight FROM limit_counters WHERE counter_id = ?", (scope,)))
    return ScopeCount(scope, window_id, window["requests"] if window else 0, window["tokens"] if window else 0,
                      inflight["inflight"] if inflight else 0, reset_s)
