"""API keys on SQLite: table `keys` (by `key_id`, with `key_hash` UNIQUE for the relay's one
lookup), and `key_forwards`, the hashes regenerated keys had.

A regeneration changes the key's row in place and records its old hash in
`key_forwards`: that hash then authenticates nothing and can place no hold (both
look only at `keys`), while a request held under it settles and releases on the
key's row, found through the forward. Since the move and every hold and
settlement are transactions on one file, counters stay exact without the
revision checks DynamoDB needs.
"""

from __future__ import annotations

import sqlite3

from chalicelib.core.domain import ApiKey
from chalicelib.core.errors import Conflict, NotFound
from chalicelib.storage.ports import KeyRepo
from chalicelib.storage.sqlite.database import Database, first, json_list, json_tuple

COLUMNS = ("key_id, key_hash, account_id, name, created_at, hint, plan, status, expires_at, quota, models, cidrs, "
           "spent, reserved, quota_left, requests, prompt_tokens, completion_tokens, last_used_at, rpm_limit, "
           "tpm_limit, concurrency_limit")

# The key a hash names now: its own row, or the row of the key it was regenerated into.
CURRENT_KEY_ID = ("coalesce((SELECT key_id FROM keys WHERE key_hash = :key_hash), "
                  "(SELECT key_id FROM key_forwards WHERE old_hash = :key_hash))")


class SqliteKeyRepo(KeyRepo):
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, key: ApiKey) -> None:
        with self._db.write() as tx:
            # Invariant: a hash names one key, also once the key has moved on from it.
            if first(tx.execute("SELECT 1 FROM key_forwards WHERE old_hash = ?", (key.key_hash,))):
                raise Conflict("key already exists")
            inserted = tx.execute(
                f"INSERT INTO keys ({COLUMNS}) VALUES ({', '.join('?' * 22)}) ON CONFLICT DO NOTHING",
                (key.key_id, key.key_hash, key.account_id, key.name, key.created_at, key.hint, key.group, key.status,
                 key.expires_at, key.quota, json_list(key.models), json_list(key.cidrs), key.spent, key.reserved,
                 key.quota_left, key.requests, key.prompt_tokens, key.completion_tokens, key.last_used_at,
                 key.rpm_limit, key.tpm_limit, key.concurrency_limit),
            ).rowcount
            if not inserted:
                raise Conflict("key already exists")

    def get_by_hash(self, key_hash: str, *, consistent: bool = False) -> ApiKey | None:
        # Every read is of the latest commit: `consistent` asks for nothing more here.
        with self._db.read() as tx:
            row = first(tx.execute(f"SELECT {COLUMNS} FROM keys WHERE key_hash = ?", (key_hash,)))
        return key_from_row(row) if row else None

    def get_by_id(self, key_id: str) -> ApiKey | None:
        with self._db.read() as tx:
            row = first(tx.execute(f"SELECT {COLUMNS} FROM keys WHERE key_id = ?", (key_id,)))
        return key_from_row(row) if row else None

    def list_for_account(self, account_id: str) -> list[ApiKey]:
        with self._db.read() as tx:
            rows = tx.execute(f"SELECT {COLUMNS} FROM keys WHERE account_id = ? ORDER BY created_at, key_id",
                              (account_id,)).fetchall()
        return [key_from_row(row) for row in rows]

    def save_settings(self, key: ApiKey) -> ApiKey:
        with self._db.write() as tx:
            current = _current(tx, key)
            quota_left = current.quota_left
            if key.quota is None:
                quota_left = None  # kept while, and only while, the key has a quota
            elif key.quota != current.quota:
                # Restart the quota from what the key has spent and holds now: read and
                # written under the write lock, so no request moves either in between.
                quota_left = key.quota - current.spent - current.reserved
            row = first(tx.execute(
                "UPDATE keys SET name = ?, plan = ?, status = ?, expires_at = ?, quota = ?, models = ?, cidrs = ?, "
                "quota_left = ?, rpm_limit = ?, tpm_limit = ?, concurrency_limit = ? "
                f"WHERE key_id = ? RETURNING {COLUMNS}",
                (key.name, key.group, key.status, key.expires_at, key.quota, json_list(key.models),
                 json_list(key.cidrs), quota_left, key.rpm_limit, key.tpm_limit, key.concurrency_limit,
                 current.key_id),
            ))
        return key_from_row(row)

    def replace_hash(self, key: ApiKey, key_hash: str, hint: str) -> ApiKey:
        with self._db.write() as tx:
            current = _current(tx, key)
            # Invariant: a hash names one key, now or before.
            if first(tx.execute("SELECT 1 FROM keys WHERE key_hash = :h UNION ALL "
                                "SELECT 1 FROM key_forwards WHERE old_hash = :h", {"h": key_hash})):
                raise Conflict("key already exists")
            # Invariant: a key's counters are exact across a regeneration: the row moves to the new
            # hash as it is, in the transaction that makes the old hash forward to it.
            row = first(tx.execute(f"UPDATE keys SET key_hash = ?, hint = ? WHERE key_id = ? RETURNING {COLUMNS}",
                                   (key_hash, hint, current.key_id)))
            tx.execute("INSERT INTO key_forwards (old_hash, key_id) VALUES (?, ?)", (current.key_hash, current.key_id))
        return key_from_row(row)


def _current(tx: sqlite3.Connection, key: ApiKey) -> ApiKey:
    """The key's row as it is now, found by the hash `key` was read under (which may forward)."""
    row = first(tx.execute(f"SELECT {COLUMNS} FROM keys WHERE key_id = {CURRENT_KEY_ID}", {"key_hash": key.key_hash}))
    if row is None:
        raise NotFound(f"No key `{key.key_id}`.", param="key_id")
    return key_from_row(row)


def key_from_row(row: sqlite3.Row) -> ApiKey:
    return ApiKey(
        key_id=row["key_id"], key_hash=row["key_hash"], account_id=row["account_id"], name=row["name"],
        created_at=row["created_at"], hint=row["hint"], group=row["plan"], status=row["status"],
        expires_at=row["expires_at"], quota=row["quota"], models=json_tuple(row["models"]),
        cidrs=json_tuple(row["cidrs"]), spent=row["spent"], reserved=row["reserved"], quota_left=row["quota_left"],
        requests=row["requests"], prompt_tokens=row["prompt_tokens"], completion_tokens=row["completion_tokens"],
        last_used_at=row["last_used_at"], rpm_limit=row["rpm_limit"], tpm_limit=row["tpm_limit"],
        concurrency_limit=row["concurrency_limit"],
    )
