"""Accounts on SQLite: table `accounts`, whose rows also carry the wallet's counters.

Email uniqueness is the table's own: `email_key` (the email in lower case) is UNIQUE,
so of two sign-ups with one email the second insert finds the first, whichever
process wrote it. Every update here sets only the columns it owns, never the
wallet's (`available`, `held`, `shortfall`, `frozen`, `debt`, `disputes`).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from chalicelib.core.domain import Account
from chalicelib.core.errors import Conflict, EmailTaken, NotFound
from chalicelib.storage.ports import AccountRepo, matches_search
from chalicelib.storage.sqlite.database import Database, first, json_list, json_tuple

_COLUMNS = "account_id, email, created_at, status, role, password_hash, session_epoch, groups, default_plan"


class SqliteAccountRepo(AccountRepo):
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, account: Account) -> None:
        with self._db.write() as tx:
            inserted = tx.execute(
                f"INSERT INTO accounts ({_COLUMNS}, email_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                # Invariant: one account per email, and an account is created once with an empty
                # wallet. A refused insert writes nothing.
                "ON CONFLICT DO NOTHING",
                (account.account_id, account.email, account.created_at, account.status, account.role,
                 account.password_hash, account.session_epoch, json_list(account.groups), account.default_plan,
                 account.email.lower()),
            ).rowcount
            if not inserted:
                if first(tx.execute("SELECT 1 FROM accounts WHERE email_key = ?", (account.email.lower(),))):
                    raise EmailTaken(f"Another account has the email {account.email}.", param="email")
                raise Conflict(f"account {account.account_id} already exists")

    def get(self, account_id: str) -> Account | None:
        with self._db.read() as tx:
            row = first(tx.execute(f"SELECT {_COLUMNS} FROM accounts WHERE account_id = ?", (account_id,)))
        return _account(row) if row else None

    def get_by_email(self, email: str) -> Account | None:
        with self._db.read() as tx:
            row = first(tx.execute(f"SELECT {_COLUMNS} FROM accounts WHERE email_key = ?", (email.lower(),)))
        return _account(row) if row else None

    def list(self, search: str | None = None) -> list[Account]:
        # An operator's listing: every row, filtered here with the one search rule all backends share.
        with self._db.read() as tx:
            rows = tx.execute(f"SELECT {_COLUMNS} FROM accounts ORDER BY created_at, account_id").fetchall()
        return [account for account in map(_account, rows) if matches_search(account, search)]

    def set_password(self, account_id: str, password_hash: str) -> Account:
        return self._update(account_id, "password_hash = ?, session_epoch = session_epoch + 1", (password_hash,))

    def set_status(self, account_id: str, status: str) -> Account:
        return self._update(account_id, "status = ?", (status,))

    def set_groups(self, account_id: str, groups: tuple[str, ...]) -> Account:
        return self._update(account_id, "groups = ?", (json_list(groups),))

    def set_default_plan(self, account_id: str, default_plan: bool) -> Account:
        return self._update(account_id, "default_plan = ?", (default_plan,))

    def set_role(self, account_id: str, role: str) -> Account:
        return self._update(account_id, "role = ?", (role,))

    def _update(self, account_id: str, assignments: str, values: tuple[Any, ...]) -> Account:
        with self._db.write() as tx:
            row = first(tx.execute(f"UPDATE accounts SET {assignments} WHERE account_id = ? RETURNING {_COLUMNS}",
                                   (*values, account_id)))
        if row is None:
            raise NotFound(f"No account `{account_id}`.", param="account_id")
        return _account(row)


def _account(row: sqlite3.Row) -> Account:
    return Account(account_id=row["account_id"], email=row["email"], created_at=row["created_at"],
                   status=row["status"], role=row["role"], password_hash=row["password_hash"],
                   session_epoch=row["session_epoch"], groups=json_tuple(row["groups"]),
                   default_plan=bool(row["default_plan"]))
