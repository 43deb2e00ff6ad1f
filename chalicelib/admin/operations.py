"""Operator actions behind the admin API: channels, models, accounts, credits, keys.

Accounts are created by the identity service (identity/accounts.py), the one way for every caller.
"""

from __future__ import annotations

import hmac
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

from chalicelib.billing.wallet import MAX_NOTE_LENGTH, MAX_REFERENCE_LENGTH, Wallet
from chalicelib.catalog.catalog import (
    BUILTIN_MODELS,
    DEFAULT_MAX_OUTPUT_TOKENS,
    MESSAGES_PRICE_CHANGING,
    PRICE_CHANGING_FIELDS,
    Catalog,
    default_cap_field,
)
from chalicelib.core.domain import (
    DEFAULT_IMAGE_QUALITY,
    DEFAULT_IMAGE_SIZE,
    Account,
    ApiKey,
    Balance,
    Channel,
    Credited,
    Group,
    ImagePrice,
    LedgerKind,
    Limits,
    ModelEntry,
    ModelKind,
    Prices,
    Route,
)
from chalicelib.core.errors import AdminAuthError, InvalidRequest, NotFound
from chalicelib.core.money import parse_multiplier
from chalicelib.core.validation import parse_usd
from chalicelib.keys.auth import bearer_token
from chalicelib.keys.manage import CreatedKey, KeyCreate, KeyManager
from chalicelib.relay.health import ChannelBreakers, ChannelHealth
from chalicelib.relay.schemas import MAX_MODELS
from chalicelib.storage.ports import AccountRepo, CatalogRepo, WalletRepo

# USD amounts arrive as decimal strings (or whole numbers), never floats: they are parsed exactly.
_Usd = StrictStr | StrictInt


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChannelInput(_Input):
    name: StrictStr = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    base_url: StrictStr
    # Sent as a header value: printable ASCII without spaces, so no HTTP library ever refuses it
    # (h11, for one, would put the whole value in its error message). Never in a repr.
    api_key: StrictStr = Field(min_length=1, max_length=4096, pattern=r"^[!-~]+$", repr=False)
    kind: Literal["openai", "anthropic"] = "openai"
    # Sent with every request to the channel; stored plainly (they are not secrets), never logged.
    extra_headers: dict[StrictStr, StrictStr] = Field(default_factory=dict, max_length=20, repr=False)

    @field_validator("extra_headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, header in value.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"`{name}` is not an HTTP header name")
            if name.lower() in _GATEWAY_HEADERS:
                raise ValueError(f"`{name}` is set by the gateway")
            # Printable ASCII: no line break could smuggle another header in.
            if not _HEADER_VALUE.fullmatch(header):
                raise ValueError(f"the value of `{name}` must be printable ASCII of at most 1024 characters")
        return value

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")
_HEADER_VALUE = re.compile(r"[ -~]{0,1024}")
# What the gateway itself sends or the HTTP client manages: a channel may not override them.
_GATEWAY_HEADERS = frozenset({"authorization", "content-type", "content-length", "host", "transfer-encoding",
                              "connection"})


class ChannelStateInput(_Input):
    # "open" takes the channel out of service, "closed" keeps it in whatever fails, "auto" leaves it to its breaker.
    state: Literal["auto", "open", "closed"]


class ImagePriceInput(_Input):
    quality: StrictStr = Field(min_length=1, max_length=32)
    size: StrictStr = Field(min_length=1, max_length=32)
    per_image: _Usd


@dataclass(frozen=True)
class AddedChannel:
    """A channel as the admin API shows it: its key only as a hint."""

    name: str
    base_url: str
    kind: str
    api_key_hint: str
    header_names: tuple[str, ...] = ()  # the values are not shown back


def secret_hint(secret: str) -> str:
    """What may be shown of an upstream key: its first five and last four characters, fewer for a short key
    (`sk-up…wxyz`), so that at most a third of it is ever shown."""
    if len(secret) >= 27:
        return f"{secret[:5]}…{secret[-4:]}"
    if len(secret) >= 12:
        return f"…{secret[-4:]}"
    return "…"


class ModelInput(_Input):
    name: StrictStr = Field(min_length=1, max_length=128)
    channel: StrictStr = Field(min_length=1)
    upstream_model: StrictStr | None = None
    kind: ModelKind | None = None
    # A price left out keeps the model's current one (zero for a new model).
    input_per_1m: _Usd | None = None
    output_per_1m: _Usd | None = None
    cached_input_per_1m: _Usd | None = None
    # Prompt tokens written to the provider's cache (Anthropic bills them above input).
    cache_write_per_1m: _Usd | None = None
    per_image: _Usd | None = None
    # Prices of other image qualities and sizes: each given one is set, the others kept.
    image_prices: list[ImagePriceInput] | None = Field(None, max_length=100)
    # A new chat model without one gets DEFAULT_MAX_OUTPUT_TOKENS.
    max_output_tokens: int | None = Field(None, gt=0)
    context_window: int | None = Field(None, gt=0)
    timeout_s: float | None = Field(None, gt=0, le=900)
    # Where the provider reads the output cap; a new model gets its provider's
    # (a channel named after one) or `max_tokens`.
    cap_field: Literal["max_tokens", "max_completion_tokens"] | None = None
    # Price-changing request fields the model's prices cover (replaces the list; [] clears it).
    pass_through: list[StrictStr] | None = Field(None, max_length=50)
    # The route on `channel`: higher priorities are tried first, equal ones share the load by weight.
    # A new route without a priority goes after the model's others (one below the lowest).
    priority: StrictInt | None = Field(None, ge=-1000, le=1000)
    weight: StrictInt | None = Field(None, ge=1, le=1000)
    # The models tried in turn when this one fails retryably, for a request naming only it
    # (replaces the list; [] clears it).
    fallbacks: list[StrictStr] | None = Field(None, max_length=MAX_MODELS - 1)


class CreditInput(_Input):
    amount_usd: _Usd
    note: StrictStr | None = Field(None, max_length=MAX_NOTE_LENGTH)
    # The same reference credits once; without one, each call is a new credit.
    reference: StrictStr | None = Field(None, min_length=1, max_length=MAX_REFERENCE_LENGTH)


class GroupInput(_Input):
    name: StrictStr = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    # A decimal string such as "1.2": the plan's prices are list prices times this.
    multiplier: StrictStr | StrictInt = "1"
    models: list[StrictStr] = Field(default_factory=list, max_length=500)
    description: StrictStr = Field("", max_length=200)


class LimitsInput(_Input):
    """A plan's request limits per key, on all its models or (`model`) on one; a limit left out or
    null is unlimited."""

    model: StrictStr | None = Field(None, min_length=1, max_length=200)
    rpm: StrictInt | None = Field(None, ge=1, le=1_000_000_000)
    tpm: StrictInt | None = Field(None, ge=1, le=1_000_000_000)
    concurrency: StrictInt | None = Field(None, ge=1, le=1_000_000_000)


class AccountChanges(_Input):
    """What the operator may change on an account; a field left out stays as it is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Literal["active", "disabled"] | None = None
    role: Literal["customer", "admin"] | None = None
    groups: list[StrictStr] | None = Field(None, max_length=100)
    # Whether `default` is among the account's plans besides `groups`; false confines it to `groups`.
    default_plan: StrictBool | None = None


def _price(value: Any, field: str, current: int | None) -> int | None:
    return current if value is None else parse_usd(value, field)


def _image_prices(given: list[ImagePriceInput] | None, prices: Prices) -> Prices:
    """`prices` with the given image prices set; the default quality and size is `per_image`."""
    if not given:
        return prices
    table = {(entry.quality, entry.size): entry.price for entry in prices.image_prices}
    per_image = prices.per_image
    for entry in given:
        price = parse_usd(entry.per_image, "image_prices")
        if (entry.quality, entry.size) == (DEFAULT_IMAGE_QUALITY, DEFAULT_IMAGE_SIZE):
            per_image = price
        else:
            table[entry.quality, entry.size] = price
    return replace(prices, per_image=per_image,
                   image_prices=tuple(ImagePrice(quality, size, price) for (quality, size), price in table.items()))


def _route(data: ModelInput, others: list[Route], current: Route | None) -> Route:
    """The route on `data.channel`: what is given, else what it had, else after the model's other routes."""
    if data.priority is not None:
        priority = data.priority
    elif current is not None:
        priority = current.priority
    else:
        priority = min((r.priority for r in others), default=1) - 1
    weight = data.weight or (current.weight if current else 1)
    return Route(data.channel, data.upstream_model or (current.upstream_model if current else data.name),
                 priority, weight)


def _pass_through(fields: list[str] | None, kind: ModelKind) -> tuple[str, ...] | None:
    """The price-changing fields a model passes through, each one the gateway knows."""
    if fields is None:
        return None
    known = PRICE_CHANGING_FIELDS[kind] | (MESSAGES_PRICE_CHANGING if kind is ModelKind.CHAT else frozenset())
    unknown = [name for name in fields if name not in known]
    if unknown:
        listed = ", ".join(sorted(known)) or "none"
        raise InvalidRequest(f"`{unknown[0]}` is not a price-changing field of {kind.value} models "
                             f"(those are: {listed}).", param="pass_through")
    return tuple(dict.fromkeys(fields))


class Admin:
    def __init__(self, *, token: str | None, accounts: AccountRepo, wallets: WalletRepo, wallet: Wallet,
                 catalog_repo: CatalogRepo, catalog: Catalog, key_manager: KeyManager,
                 now_ms: Callable[[], int], breakers: ChannelBreakers | None = None) -> None:
        self._token = token
        self._accounts = accounts
        self._wallets = wallets
        self._wallet = wallet
        self._catalog_repo = catalog_repo
        self._catalog = catalog
        self._key_manager = key_manager
        self._now_ms = now_ms
        self._breakers = breakers or ChannelBreakers()

    def authorize(self, authorization: str | None) -> None:
        """Check the operator admin token (constant-time compare)."""
        if not self._token:
            raise AdminAuthError("The admin API is disabled: no admin token is configured.")
        token = bearer_token(authorization) or ""
        if not hmac.compare_digest(token.encode(), self._token.encode()):
            raise AdminAuthError("Invalid admin token.")

    def add_channel(self, data: ChannelInput) -> AddedChannel:
        """Create or replace a channel; its key is stored sealed and shown back only as a hint."""
        existing = self._catalog.channel(data.name)
        channel = Channel(name=data.name, base_url=data.base_url, api_key=data.api_key, kind=data.kind,
                          extra_headers=tuple(data.extra_headers.items()),
                          # A state the operator forced stays forced when the channel is added again.
                          state=existing.state if existing else "auto")
        self._catalog_repo.put_channel(channel)
        self._catalog.invalidate()
        return AddedChannel(channel.name, channel.base_url, channel.kind, secret_hint(channel.api_key),
                            tuple(data.extra_headers))

    def channels(self) -> list[tuple[Channel, ChannelHealth]]:
        """Every channel with its breaker's state and its recent calls, as this process saw them."""
        return [(channel, self._breakers.health(channel.name, channel.state)) for channel in self._catalog.channels()]

    def force_channel_state(self, name: str, state: str) -> tuple[Channel, ChannelHealth]:
        """Force a channel's breaker open or closed for every process, or give it back to the breaker."""
        channel = self._catalog.channel(name)
        if channel is None:
            raise NotFound(f"No channel `{name}`.", param="name")
        if not self._catalog_repo.set_channel_state(name, state):
            raise InvalidRequest(f"The channel `{name}` comes from the environment; add it with `channel add` "
                                 "to force its state.", param="name")
        self._catalog.invalidate()
        channel = replace(channel, state=state)
        return channel, self._breakers.health(name, state)

    def add_model(self, data: ModelInput) -> ModelEntry:
        """Create or update a model; naming a channel it already has updates that route,
        a new channel is added after the existing ones (as a fallback)."""
        if self._catalog.channel(data.channel) is None:
            raise NotFound(f"No channel `{data.channel}`; add it first.", param="channel")
        existing = self._existing_model(data.name)
        routes = [r for r in (existing.routes if existing else ()) if r.channel != data.channel]
        route = _route(data, routes, next((r for r in existing.routes if r.channel == data.channel), None)
                       if existing else None)
        current = existing.prices if existing else Prices()
        prices = _image_prices(data.image_prices, Prices(
            input_per_1m=_price(data.input_per_1m, "input_per_1m", current.input_per_1m),
            output_per_1m=_price(data.output_per_1m, "output_per_1m", current.output_per_1m),
            cached_input_per_1m=_price(data.cached_input_per_1m, "cached_input_per_1m",
                                       current.cached_input_per_1m),
            cache_write_per_1m=_price(data.cache_write_per_1m, "cache_write_per_1m", current.cache_write_per_1m),
            per_image=_price(data.per_image, "per_image", current.per_image),
            image_prices=current.image_prices,
        ))
        kind = data.kind or (existing.kind if existing else ModelKind.IMAGE if prices.per_image else ModelKind.CHAT)
        if kind is ModelKind.IMAGE and existing is None and data.per_image is None:
            # It is also the price of a request that names no quality or size.
            raise InvalidRequest("A new image model needs per_image, the price of one image of the default "
                                 "quality and size (standard, 1024x1024).", param="per_image")
        pass_through = _pass_through(data.pass_through, kind)
        fallbacks = self._fallbacks(data.name, data.fallbacks)
        max_output = data.max_output_tokens or (existing.max_output_tokens if existing else None)
        model = ModelEntry(
            name=data.name,
            kind=kind,
            prices=prices,
            routes=(*routes, route) if existing else (route,),
            context_window=data.context_window or (existing.context_window if existing else None),
            # Every chat model has an output cap, which the gateway holds for and sends upstream.
            max_output_tokens=max_output or (DEFAULT_MAX_OUTPUT_TOKENS if kind is ModelKind.CHAT else None),
            use_case=existing.use_case if existing else "",
            timeout_s=data.timeout_s or (existing.timeout_s if existing else None),
            owned_by=existing.owned_by if existing else "tokenway",
            cap_field=data.cap_field or (existing.cap_field if existing else default_cap_field(data.channel)),
            pass_through=pass_through if pass_through is not None else (existing.pass_through if existing else ()),
            fallbacks=fallbacks if fallbacks is not None else (existing.fallbacks if existing else ()),
        )
        self._catalog_repo.put_model(model)
        self._catalog.invalidate()
        return model

    def _fallbacks(self, name: str, given: list[str] | None) -> tuple[str, ...] | None:
        if given is None:
            return None
        fallbacks = self._catalog.known_models(given, param="fallbacks")
        if name in fallbacks:
            raise InvalidRequest(f"The model `{name}` cannot be its own fallback.", param="fallbacks")
        return fallbacks

    def _existing_model(self, name: str) -> ModelEntry | None:
        _, models, _ = self._catalog_repo.load()
        return next((m for m in models if m.name == name), BUILTIN_MODELS.get(name))

    def credit(self, account_id: str, data: CreditInput) -> Credited:
        """Credit the wallet, once per reference (a fresh one when none is given)."""
        amount = parse_usd(data.amount_usd, "amount_usd")
        if amount == 0:
            raise InvalidRequest("amount_usd must be greater than zero.", param="amount_usd")
        reference = data.reference or f"operator-{uuid.uuid4().hex}"
        return self._wallet.credit(account_id, amount, reference, LedgerKind.ADJUSTMENT, data.note or "operator credit")

    def wallet(self, account_id: str) -> Balance:
        self._account(account_id)
        return self._wallets.balance(account_id)

    def create_key(self, account_id: str, data: KeyCreate) -> CreatedKey:
        return self._key_manager.create(self._account(account_id), data)

    def add_group(self, data: GroupInput) -> Group:
        """Create or replace a plan."""
        try:
            ppm = parse_multiplier(data.multiplier)
        except ValueError as exc:
            raise InvalidRequest(f"{exc}.", param="multiplier") from None
        current = self._catalog.group(data.name)
        group = Group(data.name, ppm, self._catalog.known_models(data.models), data.description)
        if current is not None:  # a plan replaced keeps its request limits (set on their own)
            group = replace(group, limits=current.limits, model_limits=current.model_limits)
        self._catalog_repo.put_group(group)
        self._catalog.invalidate()
        return group

    def set_limits(self, name: str, data: LimitsInput) -> Group:
        """Set a plan's request limits per key, on all its models or on `data.model`."""
        group = self._catalog.group(name)
        if group is None:
            raise NotFound(f"No group `{name}`.", param="name")
        limits = Limits(data.rpm, data.tpm, data.concurrency)
        if data.model is None:
            group = replace(group, limits=limits)
        else:
            [model] = self._catalog.known_models([data.model], param="model")
            per_model = {**dict(group.model_limits), model: limits}
            group = replace(group, model_limits=tuple(sorted(
                ((m, lim) for m, lim in per_model.items() if not lim.unlimited), key=lambda pair: pair[0])))
        self._catalog_repo.put_group(group)
        self._catalog.invalidate()
        return group

    def groups(self) -> list[Group]:
        return self._catalog.groups()

    def accounts(self, search: str | None) -> list[Account]:
        return self._accounts.list(search or None)

    def change_account(self, account_id: str, changes: AccountChanges) -> Account:
        """Disable or enable an account (its keys stop or start working), set its plans or its role.
        Keys on a plan the account no longer has are refused by the relay from the next request."""
        self._account(account_id)
        if changes.groups is not None:
            unknown = [name for name in changes.groups if self._catalog.group(name) is None]
            if unknown:
                raise InvalidRequest(f"Unknown group `{unknown[0]}`.", param="groups")
            self._accounts.set_groups(account_id, tuple(dict.fromkeys(changes.groups)))
        if changes.default_plan is not None:
            self._accounts.set_default_plan(account_id, changes.default_plan)
        if changes.status is not None:
            self._accounts.set_status(account_id, changes.status)
        if changes.role is not None:
            self._accounts.set_role(account_id, changes.role)
        return self._account(account_id)

    def account_keys(self, account_id: str) -> list[ApiKey]:
        self._account(account_id)
        return self._key_manager.list(account_id)

    def revoke_key(self, account_id: str, key_id: str) -> None:
        """Revoke one of the account's keys; 404 naming the account or the key when either is unknown."""
        self._key_manager.revoke(self._account(account_id).account_id, key_id)

    def _account(self, account_id: str) -> Account:
        account = self._accounts.get(account_id)
        if account is None:
            raise NotFound(f"No account `{account_id}`.", param="account_id")
        return account
