"""The wallet in memory, for unit tests. The key repository's lock makes each write
atomic, as DynamoDB's transactions are; see the DynamoDB wallet for the timelines."""

from __future__ import annotations

import dataclasses

from chalicelib.core.domain import (
    DEFAULT_GROUP,
    ApiKey,
    Balance,
    Credited,
    Hold,
    HoldResult,
    LedgerEntry,
    Settlement,
)
from chalicelib.core.errors import NotFound
from chalicelib.storage.memory.key_repo import InMemoryKeyRepo
from chalicelib.storage.ports import WalletRepo


class InMemoryWalletRepo(WalletRepo):
    def __init__(self, keys: InMemoryKeyRepo) -> None:
        self._lock = keys.lock
        self._available: dict[str, int] = {}
        self._held: dict[str, int] = {}
        self._shortfall: dict[str, int] = {}
        self._status: dict[str, str] = {}
        self._plans: dict[str, tuple[bool, tuple[str, ...]]] = {}  # (default plan?, listed plans)
        self._holds: dict[str, Hold] = {}
        self._ledger: dict[str, dict[str, LedgerEntry]] = {}
        self._claims: dict[str, tuple[str, str]] = {}  # claim → (account_id, entry_id)
        self._keys = keys

    def open(self, account_id: str) -> None:
        with self._lock:
            self._available.setdefault(account_id, 0)
            self._held.setdefault(account_id, 0)
            self._status.setdefault(account_id, "active")

    def set_plans(self, account_id: str, default_plan: bool, groups: tuple[str, ...]) -> None:
        with self._lock:
            self._plans[account_id] = (default_plan, tuple(groups))

    def set_status(self, account_id: str, status: str) -> None:
        with self._lock:
            self._status[account_id] = status

    def balance(self, account_id: str) -> Balance:
        with self._lock:
            return self._balance(account_id)

    def credit(self, entry: LedgerEntry, *, claim: str | None = None) -> Credited:
        with self._lock:
            if entry.account_id not in self._available:
                raise NotFound(f"No account `{entry.account_id}`.", param="account_id")
            account_id, entry_id = (entry.account_id, entry.entry_id)
            if claim is not None:
                account_id, entry_id = self._claims.get(claim, (account_id, entry_id))
            first = self._ledger.get(account_id, {}).get(entry_id)
            if first is not None:  # the claim (or the entry id) credited before
                return Credited(first, self._balance(account_id), applied=False)
            self._ledger.setdefault(entry.account_id, {})[entry.entry_id] = entry
            if claim is not None:
                self._claims[claim] = (entry.account_id, entry.entry_id)
            self._available[entry.account_id] += entry.amount
            return Credited(entry, self._balance(entry.account_id), applied=True)

    def hold(self, hold: Hold) -> HoldResult:
        with self._lock:
            available = self._available.get(hold.account_id, 0)
            if available < hold.amount or self._status.get(hold.account_id) != "active":
                return HoldResult.WALLET_SHORT
            if hold.request_id in self._holds:
                return HoldResult.WALLET_SHORT
            default_plan, groups = self._plans.get(hold.account_id, (True, ()))
            if hold.plan not in groups and not (hold.plan == DEFAULT_GROUP and default_plan):
                return HoldResult.PLAN_REFUSED
            key = self._keys.keys.get(hold.key_hash)  # not followed: an old secret cannot hold
            if key is None or not _key_can_hold(key, hold):
                return HoldResult.KEY_REFUSED
            self._available[hold.account_id] = available - hold.amount
            self._held[hold.account_id] += hold.amount
            self._holds[hold.request_id] = hold
            self._keys.update(key.key_hash, reserved=key.reserved + hold.amount, last_used_at=hold.created_at,
                              quota_left=key.quota_left - hold.amount if hold.key_quota else key.quota_left)
            return HoldResult.HELD

    def settle(self, hold: Hold, cost: int, entry: LedgerEntry) -> Settlement:
        with self._lock:
            held = self._close(hold) or 0
            if entry.entry_id in self._ledger.get(hold.account_id, {}):
                self._available[hold.account_id] += held
                self._unreserve(hold, held, charged=0, entry=None)
                return Settlement(charged=0, shortfall=0)  # settled before: only give the hold back
            available = self._available[hold.account_id]
            # Beyond the hold, only what both the wallet and the key's quota still have.
            charged = min(cost, held + available)
            key = self._keys.current(hold.key_hash)
            if key is not None and key.quota is not None:
                charged = min(charged, held + max(0, key.quota_left or 0))
            settlement = Settlement(charged=charged, shortfall=cost - charged)
            self._available[hold.account_id] = available + held - charged
            self._shortfall[hold.account_id] = self._shortfall.get(hold.account_id, 0) + settlement.shortfall
            if charged or settlement.shortfall:
                entries = self._ledger.setdefault(hold.account_id, {})
                entries[entry.entry_id] = dataclasses.replace(entry, amount=-charged, shortfall=settlement.shortfall)
            self._unreserve(hold, held, charged=charged, entry=entry)
            return settlement

    def release(self, hold: Hold) -> bool:
        with self._lock:
            held = self._close(hold)
            if held is None:
                return False
            self._available[hold.account_id] += held
            self._unreserve(hold, held, charged=0, entry=None)
            return True

    def ledger(self, account_id: str) -> list[LedgerEntry]:
        with self._lock:
            entries = self._ledger.get(account_id, {})
            return [entries[entry_id] for entry_id in sorted(entries)]

    def expired_holds(self, now: int) -> list[Hold]:
        with self._lock:
            return [hold for hold in self._holds.values() if hold.expires_at <= now]

    def _balance(self, account_id: str) -> Balance:
        return Balance(self._available.get(account_id, 0), self._held.get(account_id, 0),
                       self._status.get(account_id, "missing"), self._shortfall.get(account_id, 0))

    def _close(self, hold: Hold) -> int | None:
        """Remove the hold if open; the amount it reserved, or None if it was closed."""
        if self._holds.pop(hold.request_id, None) is None:
            return None
        self._held[hold.account_id] -= hold.amount
        return hold.amount

    def _unreserve(self, hold: Hold, held: int, *, charged: int, entry: LedgerEntry | None) -> None:
        """Count the closed hold on the key's current item (followed if it was regenerated)."""
        key = self._keys.current(hold.key_hash)
        if key is None:
            return
        changes = {"reserved": key.reserved - held, "spent": key.spent + charged}
        if entry is not None:
            changes.update(requests=key.requests + 1, prompt_tokens=key.prompt_tokens + entry.prompt_tokens,
                           completion_tokens=key.completion_tokens + entry.completion_tokens)
        if key.quota is not None:
            changes["quota_left"] = (key.quota_left or 0) + held - charged
        self._keys.update(key.key_hash, **changes)


def _key_can_hold(key: ApiKey, hold: Hold) -> bool:
    """The conditions DynamoDB checks on the key item when a hold is placed."""
    if key.status != "active" or (key.expires_at is not None and key.expires_at <= hold.created_at):
        return False
    if hold.key_quota:
        return key.quota_left is not None and key.quota_left >= hold.amount
    return key.quota is None
