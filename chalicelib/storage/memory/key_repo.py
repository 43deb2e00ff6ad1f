"""API keys in memory, for unit tests."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from chalicelib.core.domain import ApiKey
from chalicelib.core.errors import Conflict, NotFound
from chalicelib.storage.ports import KeyRepo


class InMemoryKeyRepo(KeyRepo):
    def __init__(self) -> None:
        # Shared with the in-memory wallet, which moves the keys' counters: one lock
        # makes a hold or a settlement and a regeneration atomic with each other.
        self.lock = threading.RLock()
        self.keys: dict[str, ApiKey] = {}
        # What a regenerated key leaves at its old hash: where the key went.
        self.moved: dict[str, str] = {}

    def create(self, key: ApiKey) -> None:
        with self.lock:
            if key.key_hash in self.keys or key.key_hash in self.moved:
                raise Conflict("key already exists")
            self.keys[key.key_hash] = key

    def get_by_hash(self, key_hash: str, *, consistent: bool = False) -> ApiKey | None:
        with self.lock:
            return self.keys.get(key_hash)

    def get_by_id(self, key_id: str) -> ApiKey | None:
        with self.lock:
            return next((key for key in self.keys.values() if key.key_id == key_id), None)

    def list_for_account(self, account_id: str) -> list[ApiKey]:
        with self.lock:
            return sorted((k for k in self.keys.values() if k.account_id == account_id), key=lambda k: k.created_at)

    def save_settings(self, key: ApiKey) -> ApiKey:
        with self.lock:
            current = self._current(key)
            quota_left = current.quota_left
            if key.quota is None:
                quota_left = None
            elif key.quota != current.quota:
                quota_left = key.quota - current.spent - current.reserved
            self.keys[current.key_hash] = dataclasses.replace(
                current, name=key.name, group=key.group, status=key.status, expires_at=key.expires_at,
                quota=key.quota, models=key.models, cidrs=key.cidrs, quota_left=quota_left)
            return self.keys[current.key_hash]

    def replace_hash(self, key: ApiKey, key_hash: str, hint: str) -> ApiKey:
        with self.lock:
            current = self._current(key)
            if key_hash in self.keys or key_hash in self.moved:
                raise Conflict("key already exists")
            del self.keys[current.key_hash]
            self.moved[current.key_hash] = key_hash
            self.keys[key_hash] = dataclasses.replace(current, key_hash=key_hash, hint=hint)
            return self.keys[key_hash]

    def current(self, key_hash: str) -> ApiKey | None:
        """The key stored under `key_hash`, or where it went if it was regenerated; None if none."""
        with self.lock:
            while key_hash in self.moved:
                key_hash = self.moved[key_hash]
            return self.keys.get(key_hash)

    def update(self, key_hash: str, **changes: Any) -> None:
        with self.lock:
            self.keys[key_hash] = dataclasses.replace(self.keys[key_hash], **changes)

    def _current(self, key: ApiKey) -> ApiKey:
        current = self.current(key.key_hash)
        if current is None:
            raise NotFound(f"No key `{key.key_id}`.", param="key_id")
        return current
