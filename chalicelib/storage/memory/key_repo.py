"""API keys in memory, for unit tests."""

from __future__ import annotations

import dataclasses
from typing import Any

from chalicelib.core.domain import (
    ApiKey,
)
from chalicelib.core.errors import Conflict
from chalicelib.storage.ports import KeyRepo


class InMemoryKeyRepo(KeyRepo):
    def __init__(self) -> None:
        self.keys: dict[str, ApiKey] = {}

    def create(self, key: ApiKey) -> None:
        if key.key_hash in self.keys:
            raise Conflict("key already exists")
        self.keys[key.key_hash] = key

    def get_by_hash(self, key_hash: str, *, consistent: bool = False) -> ApiKey | None:
        return self.keys.get(key_hash)

    def get_by_id(self, key_id: str) -> ApiKey | None:
        return next((key for key in self.keys.values() if key.key_id == key_id), None)

    def list_for_account(self, account_id: str) -> list[ApiKey]:
        return sorted((k for k in self.keys.values() if k.account_id == account_id), key=lambda k: k.created_at)

    def save_settings(self, key: ApiKey) -> ApiKey:
        current = self.keys[key.key_hash]
        quota_left = current.quota_left
        if key.quota is None:
            quota_left = None
        elif key.quota != current.quota:
            quota_left = key.quota - current.spent - current.reserved
        self.keys[key.key_hash] = dataclasses.replace(
            current, name=key.name, group=key.group, status=key.status, expires_at=key.expires_at,
            quota=key.quota, models=key.models, cidrs=key.cidrs, quota_left=quota_left)
        return self.keys[key.key_hash]

    def replace_hash(self, key: ApiKey, key_hash: str, hint: str) -> ApiKey:
        current = self.keys.pop(key.key_hash)
        self.keys[key_hash] = dataclasses.replace(current, key_hash=key_hash, hint=hint)
        return self.keys[key_hash]

    def update(self, key_hash: str, **changes: Any) -> None:
        self.keys[key_hash] = dataclasses.replace(self.keys[key_hash], **changes)
