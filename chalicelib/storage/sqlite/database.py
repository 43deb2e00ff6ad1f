"""The one-machine database: one SQLite file in WAL mode, shared by every thread and worker process.

    Database(path)           opens the file, switches it to WAL, creates or checks the schema
                             (a file at version 1 is moved on to version 2 in one transaction)
      ├── read()             a consistent snapshot for a few SELECTs (BEGIN … ROLLBACK)
      └── write()            BEGIN IMMEDIATE … COMMIT: the file's write lock is taken first,
                             so conditions read inside hold until the commit, in whichever
                             thread or process the other writers run

Each thread has its own connection (made on first use, and again after a fork).
Writers are ordered by the file's lock alone, whether they are threads of one
process or worker processes: one waits for another up to `busy_timeout_ms`, then
fails as "storage is busy" (503). No lock of the process's own stands in front of
it: measured, one made the slowest transactions slower and none faster
(bench/sqlite_wallet.py). sqlite3's errors are mapped to StorageError here and only here.

Durability: `synchronous=NORMAL`, the usual setting in WAL mode. A committed
transaction survives a crash of the process; a power loss may undo the most recent
transactions (those not yet synced to disk), but never half of one, and never corrupts the file.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from chalicelib.core.errors import StorageError
from chalicelib.storage.sqlite.schema_v2 import LIMIT_TABLES, MIGRATE_1_TO_2, PAYMENT_TABLES, USAGE_TABLES

# Raised whenever the tables below change (kept in the file as PRAGMA user_version); a file
# made by a newer version of the gateway is refused rather than misread.
SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 10_000
# Connections a forked process inherited: kept, so that they are never closed there.
_INHERITED: list[sqlite3.Connection] = []

# The tables of version 1, with the wallet's version-2 counters (the payment tables are in
# schema_v2.py). Money is integer units; lists are JSON text. The CHECKs restate the invariants
# the repositories' conditions keep, as a last guard: a write that would break one fails.
_SCHEMA = """
CREATE TABLE accounts (
    account_id    TEXT PRIMARY KEY,
    email         TEXT NOT NULL,
    email_key     TEXT NOT NULL UNIQUE,          -- the email in lower case: one account per email
    created_at    INTEGER NOT NULL,
    status        TEXT NOT NULL,
    role          TEXT NOT NULL,
    password_hash TEXT,
    session_epoch INTEGER NOT NULL,
    groups        TEXT NOT NULL,                 -- JSON array of plan names
    default_plan  INTEGER NOT NULL,
    available     INTEGER NOT NULL DEFAULT 0 CHECK (available >= 0),
    held          INTEGER NOT NULL DEFAULT 0 CHECK (held >= 0),
    shortfall     INTEGER NOT NULL DEFAULT 0,
    frozen        INTEGER NOT NULL DEFAULT 0 CHECK (frozen >= 0),
    debt          INTEGER NOT NULL DEFAULT 0 CHECK (debt >= 0),
    disputes      INTEGER NOT NULL DEFAULT 0 CHECK (disputes >= 0)
);
CREATE INDEX accounts_by_age ON accounts (created_at, account_id);

CREATE TABLE keys (
    key_id            TEXT PRIMARY KEY,
    key_hash          TEXT NOT NULL UNIQUE,
    account_id        TEXT NOT NULL,
    name              TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    hint              TEXT NOT NULL,
    plan              TEXT,
    status            TEXT NOT NULL,
    expires_at        INTEGER,
    quota             INTEGER,
    models            TEXT NOT NULL,             -- JSON array
    cidrs             TEXT NOT NULL,             -- JSON array
    spent             INTEGER NOT NULL DEFAULT 0,
    reserved          INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    quota_left        INTEGER,
    requests          INTEGER NOT NULL DEFAULT 0,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    last_used_at      INTEGER,
    rpm_limit         INTEGER,                   -- the key's own limits (NULL: its plan's)
    tpm_limit         INTEGER,
    concurrency_limit INTEGER
);
CREATE INDEX keys_by_account ON keys (account_id, created_at);

-- The hashes a regenerated key had: no secret authenticates or holds with them, and a
-- request held under one settles on the key.
CREATE TABLE key_forwards (
    old_hash TEXT PRIMARY KEY,
    key_id   TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE holds (
    request_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    key_hash   TEXT NOT NULL,
    amount     INTEGER NOT NULL CHECK (amount >= 0),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    key_quota  INTEGER NOT NULL,
    plan       TEXT NOT NULL
);
CREATE INDEX holds_by_expiry ON holds (expires_at);

CREATE TABLE ledger (
    account_id        TEXT NOT NULL,
    entry_id          TEXT NOT NULL,             -- 13-digit epoch ms first: sorts in time order
    kind              TEXT NOT NULL,
    amount            INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    request_id        TEXT,
    key_id            TEXT,
    model             TEXT,
    shortfall         INTEGER NOT NULL DEFAULT 0,
    note              TEXT,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    reference         TEXT,
    PRIMARY KEY (account_id, entry_id)           -- an entry is written once
) WITHOUT ROWID;

-- A credit's claim: unique across accounts, naming the entry that took it.
CREATE TABLE credit_claims (
    claim      TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    entry_id   TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE channels (
    name               TEXT PRIMARY KEY,
    base_url           TEXT NOT NULL,
    kind               TEXT NOT NULL,
    api_key_sealed     BLOB NOT NULL,            -- AES-256-GCM ciphertext (storage/secrets)
    api_key_data_key   BLOB NOT NULL,            -- its data key, wrapped by the keeper
    api_key_wrapped_by TEXT NOT NULL,
    extra_headers      TEXT NOT NULL DEFAULT '[]', -- JSON array of [name, value]
    state              TEXT NOT NULL DEFAULT 'auto' -- the operator's forced breaker state
);

CREATE TABLE models (
    name                TEXT PRIMARY KEY,
    kind                TEXT NOT NULL,
    input_per_1m        INTEGER NOT NULL,
    output_per_1m       INTEGER NOT NULL,
    cached_input_per_1m INTEGER,
    cache_write_per_1m  INTEGER,                 -- NULL: cache writes cost the input price
    per_image           INTEGER NOT NULL,
    image_prices        TEXT NOT NULL,           -- JSON array of {quality, size, price}
    routes              TEXT NOT NULL,           -- JSON array of {channel, upstream_model}
    context_window      INTEGER,
    max_output_tokens   INTEGER,
    use_case            TEXT NOT NULL,
    timeout_s           REAL,
    owned_by            TEXT NOT NULL,
    cap_field           TEXT NOT NULL,
    pass_through        TEXT NOT NULL,           -- JSON array
    fallbacks           TEXT NOT NULL DEFAULT '[]' -- JSON array of model names
);

CREATE TABLE groups (
    name           TEXT PRIMARY KEY,
    multiplier_ppm INTEGER NOT NULL,
    models         TEXT NOT NULL,                -- JSON array
    description    TEXT NOT NULL,
    rpm            INTEGER,                      -- each key's limits (NULL: unlimited)
    tpm            INTEGER,
    concurrency    INTEGER,
    model_limits   TEXT NOT NULL DEFAULT '{}'    -- JSON {model: {rpm, tpm, concurrency}}
);

CREATE TABLE sessions (
    session_hash  TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL,
    session_epoch INTEGER NOT NULL,
    csrf_hash     TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

CREATE TABLE login_attempts (
    counter_id   TEXT PRIMARY KEY,
    attempts     INTEGER NOT NULL DEFAULT 0,
    expires_at_s INTEGER NOT NULL,
    not_before_s INTEGER                         -- a lock's: taken until then
) WITHOUT ROWID;
CREATE INDEX login_attempts_by_expiry ON login_attempts (expires_at_s);

CREATE TABLE password_links (
    account_id TEXT PRIMARY KEY,
    link_hash  TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX password_links_by_expiry ON password_links (expires_at);
"""



class Database:
    """One SQLite file: a connection per thread, transactions as context managers."""

    def __init__(self, path: Path | str, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.path = Path(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._open_file()
        except (sqlite3.Error, OSError) as exc:
            # At start, so the operator reads the cause (a read-only or full directory, a locked file).
            raise StorageError(f"cannot open the database {self.path}: {exc}") from exc

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding the file's write lock from its first statement: committed
        if the block ends normally, rolled back if it raises (a sqlite3 error as StorageError)."""
        connection = self._connection()
        with _mapped("write to the database"):
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
                connection.execute("COMMIT")
            except BaseException:
                connection.rollback()  # a no-op if SQLite rolled back already
                raise

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for the SELECTs in the block."""
        connection = self._connection()
        with _mapped("read the database"):
            connection.execute("BEGIN")
            try:
                yield connection
            finally:
                connection.rollback()  # nothing was written: ending the snapshot is enough

    def close(self) -> None:
        """Close this thread's connection (others close with their threads)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            self._local.connection = None
            connection.close()

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None or self._local.pid != os.getpid():
            if connection is not None:
                # Opened before a fork: the child gets its own, and never closes (nor uses) the
                # parent's, whose file locks it does not hold.
                _INHERITED.append(connection)
            with _mapped("open the database"):
                connection = self._connect()
            self._local.connection, self._local.pid = connection, os.getpid()
        return connection

    def _connect(self) -> sqlite3.Connection:
        # Autocommit (isolation_level None): transactions are begun explicitly, as IMMEDIATE for writes.
        # `timeout` is SQLite's busy timeout: how long a writer waits for the lock.
        connection = sqlite3.connect(self.path, timeout=self._busy_timeout_ms / 1000, isolation_level=None)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA synchronous = NORMAL")
        return connection

    def _open_file(self) -> None:
        """Switch the file to WAL and create or check its schema, trying again while other processes
        starting at the same moment do the same: on a new file, before it is in WAL mode, SQLite
        refuses one of two connections that both want its lock at once (to avoid a deadlock)
        without waiting, so the busy timeout does not cover it."""
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        while True:
            try:
                return self._create_schema()
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(random.uniform(0.005, 0.05))

    def _create_schema(self) -> None:
        connection = self._connect()
        try:
            # WAL lets readers run beside the one writer; the mode is stored in the file.
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StorageError(f"the database {self.path} cannot use WAL mode (it is in `{mode}` mode)")
            connection.execute("BEGIN IMMEDIATE")  # processes starting together create the tables once
            try:
                version = connection.execute("PRAGMA user_version").fetchone()[0]
                if version == 0:
                    for statement in (_SCHEMA + PAYMENT_TABLES + USAGE_TABLES + LIMIT_TABLES).split(";"):
                        if statement.strip():
                            connection.execute(statement)
                    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                elif version == 1:
                    # A data directory of an earlier gateway: moved on in the same transaction, all or nothing.
                    for statement in MIGRATE_1_TO_2:
                        connection.execute(statement)
                    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                elif version != SCHEMA_VERSION:
                    raise StorageError(f"the database {self.path} has schema version {version}; this gateway "
                                       f"reads version {SCHEMA_VERSION}")
                connection.execute("COMMIT")
            except BaseException:
                connection.rollback()
                raise
        except BaseException:
            connection.close()
            raise
        # Kept as this thread's connection: the schema it has read need not be read again.
        self._local.connection, self._local.pid = connection, os.getpid()


@contextmanager
def _mapped(action: str) -> Iterator[None]:
    """sqlite3's failures as StorageError, keeping the cause."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if _busy(exc):
            raise StorageError(f"storage is busy ({action})") from exc
        raise StorageError(f"storage failed to {action}") from exc
    except (sqlite3.Error, OSError) as exc:
        raise StorageError(f"storage failed to {action}") from exc


def _busy(exc: sqlite3.OperationalError) -> bool:
    """Whether another connection held the lock this one needed (SQLITE_BUSY or SQLITE_LOCKED)."""
    return "locked" in str(exc) or "busy" in str(exc)


def json_list(values: tuple[str, ...] | list[str]) -> str:
    """A list as the JSON text a column keeps."""
    return json.dumps(list(values), separators=(",", ":"))


def json_tuple(text: str | None) -> tuple:
    """A JSON array column as a tuple."""
    return tuple(json.loads(text)) if text else ()


def first(cursor: sqlite3.Cursor) -> sqlite3.Row | None:
    """The first row of a statement, run to its end (a statement left half-read would keep
    the transaction from committing)."""
    rows = cursor.fetchall()
    return rows[0] if rows else None
