"""In-memory repositories for unit tests. One lock makes each write atomic, as
DynamoDB's conditional and transactional writes are."""

from __future__ import annotations

import dataclasses
import threading

from chalicelib.domain import ApiKey, Balance, Channel, Hold, LedgerEntry, ModelEntry, Settlement
from chalicelib.errors import Conflict, NotFound
from chalicelib.storage.ports import CatalogRepo, KeyRepo, WalletRepo


class InMemoryKeyRepo(KeyRepo):
    def __init__(self) -> None:
        self.keys: dict[str, ApiKey] = {}

    def create(self, key: ApiKey) -> None:
        if key.key_hash in self.keys:
            raise Conflict("key already exists")
        self.keys[key.key_hash] = key

    def get_by_hash(self, key_hash: str) -> ApiKey | None:
        return self.keys.get(key_hash)

    def add_spend(self, key_hash: str, amount: int) -> None:
        key = self.keys.get(key_hash)
        if key is not None:
            self.keys[key_hash] = dataclasses.replace(key, spent=key.spent + amount)


class InMemoryCatalogRepo(CatalogRepo):
    def __init__(self) -> None:
        self._channels: dict[str, Channel] = {}
        self._models: dict[str, ModelEntry] = {}

    def put_channel(self, channel: Channel) -> None:
        self._channels[channel.name] = channel

    def put_model(self, model: ModelEntry) -> None:
        self._models[model.name] = model

    def load(self) -> tuple[list[Channel], list[ModelEntry]]:
        return list(self._channels.values()), list(self._models.values())


class InMemoryWalletRepo(WalletRepo):
    def __init__(self, keys: InMemoryKeyRepo | None = None) -> None:
        self._lock = threading.Lock()
        self._available: dict[str, int] = {}
        self._held: dict[str, int] = {}
        self._holds: dict[str, Hold] = {}
        self._ledger: dict[str, dict[str, LedgerEntry]] = {}
        self._keys = keys

    def open(self, account_id: str) -> None:
        with self._lock:
            self._available.setdefault(account_id, 0)
            self._held.setdefault(account_id, 0)

    def balance(self, account_id: str) -> Balance:
        with self._lock:
            return Balance(self._available.get(account_id, 0), self._held.get(account_id, 0))

    def credit(self, entry: LedgerEntry) -> Balance:
        with self._lock:
            if entry.account_id not in self._available:
                raise NotFound(f"no account {entry.account_id}", param="account_id")
            self._record(entry)
            self._available[entry.account_id] = self._available.get(entry.account_id, 0) + entry.amount
            return Balance(self._available[entry.account_id], self._held.get(entry.account_id, 0))

    def hold(self, hold: Hold) -> bool:
        with self._lock:
            available = self._available.get(hold.account_id, 0)
            if available < hold.amount or hold.request_id in self._holds:
                return False
            self._available[hold.account_id] = available - hold.amount
            self._held[hold.account_id] = self._held.get(hold.account_id, 0) + hold.amount
            self._holds[hold.request_id] = hold
            return True

    def settle(self, hold: Hold, cost: int, entry: LedgerEntry) -> Settlement:
        with self._lock:
            held = self._close(hold) or 0
            if entry.entry_id in self._ledger.get(hold.account_id, {}):
                self._available[hold.account_id] = self._available.get(hold.account_id, 0) + held
                return Settlement(charged=0, shortfall=0)  # settled before: only give the hold back
            available = self._available.get(hold.account_id, 0) + held
            charged = min(cost, available)
            self._available[hold.account_id] = available - charged
            settlement = Settlement(charged=charged, shortfall=cost - charged)
            if charged or settlement.shortfall:
                self._record(dataclasses.replace(entry, amount=-charged, shortfall=settlement.shortfall))
            if self._keys is not None and charged:
                self._keys.add_spend(hold.key_hash, charged)
            return settlement

    def release(self, hold: Hold) -> bool:
        with self._lock:
            held = self._close(hold)
            if held is None:
                return False
            self._available[hold.account_id] = self._available.get(hold.account_id, 0) + held
            return True

    def ledger(self, account_id: str) -> list[LedgerEntry]:
        with self._lock:
            entries = self._ledger.get(account_id, {})
            return [entries[entry_id] for entry_id in sorted(entries)]

    def expired_holds(self, now: int) -> list[Hold]:
        with self._lock:
            return [hold for hold in self._holds.values() if hold.expires_at <= now]

    def _close(self, hold: Hold) -> int | None:
        """Remove the hold if open; the amount it reserved, or None if it was closed."""
        if self._holds.pop(hold.request_id, None) is None:
            return None
        self._held[hold.account_id] -= hold.amount
        return hold.amount

    def _record(self, entry: LedgerEntry) -> None:
        entries = self._ledger.setdefault(entry.account_id, {})
        if entry.entry_id in entries:
            raise Conflict(f"ledger entry {entry.entry_id} already exists")
        entries[entry.entry_id] = entry
