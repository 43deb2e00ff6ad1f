"""Writes that move a wallet's money on SQLite, shared by the wallet, top-up orders and redemption
codes: each runs inside the caller's `db.write()` transaction, so it commits (or rolls back)
with whatever else the caller writes there.

An account's counters: `available` (spendable), `held` (by requests in flight), `frozen` (credit
of disputed payments, set aside), `debt` (what debits could not take), `disputes` (open ones).
The ledger sums to available + held + frozen - debt after every commit.

A credit (no read; one UPDATE):

    credit_account(amount)   pay = min(amount, debt)                    (the account exists)
                             debt -= pay, available += amount - pay

A move's timeline (the account is read under the write lock, so the counters cannot change
before the one UPDATE that writes them):

    apply_move(move)   read available, frozen, debt, disputes      (NotFound: no account)
        │
        ├── unfreeze u      frozen -= u, then a credit of u            (Conflict: frozen < u)
        │                   no ledger entry: the money stays in the wallet
        ├── each entry      ledger entry written (full amount)         (MoveRepeated: its id exists,
        │                                                               the move was applied before)
        │                   credit: pays debt first, the rest to available
        │                   debit: takes from available, what it lacks becomes debt
        ├── freeze f        available -= f, frozen += f                (Conflict: available < f)
        ├── disputes d      disputes += d, never below zero
        └── account UPDATE  the counters computed, where they still are as read
"""

from __future__ import annotations

import sqlite3
from typing import Any

from chalicelib.core.domain import Balance, Credited, LedgerEntry
from chalicelib.core.errors import Conflict, NotFound, StorageError
from chalicelib.core.payments import WalletMove
from chalicelib.storage.sqlite.database import first

ENTRY_COLUMNS = ("account_id, entry_id, kind, amount, created_at, request_id, key_id, model, shortfall, note, "
                 "prompt_tokens, completion_tokens, reference")


class Refused(Exception):
    """Ends a transaction that must write nothing, carrying what to answer."""

    def __init__(self, answer: Any) -> None:
        super().__init__(answer)
        self.answer = answer


class MoveRepeated(Exception):
    """A move's entry is in the ledger already: the move was applied before (roll back)."""

    def __init__(self, account_id: str, entry_id: str) -> None:
        super().__init__(entry_id)
        self.account_id = account_id
        self.entry_id = entry_id


def balance(tx: sqlite3.Connection, account_id: str) -> Balance:
    row = first(tx.execute("SELECT available, held, status, shortfall, frozen, debt, disputes FROM accounts "
                           "WHERE account_id = ?", (account_id,)))
    if row is None:
        return Balance(0, 0, "missing", 0)
    return Balance(row["available"], row["held"], row["status"], row["shortfall"], frozen=row["frozen"],
                   debt=row["debt"], disputes=row["disputes"])


def require_account(tx: sqlite3.Connection, account_id: str) -> None:
    if not first(tx.execute("SELECT 1 FROM accounts WHERE account_id = ?", (account_id,))):
        raise NotFound(f"No account `{account_id}`.", param="account_id")


def stored_entry(tx: sqlite3.Connection, account_id: str, entry_id: str) -> LedgerEntry | None:
    row = first(tx.execute(f"SELECT {ENTRY_COLUMNS} FROM ledger WHERE account_id = ? AND entry_id = ?",
                           (account_id, entry_id)))
    return LedgerEntry(**dict(row)) if row else None


def credited_before(tx: sqlite3.Connection, account_id: str, entry_id: str) -> Credited:
    entry = stored_entry(tx, account_id, entry_id)
    if entry is None:
        raise StorageError(f"ledger entry {entry_id} is missing")
    return Credited(entry, balance(tx, account_id), applied=False)


def insert_entry(tx: sqlite3.Connection, entry: LedgerEntry) -> bool:
    """Write the entry if its id is new in its account's ledger; whether it was."""
    return bool(tx.execute(
        f"INSERT INTO ledger ({ENTRY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (entry.account_id, entry.entry_id, entry.kind, entry.amount, entry.created_at, entry.request_id, entry.key_id,
         entry.model, entry.shortfall, entry.note, entry.prompt_tokens, entry.completion_tokens, entry.reference),
    ).rowcount)


def credit_account(tx: sqlite3.Connection, account_id: str, amount: int) -> bool:
    """Add `amount` (>= 0), paying any debt first; whether the account exists. Every right-hand
    side reads the row as it was, so `debt` below is the debt before this credit."""
    # Invariant: the ledger sums to available + held + frozen - debt: a credit's full amount
    # is in the ledger, and here it lowers the debt by what it pays and raises available by the rest.
    return bool(tx.execute(
        "UPDATE accounts SET debt = debt - MIN(debt, :amount), available = available + :amount - MIN(debt, :amount) "
        "WHERE account_id = :account_id", {"amount": amount, "account_id": account_id}).rowcount)


def apply_move(tx: sqlite3.Connection, move: WalletMove) -> None:
    """Apply `move` (see WalletMove) in the caller's write transaction. NotFound if no account;
    Conflict if `unfreeze` or `freeze` is more than the wallet has; MoveRepeated if one of its
    entries is in the ledger already. On any of these the caller rolls back."""
    row = first(tx.execute("SELECT available, frozen, debt, disputes FROM accounts WHERE account_id = ?",
                           (move.account_id,)))
    if row is None:
        raise NotFound(f"No account `{move.account_id}`.", param="account_id")
    seen = dict(row)
    available, frozen, debt, disputes = seen["available"], seen["frozen"], seen["debt"], seen["disputes"]
    if move.unfreeze:
        # Invariant: frozen never goes below zero.
        if frozen < move.unfreeze:
            raise Conflict(f"Only {frozen} units are frozen on account `{move.account_id}`; "
                           f"{move.unfreeze} cannot be unfrozen.")
        frozen -= move.unfreeze
        available, debt = _credited(available, debt, move.unfreeze)
    for entry in move.entries:
        if entry.account_id != move.account_id:
            raise ValueError(f"entry {entry.entry_id} is for another account than the move")
        # Invariant: an entry is written once; its id names the move, so a move applies once.
        if not insert_entry(tx, entry):
            raise MoveRepeated(entry.account_id, entry.entry_id)
        if entry.amount >= 0:
            available, debt = _credited(available, debt, entry.amount)
        else:
            taken = min(available, -entry.amount)
            available, debt = available - taken, debt - entry.amount - taken
    if move.freeze:
        # Invariant: available never goes below zero; only what is available can be set aside.
        if available < move.freeze:
            raise Conflict(f"Only {available} units are available on account `{move.account_id}`; "
                           f"{move.freeze} cannot be frozen.")
        available, frozen = available - move.freeze, frozen + move.freeze
    disputes = max(0, disputes + move.disputes)
    # The counters were read under the write lock, so they are still as read; the condition
    # restates it, and the table's CHECKs keep each at zero or more.
    written = tx.execute(
        "UPDATE accounts SET available = :available, frozen = :frozen, debt = :debt, disputes = :disputes "
        "WHERE account_id = :account_id AND available = :seen_available AND frozen = :seen_frozen "
        "AND debt = :seen_debt AND disputes = :seen_disputes",
        {"available": available, "frozen": frozen, "debt": debt, "disputes": disputes,
         "account_id": move.account_id, **{f"seen_{name}": value for name, value in seen.items()}},
    ).rowcount
    if not written:
        raise StorageError(f"account {move.account_id} changed inside its write transaction")


def _credited(available: int, debt: int, amount: int) -> tuple[int, int]:
    """available and debt after a credit of `amount`: the debt is paid first."""
    pay = min(amount, debt)
    return available + amount - pay, debt - pay
