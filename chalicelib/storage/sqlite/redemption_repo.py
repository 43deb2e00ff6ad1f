"""Redemption codes on SQLite: `redemption_codes`, one row per code by the hash of its secret
(never the secret), `code_id` its public name (unique, indexed).

A code's timeline:

    create()   rows inserted, all or none                        (every hash and id is new: else Conflict)
       │
       ├── disable()   status active → disabled                  (still active: a used code stays used)
       └── redeem()    one transaction:
                       code: status active → used, redeemed_by, redeemed_at
                                                                 (still active: a code is used once)
                       ledger entry +value (its id is new)
                       account: debt -= pay, available += value - pay, pay = min(value, debt)
                                                                 (the account exists: else NotFound,
                                                                  and the code stays active)

Refusals are read under the write lock, in this order: no such hash (UNKNOWN), disabled, used,
expired at `now_ms` (expires_at <= now); nothing is written for any of them.
"""

from __future__ import annotations

import dataclasses
import sqlite3

from chalicelib.core.domain import LedgerEntry
from chalicelib.core.errors import Conflict, NotFound
from chalicelib.core.payments import Redeemed, RedeemResult, RedemptionCode
from chalicelib.storage.ports import RedemptionRepo
from chalicelib.storage.sqlite.database import Database, first
from chalicelib.storage.sqlite.wallet_moves import balance, credit_account, insert_entry

_FIELDS = [field.name for field in dataclasses.fields(RedemptionCode)]
_COLUMNS = ", ".join(_FIELDS)
_REFUSED = {"disabled": RedeemResult.DISABLED, "used": RedeemResult.USED}


class SqliteRedemptionRepo(RedemptionRepo):
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, codes: list[RedemptionCode]) -> None:
        with self._db.write() as tx:
            for code in codes:
                # Invariant: a hash (and a public id) names one code; one taken rolls back the batch.
                if not tx.execute(f"INSERT INTO redemption_codes ({_COLUMNS}) "
                                  f"VALUES ({', '.join('?' * len(_FIELDS))}) ON CONFLICT DO NOTHING",
                                  [getattr(code, name) for name in _FIELDS]).rowcount:
                    raise Conflict(f"Code `{code.code_id}` (or its secret) exists; no code was stored.")

    def list(self, *, batch: str | None = None) -> list[RedemptionCode]:
        condition, params = ("WHERE batch = ? ", (batch,)) if batch is not None else ("", ())
        with self._db.read() as tx:
            rows = tx.execute(f"SELECT {_COLUMNS} FROM redemption_codes {condition}"
                              "ORDER BY created_at DESC, code_id DESC", params).fetchall()
        return [RedemptionCode(**dict(row)) for row in rows]

    def disable(self, code_id: str) -> RedemptionCode | None:
        with self._db.write() as tx:
            # Invariant: a used code stays used (its credit stands).
            tx.execute("UPDATE redemption_codes SET status = 'disabled' WHERE code_id = ? AND status = 'active'",
                       (code_id,))
            row = first(tx.execute(f"SELECT {_COLUMNS} FROM redemption_codes WHERE code_id = ?", (code_id,)))
        return RedemptionCode(**dict(row)) if row else None

    def redeem(self, code_hash: str, entry: LedgerEntry, now_ms: int) -> Redeemed:
        with self._db.write() as tx:
            code = _code(tx, code_hash)
            if code is None:
                return Redeemed(RedeemResult.UNKNOWN)
            if code.status in _REFUSED:
                return Redeemed(_REFUSED[code.status], code)
            if code.expires_at is not None and code.expires_at <= now_ms:
                return Redeemed(RedeemResult.EXPIRED, code)
            # Invariant: a code is used once (read under the write lock, and restated here).
            tx.execute("UPDATE redemption_codes SET status = 'used', redeemed_by = ?, redeemed_at = ? "
                       "WHERE code_hash = ? AND status = 'active'", (entry.account_id, now_ms, code_hash))
            # Invariant: an entry is written once; an id seen before would credit the wallet twice.
            if not insert_entry(tx, dataclasses.replace(entry, amount=code.value_units, reference=code.code_id)):
                raise Conflict(f"Ledger entry `{entry.entry_id}` exists; the code was not used.")
            # Money moves only on an existing account: without one, the code stays active.
            if not credit_account(tx, entry.account_id, code.value_units):
                raise NotFound(f"No account `{entry.account_id}`.", param="account_id")
            return Redeemed(RedeemResult.REDEEMED, _code(tx, code_hash), balance(tx, entry.account_id))


def _code(tx: sqlite3.Connection, code_hash: str) -> RedemptionCode | None:
    row = first(tx.execute(f"SELECT {_COLUMNS} FROM redemption_codes WHERE code_hash = ?", (code_hash,)))
    return RedemptionCode(**dict(row)) if row else None
