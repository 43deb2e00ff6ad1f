"""Every repository on one SQLite file in a test's directory: the storage unit tests run services over.

The schema is made once per test run in a template file, which each store copies: a copy opens in
about half a millisecond, a new file in several (switching it to WAL and creating the tables sync it).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sqlite3
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chalicelib.storage.secrets.envelope import SecretSealer
from chalicelib.storage.secrets.local import KEY_BYTES, LocalKeyWrapper
from chalicelib.storage.sqlite.account_repo import SqliteAccountRepo
from chalicelib.storage.sqlite.catalog_repo import SqliteCatalogRepo
from chalicelib.storage.sqlite.database import Database
from chalicelib.storage.sqlite.key_repo import SqliteKeyRepo
from chalicelib.storage.sqlite.login_attempt_repo import SqliteLoginAttemptRepo
from chalicelib.storage.sqlite.password_link_repo import SqlitePasswordLinkRepo
from chalicelib.storage.sqlite.session_repo import SqliteSessionRepo
from chalicelib.storage.sqlite.wallet_repo import SqliteWalletRepo

_template: Path | None = None
_lock = threading.Lock()


@dataclass
class Store:
    path: Path
    db: Database
    accounts: SqliteAccountRepo
    keys: SqliteKeyRepo
    wallets: SqliteWalletRepo
    catalog: SqliteCatalogRepo
    sessions: SqliteSessionRepo
    login_attempts: SqliteLoginAttemptRepo
    password_links: SqlitePasswordLinkRepo

    def rows(self, sql: str, *params: Any) -> list[tuple]:
        """What a SELECT finds in the file, read as any other program would."""
        with sqlite3.connect(self.path) as raw:
            return raw.execute(sql, params).fetchall()

    def file_bytes(self) -> bytes:
        """Everything stored, as bytes: the database file and its write-ahead log."""
        return b"".join(path.read_bytes() for path in (self.path, self.path.with_name(self.path.name + "-wal"))
                        if path.exists())


def store_in(directory: Path, *, sealer: SecretSealer | None = None) -> Store:
    """A new, empty store in `directory`; channel keys sealed by `sealer` (default: a key of its own)."""
    path = Path(directory) / "tokenway.db"
    shutil.copyfile(_template_file(), path)
    db = Database(path)
    sealer = sealer or SecretSealer(LocalKeyWrapper(os.urandom(KEY_BYTES)))
    return Store(path, db, SqliteAccountRepo(db), SqliteKeyRepo(db), SqliteWalletRepo(db),
                 SqliteCatalogRepo(db, sealer=sealer), SqliteSessionRepo(db), SqliteLoginAttemptRepo(db),
                 SqlitePasswordLinkRepo(db))


def _template_file() -> Path:
    global _template
    with _lock:
        if _template is None:
            directory = Path(tempfile.mkdtemp(prefix="tokenway-schema-"))
            atexit.register(shutil.rmtree, directory, ignore_errors=True)
            Database(directory / "template.db")  # closed again: its log checkpointed into the file
            _template = directory / "template.db"
        return _template
