"""Set-password links on SQLite: table `password_links`, one row per account.

    put        the account's row is written whole: an earlier link is replaced, and dies
      │
      └── consume   deleted on condition that it is this link and has not expired:
                    the one use; a second or concurrent use finds no row
"""

from __future__ import annotations

from chalicelib.core.domain import PasswordLink
from chalicelib.storage.ports import PasswordLinkRepo
from chalicelib.storage.sqlite.database import Database, first

_COLUMNS = "account_id, link_hash, created_at, expires_at"


class SqlitePasswordLinkRepo(PasswordLinkRepo):
    def __init__(self, db: Database) -> None:
        self._db = db

    def put(self, link: PasswordLink) -> None:
        with self._db.write() as tx:
            tx.execute(f"INSERT OR REPLACE INTO password_links ({_COLUMNS}) VALUES (?, ?, ?, ?)",
                       (link.account_id, link.link_hash, link.created_at, link.expires_at))
            # Links that expired before this one was made can never be used: remove them.
            tx.execute("DELETE FROM password_links WHERE expires_at < ?", (link.created_at,))

    def get(self, account_id: str) -> PasswordLink | None:
        with self._db.read() as tx:
            row = first(tx.execute(f"SELECT {_COLUMNS} FROM password_links WHERE account_id = ?", (account_id,)))
        return PasswordLink(**dict(row)) if row else None

    def consume(self, account_id: str, link_hash: str, now_ms: int) -> bool:
        with self._db.write() as tx:
            # Invariant: a link sets a password once, and only before it expires. The delete is
            # the use: of concurrent uses, one finds the row and the rest none.
            return bool(tx.execute("DELETE FROM password_links WHERE account_id = ? AND link_hash = ? "
                                   "AND expires_at > ?", (account_id, link_hash, now_ms)).rowcount)
