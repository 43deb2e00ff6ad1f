"""The wallet on SQLite: balances, holds, the ledger and key counters, each move one transaction.

Where things live:
- `accounts` row: `available`, `held`, `shortfall`, `frozen`, `debt`, `disputes` (as on
  DynamoDB), beside the account's `status`, `groups` and `default_plan`, which the hold checks;
- `holds`: one row per open hold; `ledger`: one row per credit or charge, unique per
  (account, entry id); `credit_claims`: one row per credit's claim, unique across accounts;
- `keys` row: `reserved`, `spent`, `quota_left` (while a quota is set), request and token
  counters, `last_used_at`. A hold names the hash it was placed under; closing it counts on
  the key that hash names now (its own row, or the row it was regenerated into).
- `usage_rollups`: one row per account × key × model × channel × UTC quarter-hour, added to by
  the transaction that closes each request (see usage_rollup_repo.py).

Every move is one `BEGIN IMMEDIATE … COMMIT`: the write lock of the file is taken
before the first read, so what a transaction reads cannot change before it commits,
whichever thread or worker process writes next. Conditions are WHERE clauses of the
writes (a refused write changes no row), and the tables' CHECKs guard the same
invariants once more.

A hold's timeline:

    hold()     key: reserved += amount, quota_left -= amount       (active, unexpired, quota_left >= amount)
               account: available -= amount, held += amount        (active, on the key's plan, available >= amount,
                                                                    no debt, no dispute open)
               holds row inserted                                  (its request id is new)
       │
       ├── settle(cost)   holds row deleted (if still open: `held` = its amount, else 0)
       │                  charged = min(cost, held + available, held + quota_left): beyond the hold,
       │                  only what both the wallet and the key's quota still have (read under the lock)
       │                  ledger entry -charged with its shortfall   (its id is new: else settled before,
       │                                                              and only the hold is given back)
       │                  account: held -= held, available += held - charged, shortfall += cost - charged
       │                  key: reserved -= held, spent += charged, quota_left += held - charged, counts
       │                  usage_rollups row += the request, its cost = charged   (with the key's counts:
       │                                                              the hold closed, or the entry new)
       └── release()      holds row deleted (else False); account: held -= amount, available += amount;
                          key: reserved -= amount, quota_left += amount;
                          usage_rollups row += the request as an error (when usage is given: not the sweeper's)

A usual hold is three statements and a usual settlement four (no reads when the
cost is within the hold), each in one transaction.

A credit's timeline (once per claim):

    credit()   claim inserted, naming the entry                    (the claim is new: else the entry
                                                                    that took it is returned)
               ledger entry +amount                                (its id is new)
               account: debt -= pay, available += amount - pay     (the account exists;
                        pay = min(amount, debt)                     pay: the debt is paid first)

A move's timeline (once per claim, as a credit; see wallet_moves.py for the steps):

    move()     claim inserted, naming the first entry             (the claim is new)
               apply_move: unfreeze, entries, freeze, disputes     (NotFound, Conflict: nothing written;
                                                                    an entry id seen before: the move
                                                                    was applied, its entry returned)

The ledger read as pages, newest first, in one snapshot:

    ledger_page(cursor None)   anchor = available + held + frozen - debt (what the ledger sums to),
                               the newest `limit` entries; each line's balance after = the anchor
                               less the entries after it
    ledger_page(cursor)        the cursor names the last line's entry and balance after it; the
                               next page starts below that entry, at that balance less its amount
"""

from __future__ import annotations

import dataclasses
import sqlite3

from chalicelib.core.domain import (
    DEFAULT_GROUP,
    Balance,
    Credited,
    Hold,
    HoldResult,
    LedgerEntry,
    Settlement,
    UsageEvent,
)
from chalicelib.core.errors import InvalidRequest, NotFound, StorageError
from chalicelib.core.payments import LedgerLine, LedgerPage, WalletMove
from chalicelib.core.usage import UsageDelta
from chalicelib.storage.cursors import decode_cursor, encode_cursor, page_limit
from chalicelib.storage.ports import WalletRepo, account_refusal
from chalicelib.storage.sqlite.database import Database, first
from chalicelib.storage.sqlite.key_repo import CURRENT_KEY_ID
from chalicelib.storage.sqlite.usage_rollup_repo import add_usage
from chalicelib.storage.sqlite.wallet_moves import (
    ENTRY_COLUMNS,
    MoveRepeated,
    Refused,
    apply_move,
    balance,
    credit_account,
    credited_before,
    insert_entry,
    require_account,
    stored_entry,
)

_HOLD_COLUMNS = "request_id, account_id, key_hash, amount, created_at, expires_at, key_quota, plan"


class SqliteWalletRepo(WalletRepo):
    def __init__(self, db: Database) -> None:
        self._db = db

    def balance(self, account_id: str) -> Balance:
        with self._db.read() as tx:
            return balance(tx, account_id)

    def credit(self, entry: LedgerEntry, *, claim: str | None = None) -> Credited:
        try:
            with self._db.write() as tx:
                if claim is not None:
                    # Invariant: a credit's claim credits once, across all accounts.
                    claimed = tx.execute("INSERT INTO credit_claims (claim, account_id, entry_id) VALUES (?, ?, ?) "
                                         "ON CONFLICT DO NOTHING", (claim, entry.account_id, entry.entry_id)).rowcount
                    if not claimed:
                        require_account(tx, entry.account_id)
                        taken = first(tx.execute("SELECT account_id, entry_id FROM credit_claims WHERE claim = ?",
                                                 (claim,)))
                        raise Refused(credited_before(tx, taken["account_id"], taken["entry_id"]))
                # Invariant: an entry is written once.
                if not insert_entry(tx, entry):
                    require_account(tx, entry.account_id)
                    raise Refused(credited_before(tx, entry.account_id, entry.entry_id))
                # Money moves only on an existing account: without one, the claim and entry are rolled back.
                if not credit_account(tx, entry.account_id, entry.amount):
                    raise NotFound(f"No account `{entry.account_id}`.", param="account_id")
                return Credited(entry, balance(tx, entry.account_id), applied=True)
        except Refused as refused:
            return refused.answer

    def move(self, move: WalletMove, *, claim: str | None = None) -> Credited:
        if not move.entries:
            raise InvalidRequest("A wallet move writes at least one ledger entry.", param="entries")
        stands_for = move.entries[0]
        try:
            with self._db.write() as tx:
                if claim is not None:
                    # Invariant: a claim moves money once, across all accounts.
                    claimed = tx.execute("INSERT INTO credit_claims (claim, account_id, entry_id) VALUES (?, ?, ?) "
                                         "ON CONFLICT DO NOTHING",
                                         (claim, move.account_id, stands_for.entry_id)).rowcount
                    if not claimed:
                        require_account(tx, move.account_id)
                        taken = first(tx.execute("SELECT account_id, entry_id FROM credit_claims WHERE claim = ?",
                                                 (claim,)))
                        raise Refused(credited_before(tx, taken["account_id"], taken["entry_id"]))
                try:
                    apply_move(tx, move)
                except MoveRepeated as repeated:
                    # Applied before: the entry that stands for it, as it was written then.
                    written = stored_entry(tx, move.account_id, stands_for.entry_id)
                    raise Refused(credited_before(tx, move.account_id,
                                                  stands_for.entry_id if written else repeated.entry_id)) from None
                return Credited(stands_for, balance(tx, move.account_id), applied=True)
        except Refused as refused:
            return refused.answer

    def ledger_page(self, account_id: str, *, limit: int, cursor: str | None = None) -> LedgerPage:
        page_limit(limit)
        with self._db.read() as tx:
            if cursor is None:
                after = balance(tx, account_id).net
                rows = tx.execute(f"SELECT {ENTRY_COLUMNS} FROM ledger WHERE account_id = ? "
                                  "ORDER BY entry_id DESC LIMIT ?", (account_id, limit + 1)).fetchall()
            else:
                position = decode_cursor(cursor, {"entry_id": str, "balance_after": int})
                # From the cursor's own entry, whose amount leads to the balance before it.
                rows = tx.execute(f"SELECT {ENTRY_COLUMNS} FROM ledger WHERE account_id = ? AND entry_id <= ? "
                                  "ORDER BY entry_id DESC LIMIT ?",
                                  (account_id, position["entry_id"], limit + 2)).fetchall()
                if not rows or rows[0]["entry_id"] != position["entry_id"]:
                    raise InvalidRequest("The cursor is not one this listing returned.", param="cursor")
                after = position["balance_after"] - rows[0]["amount"]
                rows = rows[1:]
        lines = []
        for row in rows[:limit]:
            lines.append(LedgerLine(LedgerEntry(**dict(row)), after))
            after -= row["amount"]
        more = len(rows) > limit
        last = lines[-1] if lines else None
        return LedgerPage(tuple(lines), encode_cursor({"entry_id": last.entry.entry_id,
                                                       "balance_after": last.balance_after})
                          if more and last else None)

    def hold(self, hold: Hold) -> HoldResult:
        try:
            with self._db.write() as tx:
                # Invariant: a key never holds past its quota; only an active, unexpired key holds (the
                # hash of a regenerated key names no row of `keys`, so an old secret cannot hold).
                # A hold made as if the key had no quota is refused once it has one: the caller reads it again.
                reserved = tx.execute(
                    "UPDATE keys SET reserved = reserved + :amount, last_used_at = :now, "
                    "quota_left = CASE WHEN :key_quota THEN quota_left - :amount ELSE quota_left END "
                    "WHERE key_hash = :key_hash AND status = 'active' AND (expires_at IS NULL OR expires_at > :now) "
                    "AND CASE WHEN :key_quota THEN quota_left >= :amount ELSE quota IS NULL END",
                    {"amount": hold.amount, "now": hold.created_at, "key_quota": hold.key_quota,
                     "key_hash": hold.key_hash},
                ).rowcount
                if not reserved:
                    raise Refused(HoldResult.KEY_REFUSED)
                # Invariant: a balance never goes below zero. Only an active account holds, for a key
                # on a plan the account still has (`default` is its own unless the operator confined it).
                # Invariant: nothing is held while the account owes a debt or has a dispute open.
                moved = tx.execute(
                    "UPDATE accounts SET available = available - :amount, held = held + :amount "
                    "WHERE account_id = :account_id AND status = 'active' AND available >= :amount "
                    "AND debt = 0 AND disputes = 0 "
                    "AND ((:plan = :default_plan AND default_plan) "
                    "     OR EXISTS (SELECT 1 FROM json_each(accounts.groups) WHERE value = :plan))",
                    {"amount": hold.amount, "account_id": hold.account_id, "plan": hold.plan,
                     "default_plan": DEFAULT_GROUP},
                ).rowcount
                if not moved:
                    account = first(tx.execute("SELECT status, available, debt, disputes FROM accounts "
                                               "WHERE account_id = ?",
                                               (hold.account_id,)))
                    raise Refused(account_refusal(dict(account) if account else None, hold.amount))
                # Invariant: a request holds once.
                opened = tx.execute(f"INSERT INTO holds ({_HOLD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                                    "ON CONFLICT DO NOTHING",
                                    (hold.request_id, hold.account_id, hold.key_hash, hold.amount, hold.created_at,
                                     hold.expires_at, hold.key_quota, hold.plan)).rowcount
                if not opened:
                    raise Refused(HoldResult.WALLET_SHORT)
        except Refused as refused:
            return refused.answer
        return HoldResult.HELD

    def settle(self, hold: Hold, cost: int, entry: LedgerEntry, usage: UsageDelta | None = None,
               event: UsageEvent | None = None) -> Settlement:
        # The event is not written here (records_events is False): the usage files are the data
        # directory's, appended to once the transaction has committed.
        with self._db.write() as tx:
            # Invariant: a hold is settled or released exactly once; one released meanwhile
            # (expired) holds nothing, and the charge comes from what is available.
            closed = _close_hold(tx, hold)
            held = hold.amount if closed else 0
            key = {"key_hash": hold.key_hash}
            charged = cost
            if cost > held:
                # Beyond the hold, only what both the wallet and the key's quota still have: read
                # under the write lock, so the amounts cannot move before the charge is written.
                # Invariant: a balance never goes below zero; a key never spends past its quota.
                limits = first(tx.execute(
                    "SELECT (SELECT available FROM accounts WHERE account_id = :account_id) AS available, "
                    f"(SELECT quota_left FROM keys WHERE key_id = {CURRENT_KEY_ID} AND quota IS NOT NULL) "
                    "AS quota_left", {"account_id": hold.account_id, **key}))
                if limits["available"] is None:
                    raise StorageError(f"account {hold.account_id} of request {hold.request_id} is missing")
                charged = min(cost, held + max(0, limits["available"]))
                if limits["quota_left"] is not None:
                    charged = min(charged, held + max(0, limits["quota_left"]))
            shortfall = cost - charged
            if not closed and not (charged or shortfall):
                # Invariant: a request is counted once. Nothing to close and nothing to charge:
                # this request was settled (or released) before.
                return Settlement(charged=0, shortfall=0)
            # Invariant: a request is charged once; its entry id is derived from the request.
            if (charged or shortfall) and not insert_entry(tx, dataclasses.replace(entry, amount=-charged,
                                                                                     shortfall=shortfall)):
                # Settled before: charge nothing more, only give back a hold still open.
                _give_back(tx, hold, held)
                return Settlement(charged=0, shortfall=0)
            _move(tx, hold, available=held - charged, held=-held, shortfall=shortfall)
            tx.execute(
                "UPDATE keys SET reserved = reserved - :held, spent = spent + :charged, requests = requests + 1, "
                "prompt_tokens = prompt_tokens + :prompt, completion_tokens = completion_tokens + :completion, "
                # `quota_left` is kept while, and only while, the key has a quota.
                "quota_left = CASE WHEN quota IS NULL THEN NULL ELSE quota_left + :held - :charged END "
                f"WHERE key_id = {CURRENT_KEY_ID}",
                {"held": held, "charged": charged, "prompt": entry.prompt_tokens,
                 "completion": entry.completion_tokens, **key},
            )  # no key under that hash: only its account pays
            if usage is not None:
                # Counted with the key's counters, by the one settlement that closes the hold or
                # writes the charge: a request is counted once.
                add_usage(tx, hold.account_id, usage, charged)
            return Settlement(charged=charged, shortfall=shortfall)

    def release(self, hold: Hold, usage: UsageDelta | None = None, event: UsageEvent | None = None) -> bool:
        with self._db.write() as tx:
            # Invariant: a hold is settled or released exactly once.
            if not _close_hold(tx, hold):
                return False
            _give_back(tx, hold, hold.amount)
            if usage is not None:
                # Only the release that closes the hold counts the failed request.
                add_usage(tx, hold.account_id, usage, 0, error=True)
            return True

    def ledger(self, account_id: str) -> list[LedgerEntry]:
        with self._db.read() as tx:
            rows = tx.execute(f"SELECT {ENTRY_COLUMNS} FROM ledger WHERE account_id = ? ORDER BY entry_id",
                              (account_id,)).fetchall()
        return [LedgerEntry(**dict(row)) for row in rows]

    def expired_holds(self, now: int) -> list[Hold]:
        with self._db.read() as tx:
            rows = tx.execute(f"SELECT {_HOLD_COLUMNS} FROM holds WHERE expires_at <= ? ORDER BY expires_at",
                              (now,)).fetchall()
        return [Hold(**{**dict(row), "key_quota": bool(row["key_quota"])}) for row in rows]


def _close_hold(tx: sqlite3.Connection, hold: Hold) -> bool:
    """Delete the hold's row; whether it was still open."""
    return bool(tx.execute("DELETE FROM holds WHERE request_id = ?", (hold.request_id,)).rowcount)


def _move(tx: sqlite3.Connection, hold: Hold, *, available: int, held: int, shortfall: int = 0) -> None:
    if not tx.execute("UPDATE accounts SET available = available + ?, held = held + ?, shortfall = shortfall + ? "
                      "WHERE account_id = ?", (available, held, shortfall, hold.account_id)).rowcount:
        raise StorageError(f"account {hold.account_id} of request {hold.request_id} is missing")


def _give_back(tx: sqlite3.Connection, hold: Hold, held: int) -> None:
    """Return `held` from the hold to the account and the key it was placed on."""
    if not held:
        return
    _move(tx, hold, available=held, held=-held)
    tx.execute("UPDATE keys SET reserved = reserved - :held, "
               "quota_left = CASE WHEN quota IS NULL THEN NULL ELSE quota_left + :held END "
               f"WHERE key_id = {CURRENT_KEY_ID}", {"held": held, "key_hash": hold.key_hash})
