"""Console sessions on SQLite: table `sessions`, by the SHA-256 of their token."""

from __future__ import annotations

from chalicelib.core.domain import ConsoleSession
from chalicelib.core.errors import Conflict
from chalicelib.storage.ports import SessionRepo
from chalicelib.storage.sqlite.database import Database, first

_COLUMNS = "session_hash, account_id, session_epoch, csrf_hash, created_at, expires_at"


class SqliteSessionRepo(SessionRepo):
    """Expiry is checked by the reader; expired rows are removed as new sessions are made
    (DynamoDB's TTL, done here by the writer)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, session: ConsoleSession) -> None:
        with self._db.write() as tx:
            inserted = tx.execute(f"INSERT INTO sessions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                                  (session.session_hash, session.account_id, session.session_epoch, session.csrf_hash,
                                   session.created_at, session.expires_at)).rowcount
            if not inserted:
                raise Conflict("session already exists")
            tx.execute("DELETE FROM sessions WHERE expires_at < ?", (session.created_at,))

    def get(self, session_hash: str) -> ConsoleSession | None:
        with self._db.read() as tx:
            row = first(tx.execute(f"SELECT {_COLUMNS} FROM sessions WHERE session_hash = ?", (session_hash,)))
        return ConsoleSession(**dict(row)) if row else None

    def delete(self, session_hash: str) -> None:
        with self._db.write() as tx:
            tx.execute("DELETE FROM sessions WHERE session_hash = ?", (session_hash,))
