"""Token management: a customer's API keys — create (shown once), list, edit, revoke, regenerate."""

from __future__ import annotations

import dataclasses
import ipaddress
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

from chalicelib.catalog.catalog import Catalog
from chalicelib.core.domain import DEFAULT_GROUP, Account, ApiKey, Group, KeyStatus
from chalicelib.core.errors import InvalidRequest, NotFound
from chalicelib.core.validation import parse_usd
from chalicelib.keys.auth import KeyHasher, generate_key, key_hint
from chalicelib.keys.plans import plan_names
from chalicelib.storage.ports import KeyRepo

MAX_LIST_ENTRIES = 100
MAX_LIMIT = 1_000_000_000
LIMIT_FIELDS = ("rpm_limit", "tpm_limit", "concurrency_limit")


class _KeyFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    group: StrictStr | None = Field(None, min_length=1, max_length=64)
    expires_at: datetime | None = None
    # USD as a decimal string (or a whole number): parsed exactly, never through a float.
    quota_usd: StrictStr | StrictInt | None = None
    models: list[StrictStr] | None = Field(None, max_length=MAX_LIST_ENTRIES)
    allowed_ips: list[StrictStr] | None = Field(None, max_length=MAX_LIST_ENTRIES)
    # The key's own request limits, below its plan's (null: the plan's alone).
    rpm_limit: StrictInt | None = Field(None, ge=1, le=MAX_LIMIT)
    tpm_limit: StrictInt | None = Field(None, ge=1, le=MAX_LIMIT)
    concurrency_limit: StrictInt | None = Field(None, ge=1, le=MAX_LIMIT)

    @field_validator("allowed_ips")
    @classmethod
    def _networks(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        networks = []
        for entry in value:
            try:
                networks.append(str(ipaddress.ip_network(entry.strip(), strict=False)))
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or CIDR block") from None
        return networks


class KeyCreate(_KeyFields):
    name: StrictStr = Field(min_length=1, max_length=50)


class KeyUpdate(_KeyFields):
    name: StrictStr | None = Field(None, min_length=1, max_length=50)
    enabled: StrictBool | None = None


@dataclass(frozen=True)
class CreatedKey:
    key: ApiKey
    secret: str  # shown once


class KeyManager:
    def __init__(self, keys: KeyRepo, catalog: Catalog, hasher: KeyHasher, *, now_ms: Callable[[], int]) -> None:
        self._keys = keys
        self._catalog = catalog
        self._hash = hasher
        self._now_ms = now_ms

    def create(self, account: Account, data: KeyCreate) -> CreatedKey:
        """A new key for the account; its secret is in the answer and nowhere else."""
        if "group" not in data.model_fields_set:
            self._group(account, None)  # a key without a plan is on `default`: the account must have it
        secret = generate_key()
        key = ApiKey(key_id=f"key_{uuid.uuid4().hex[:24]}", key_hash=self._hash(secret),
                     account_id=account.account_id, name=_label(data.name), created_at=self._now_ms(),
                     hint=key_hint(secret))
        key = self._apply(account, key, data)
        key = dataclasses.replace(key, quota_left=key.quota)  # nothing spent or reserved yet
        self._keys.create(key)
        return CreatedKey(key, secret)

    def list(self, account_id: str) -> list[ApiKey]:
        """The account's keys that are not revoked, oldest first."""
        return [key for key in self._keys.list_for_account(account_id) if key.status != KeyStatus.REVOKED]

    def get(self, account_id: str, key_id: str) -> ApiKey:
        """The account's key; NotFound for a revoked key or another account's (never telling which)."""
        key = self._keys.get_by_id(key_id)
        if key is None or key.account_id != account_id or key.status == KeyStatus.REVOKED:
            raise NotFound(f"No key `{key_id}`.", param="key_id")
        return key

    def update(self, account: Account, key_id: str, data: KeyUpdate) -> ApiKey:
        key = self.get(account.account_id, key_id)
        if data.name is not None:
            key = dataclasses.replace(key, name=_label(data.name))
        if data.enabled is not None:
            key = dataclasses.replace(key, status=KeyStatus.ACTIVE if data.enabled else KeyStatus.DISABLED)
        return self._keys.save_settings(self._apply(account, key, data))

    def revoke(self, account_id: str, key_id: str) -> None:
        key = self.get(account_id, key_id)
        self._keys.save_settings(dataclasses.replace(key, status=KeyStatus.REVOKED))

    def regenerate(self, account_id: str, key_id: str) -> CreatedKey:
        """A new secret for the key, same settings and counters; the old secret stops at once."""
        key = self.get(account_id, key_id)
        secret = generate_key()
        return CreatedKey(self._keys.replace_hash(key, self._hash(secret), key_hint(secret)), secret)

    def limits(self, account_id: str, key_id: str) -> list[dict[str, Any]]:
        """The request limits that apply to the key, per scope: the key's (its plan's capped by its own)
        and each model its plan limits (capped by the key's own)."""
        key = self.get(account_id, key_id)
        group = self._catalog.group(key.group) or Group(key.plan)
        own = key.own_limits
        found = [{"scope": "key", **group.limits.capped(own).as_dict()}]
        found += [{"scope": "model", "model": model, **limits.capped(own).as_dict()}
                  for model, limits in group.model_limits]
        return found

    def usable_groups(self, account: Account) -> list[Group]:
        """The plans the account may give its keys, as they exist now."""
        return [group for name in plan_names(account) if (group := self._catalog.group(name)) is not None]

    def _apply(self, account: Account, key: ApiKey, data: _KeyFields) -> ApiKey:
        """The key with the settings `data` gives (a field sent as null clears it)."""
        given = data.model_fields_set
        changes: dict[str, Any] = {}
        if "group" in given:
            changes["group"] = self._group(account, data.group)
        if "expires_at" in given:
            changes["expires_at"] = self._expiry(data.expires_at)
        if "quota_usd" in given:
            changes["quota"] = _quota(data.quota_usd)
        if "models" in given:
            changes["models"] = self._catalog.known_models(data.models or [])
        if "allowed_ips" in given:
            changes["cidrs"] = tuple(dict.fromkeys(data.allowed_ips or []))
        changes.update({name: getattr(data, name) for name in LIMIT_FIELDS if name in given})
        return dataclasses.replace(key, **changes)

    def _group(self, account: Account, name: str | None) -> str | None:
        """The key's `group` as stored (None: the default plan), if the account may use it."""
        name = name or DEFAULT_GROUP
        if self._catalog.group(name) is None or name not in plan_names(account):
            usable = ", ".join(f"`{plan}`" for plan in plan_names(account)) or "none"
            raise InvalidRequest(f"Unknown group `{name}`, or not one this account may use (its plans: {usable}).",
                                 param="group", code="invalid_group")
        return None if name == DEFAULT_GROUP else name

    def _expiry(self, expires_at: datetime | None) -> int | None:
        if expires_at is None:
            return None
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
        expires_ms = int(expires_at.timestamp() * 1000)
        if expires_ms <= self._now_ms():
            raise InvalidRequest("expires_at must be in the future.", param="expires_at", code="invalid_value")
        return expires_ms


def _label(name: str) -> str:
    label = name.strip()
    if not label:
        raise InvalidRequest("name must not be blank.", param="name", code="invalid_value")
    return label


def _quota(value: str | int | None) -> int | None:
    return None if value is None else parse_usd(value, "quota_usd")
