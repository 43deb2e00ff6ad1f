"""Operator actions behind the admin API: channels, models, accounts, credits, keys."""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

from chalicelib.catalog.catalog import BUILTIN_MODELS, Catalog
from chalicelib.core.domain import (
    Account,
    ApiKey,
    Balance,
    Channel,
    Group,
    LedgerEntry,
    ModelEntry,
    ModelKind,
    Prices,
    Route,
)
from chalicelib.core.errors import AdminAuthError, InvalidRequest, NotFound
from chalicelib.core.money import parse_multiplier, usd_to_units
from chalicelib.core.validation import parse
from chalicelib.keys.auth import bearer_token
from chalicelib.keys.manage import CreatedKey, KeyManager
from chalicelib.storage.ports import AccountRepo, CatalogRepo, WalletRepo

# USD amounts arrive as decimal strings (or whole numbers), never floats: they are parsed exactly.
_Usd = StrictStr | StrictInt


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChannelInput(_Input):
    name: StrictStr = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    base_url: StrictStr
    api_key: StrictStr = Field(min_length=1)
    kind: Literal["openai", "anthropic"] = "openai"

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")


class ModelInput(_Input):
    name: StrictStr = Field(min_length=1, max_length=128)
    channel: StrictStr = Field(min_length=1)
    upstream_model: StrictStr | None = None
    kind: ModelKind | None = None
    # A price left out keeps the model's current one (zero for a new model).
    input_per_1m: _Usd | None = None
    output_per_1m: _Usd | None = None
    cached_input_per_1m: _Usd | None = None
    per_image: _Usd | None = None
    max_output_tokens: int | None = Field(None, gt=0)
    context_window: int | None = Field(None, gt=0)
    timeout_s: float | None = Field(None, gt=0, le=900)


class AccountInput(_Input):
    email: StrictStr = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")


class CreditInput(_Input):
    amount_usd: _Usd
    note: StrictStr | None = Field(None, max_length=200)


class GroupInput(_Input):
    name: StrictStr = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    # A decimal string such as "1.2": the plan's prices are list prices times this.
    multiplier: StrictStr | StrictInt = "1"
    models: list[StrictStr] = Field(default_factory=list, max_length=500)
    description: StrictStr = Field("", max_length=200)


class AccountChanges(_Input):
    status: Literal["active", "disabled"] | None = None
    role: Literal["customer", "admin"] | None = None
    groups: list[StrictStr] | None = Field(None, max_length=100)


def _units(value: Any, field: str) -> int:
    try:
        return usd_to_units(value, field=field)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param=field) from None


def _price(value: Any, field: str, current: int | None) -> int | None:
    return current if value is None else _units(value, field)


class Admin:
    def __init__(self, *, token: str | None, accounts: AccountRepo, wallets: WalletRepo, catalog_repo: CatalogRepo,
                 catalog: Catalog, key_manager: KeyManager, now_ms: Callable[[], int]) -> None:
        self._token = token
        self._accounts = accounts
        self._wallets = wallets
        self._catalog_repo = catalog_repo
        self._catalog = catalog
        self._key_manager = key_manager
        self._now_ms = now_ms

    def authorize(self, authorization: str | None) -> None:
        """Check the operator admin token (constant-time compare)."""
        if not self._token:
            raise AdminAuthError("The admin API is disabled: no admin token is configured.")
        token = bearer_token(authorization) or ""
        if not hmac.compare_digest(token.encode(), self._token.encode()):
            raise AdminAuthError("Invalid admin token.")

    def add_channel(self, body: Any) -> Channel:
        data: ChannelInput = parse(ChannelInput, body)
        channel = Channel(name=data.name, base_url=data.base_url, api_key=data.api_key, kind=data.kind)
        self._catalog_repo.put_channel(channel)
        self._catalog.invalidate()
        return channel

    def add_model(self, body: Any) -> ModelEntry:
        """Create or update a model; naming a channel it already has updates that route,
        a new channel is added after the existing ones (as a fallback)."""
        data: ModelInput = parse(ModelInput, body)
        if self._catalog.channel(data.channel) is None:
            raise NotFound(f"No channel `{data.channel}`; add it first.", param="channel")
        existing = self._existing_model(data.name)
        route = Route(data.channel, data.upstream_model or data.name)
        routes = [r for r in (existing.routes if existing else ()) if r.channel != data.channel]
        current = existing.prices if existing else Prices()
        prices = Prices(
            input_per_1m=_price(data.input_per_1m, "input_per_1m", current.input_per_1m),
            output_per_1m=_price(data.output_per_1m, "output_per_1m", current.output_per_1m),
            cached_input_per_1m=_price(data.cached_input_per_1m, "cached_input_per_1m",
                                       current.cached_input_per_1m),
            per_image=_price(data.per_image, "per_image", current.per_image),
        )
        kind = data.kind or (existing.kind if existing else ModelKind.IMAGE if prices.per_image else ModelKind.CHAT)
        model = ModelEntry(
            name=data.name,
            kind=kind,
            prices=prices,
            routes=(*routes, route) if existing else (route,),
            context_window=data.context_window or (existing.context_window if existing else None),
            max_output_tokens=data.max_output_tokens or (existing.max_output_tokens if existing else None),
            use_case=existing.use_case if existing else "",
            timeout_s=data.timeout_s or (existing.timeout_s if existing else None),
            owned_by=existing.owned_by if existing else "tokenway",
        )
        self._catalog_repo.put_model(model)
        self._catalog.invalidate()
        return model

    def _existing_model(self, name: str) -> ModelEntry | None:
        _, models, _ = self._catalog_repo.load()
        return next((m for m in models if m.name == name), BUILTIN_MODELS.get(name))

    def create_account(self, body: Any) -> Account:
        data: AccountInput = parse(AccountInput, body)
        account = Account(account_id=f"acct_{uuid.uuid4().hex[:24]}", email=data.email.lower(),
                          created_at=self._now_ms())
        self._accounts.create(account)
        return account

    def credit(self, account_id: str, body: Any) -> Balance:
        data: CreditInput = parse(CreditInput, body)
        amount = _units(data.amount_usd, "amount_usd")
        if amount == 0:
            raise InvalidRequest("amount_usd must be greater than zero.", param="amount_usd")
        self._account(account_id)
        now = self._now_ms()
        return self._wallets.credit(LedgerEntry(
            account_id=account_id, entry_id=f"{now:013d}#credit_{uuid.uuid4().hex}", kind="credit",
            amount=amount, created_at=now, note=data.note or "operator credit",
        ))

    def wallet(self, account_id: str) -> Balance:
        self._account(account_id)
        return self._wallets.balance(account_id)

    def create_key(self, account_id: str, body: Any) -> CreatedKey:
        return self._key_manager.create(self._account(account_id), body)

    def add_group(self, body: Any) -> Group:
        """Create or replace a plan."""
        data: GroupInput = parse(GroupInput, body)
        try:
            ppm = parse_multiplier(data.multiplier)
        except ValueError as exc:
            raise InvalidRequest(f"{exc}.", param="multiplier") from None
        known = {model.name for model in self._catalog.models()}
        unknown = [name for name in data.models if name not in known]
        if unknown:
            raise InvalidRequest(f"Unknown model `{unknown[0]}`.", param="models")
        group = Group(data.name, ppm, tuple(dict.fromkeys(data.models)), data.description)
        self._catalog_repo.put_group(group)
        self._catalog.invalidate()
        return group

    def groups(self) -> list[Group]:
        return self._catalog.groups()

    def accounts(self, search: str | None) -> list[Account]:
        return self._accounts.list(search or None)

    def change_account(self, account_id: str, body: Any) -> Account:
        """Disable or enable an account (its keys stop or start working), set its plans or its role."""
        data: AccountChanges = parse(AccountChanges, body)
        self._account(account_id)
        if data.groups is not None:
            unknown = [name for name in data.groups if self._catalog.group(name) is None]
            if unknown:
                raise InvalidRequest(f"Unknown group `{unknown[0]}`.", param="groups")
            self._accounts.set_groups(account_id, tuple(dict.fromkeys(data.groups)))
        if data.status is not None:
            self._accounts.set_status(account_id, data.status)
        if data.role is not None:
            self._accounts.set_role(account_id, data.role)
        return self._account(account_id)

    def account_keys(self, account_id: str) -> list[ApiKey]:
        self._account(account_id)
        return self._key_manager.list(account_id)

    def _account(self, account_id: str) -> Account:
        account = self._accounts.get(account_id)
        if account is None:
            raise NotFound(f"No account `{account_id}`.", param="account_id")
        return account
