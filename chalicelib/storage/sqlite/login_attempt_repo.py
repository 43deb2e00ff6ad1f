"""Login attempt counters and guess locks on SQLite: table `login_attempts`.

A counter row holds `attempts`; a lock row holds `not_before_s`, the time until which
it is taken. Expired rows are left for the reader to ignore, and removed as locks are
claimed (DynamoDB's TTL, done here by the writer).
"""

from __future__ import annotations

from chalicelib.storage.ports import LoginAttemptRepo
from chalicelib.storage.sqlite.database import Database, first


class SqliteLoginAttemptRepo(LoginAttemptRepo):
    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, counter_id: str, amount: int, expires_at_s: int) -> int:
        with self._db.write() as tx:
            # One statement adds and returns the new count: concurrent attempts each see their own.
            row = first(tx.execute(
                "INSERT INTO login_attempts (counter_id, attempts, expires_at_s) VALUES (?, ?, ?) "
                "ON CONFLICT (counter_id) DO UPDATE SET attempts = attempts + excluded.attempts, "
                "expires_at_s = excluded.expires_at_s RETURNING attempts",
                (counter_id, amount, expires_at_s)))
        return row["attempts"]

    def count(self, counter_id: str, now_s: int) -> int:
        with self._db.read() as tx:
            row = first(tx.execute("SELECT attempts FROM login_attempts WHERE counter_id = ? AND expires_at_s > ?",
                                   (counter_id, now_s)))
        return row["attempts"] if row else 0

    def clear(self, counter_id: str) -> None:
        with self._db.write() as tx:
            tx.execute("DELETE FROM login_attempts WHERE counter_id = ?", (counter_id,))

    def claim(self, lock_id: str, now_s: int, until_s: int) -> int:
        with self._db.write() as tx:
            taken = tx.execute(
                "INSERT INTO login_attempts (counter_id, expires_at_s, not_before_s) VALUES (:id, :until, :until) "
                "ON CONFLICT (counter_id) DO UPDATE SET not_before_s = :until, expires_at_s = :until "
                # Invariant: past the per-account ceiling, one guess at a time per delay. Under the
                # write lock, of concurrent claims only the first finds the lock free.
                "WHERE not_before_s IS NULL OR not_before_s <= :now",
                {"id": lock_id, "until": until_s, "now": now_s}).rowcount
            if taken:
                tx.execute("DELETE FROM login_attempts WHERE expires_at_s < ? AND counter_id != ?", (now_s, lock_id))
                return 0
            row = first(tx.execute("SELECT not_before_s FROM login_attempts WHERE counter_id = ?", (lock_id,)))
            return row["not_before_s"]
