"""Typed values passed between the layers. Amounts are integer units (see money.py)."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any

from chalicelib.core.money import PPM, units_to_usd


class ModelKind(enum.StrEnum):
    CHAT = "chat"
    EMBEDDING = "embedding"
    IMAGE = "image"


DEFAULT_IMAGE_QUALITY = "standard"
DEFAULT_IMAGE_SIZE = "1024x1024"


@dataclass(frozen=True)
class ImagePrice:
    """The price of one image of a quality and size, in units."""

    quality: str
    size: str
    price: int


@dataclass(frozen=True)
class Prices:
    """List prices in units: per 1M tokens, or per image."""

    input_per_1m: int = 0
    output_per_1m: int = 0
    cached_input_per_1m: int | None = None  # None: cached input costs the full input price
    # One image of the default quality and size (`standard`, `1024x1024`), which is
    # also what a request naming neither asks for.
    per_image: int = 0
    # Images of other qualities and sizes; a combination not listed has no price.
    image_prices: tuple[ImagePrice, ...] = ()
    # Prompt tokens the provider writes to its cache (Anthropic's `cache_creation_input_tokens`),
    # which it bills above the input price. None: they cost the input price.
    cache_write_per_1m: int | None = None

    @property
    def cached_rate(self) -> int:
        return self.input_per_1m if self.cached_input_per_1m is None else self.cached_input_per_1m

    @property
    def cache_write_rate(self) -> int:
        return self.input_per_1m if self.cache_write_per_1m is None else self.cache_write_per_1m

    def image_price(self, quality: str | None, size: str | None) -> int | None:
        """The price of one image of this quality and size (None: the defaults); None if unpriced."""
        quality, size = quality or DEFAULT_IMAGE_QUALITY, size or DEFAULT_IMAGE_SIZE
        if (quality, size) == (DEFAULT_IMAGE_QUALITY, DEFAULT_IMAGE_SIZE):
            return self.per_image
        return next((entry.price for entry in self.image_prices if (entry.quality, entry.size) == (quality, size)),
                    None)


@dataclass(frozen=True)
class Channel:
    """An upstream endpoint and the credential to call it."""

    name: str
    base_url: str
    api_key: str = field(repr=False)
    kind: str = "openai"
    # Headers sent with every request to this channel (NAME, VALUE), after the gateway's own.
    # Not secrets, so stored plainly; never logged nor shown in a repr all the same.
    extra_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    # The operator's word on the channel's circuit breaker (see relay/health.py): "auto"
    # lets it follow the channel's failures, "open" takes the channel out, "closed" keeps it in.
    state: str = "auto"


CHANNEL_STATES = ("auto", "open", "closed")


@dataclass(frozen=True)
class Route:
    """One way to serve a model: a channel and the model id that channel knows it by. The relay
    tries a model's routes by `priority` (highest first), picking by `weight` among equals."""

    channel: str
    upstream_model: str
    priority: int = 0
    weight: int = 1


# The two fields in which chat providers read the output cap.
CAP_FIELDS = ("max_tokens", "max_completion_tokens")


@dataclass(frozen=True)
class ModelEntry:
    """A public model name with its prices, limits and the channels that serve it, in order."""

    name: str
    kind: ModelKind
    prices: Prices
    routes: tuple[Route, ...] = ()
    context_window: int | None = None
    max_output_tokens: int | None = None  # every chat model has one (see the catalog)
    use_case: str = ""
    timeout_s: float | None = None
    owned_by: str = "tokenway"
    # The field in which the model's provider reads the output cap (one of CAP_FIELDS).
    cap_field: str = "max_tokens"
    # Request fields that change the provider's price, which this model's prices
    # cover and which are therefore passed on; any other such field is refused.
    pass_through: tuple[str, ...] = ()
    # The models tried in turn when this one fails retryably, for a request naming only it.
    fallbacks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Account:
    """A customer or operator of the console. The wallet's counters live beside it in storage."""

    account_id: str
    email: str  # lower case; unique across accounts
    created_at: int  # epoch ms
    status: str = "active"  # "active" | "disabled"
    role: str = "customer"  # "customer" | "admin"
    # `scrypt$n$r$p$salt$hash` (see passwords.py); None: the account cannot log in.
    password_hash: str | None = field(default=None, repr=False)
    # A session is valid only while it carries the account's current epoch;
    # changing the password moves the epoch on, ending every session at once.
    session_epoch: int = 0
    groups: tuple[str, ...] = ()  # the plans the operator gave the account
    # Whether the `default` plan is among the account's plans too. True for every
    # account until the operator confines it to the plans it was given.
    default_plan: bool = True


class KeyStatus(enum.StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"
    REVOKED = "revoked"


@dataclass(frozen=True)
class ApiKey:
    """A stored key: its hash, settings, limits and counters, never its secret."""

    key_id: str
    key_hash: str
    account_id: str
    name: str
    created_at: int  # epoch ms
    hint: str
    group: str | None = None  # None: the default group
    status: str = KeyStatus.ACTIVE
    expires_at: int | None = None  # epoch ms
    quota: int | None = None  # lifetime spend cap in units
    models: tuple[str, ...] = ()  # allowed public model names; empty: all the group allows
    cidrs: tuple[str, ...] = ()  # allowed client networks; empty: any
    # The key's own request limits, below its plan's (None: the plan's alone); see Limits.
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    concurrency_limit: int | None = None
    # Counters, kept by the same transactions that hold and settle.
    spent: int = 0
    reserved: int = 0  # held by requests in flight
    quota_left: int | None = None  # quota - spent - reserved, while a quota is set
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    last_used_at: int | None = None  # epoch ms

    def allows(self, model: str) -> bool:
        return not self.models or model in self.models

    @property
    def own_limits(self) -> Limits:
        return Limits(self.rpm_limit, self.tpm_limit, self.concurrency_limit)

    @property
    def plan(self) -> str:
        """The key's plan (group): the one it names, else the default."""
        return self.group or DEFAULT_GROUP


DEFAULT_GROUP = "default"


@dataclass(frozen=True)
class Limits:
    """Request limits of one key (alone, or on one model): requests and tokens per minute, and
    requests in flight at once. None: unlimited."""

    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None

    @property
    def unlimited(self) -> bool:
        return self.rpm is None and self.tpm is None and self.concurrency is None

    def capped(self, other: Limits) -> Limits:
        """The lower of each limit of the two."""
        return Limits(*(a if b is None else b if a is None else min(a, b)
                        for a, b in ((self.rpm, other.rpm), (self.tpm, other.tpm),
                                     (self.concurrency, other.concurrency))))

    def as_dict(self) -> dict[str, int | None]:
        return {"rpm": self.rpm, "tpm": self.tpm, "concurrency": self.concurrency}


@dataclass(frozen=True)
class Group:
    """A plan: a price multiplier, the models its keys may use, and each key's request limits
    (alone, and per model in `model_limits`)."""

    name: str
    multiplier_ppm: int = PPM  # parts per million: 1 200 000 is ×1.2
    models: tuple[str, ...] = ()  # empty: every model
    description: str = ""
    limits: Limits = Limits()
    model_limits: tuple[tuple[str, Limits], ...] = ()  # (model, limits), sorted by model

    def allows(self, model: str) -> bool:
        return not self.models or model in self.models

    def model_limit(self, model: str) -> Limits:
        return dict(self.model_limits).get(model, Limits())

    def model_limits_dict(self) -> dict[str, dict[str, int | None]]:
        """`model_limits` as stored: {model: {rpm, tpm, concurrency}}."""
        return {model: limits.as_dict() for model, limits in self.model_limits}


def model_limits_from(values: dict[str, Any] | None) -> tuple[tuple[str, Limits], ...]:
    """Stored per-model limits ({model: {rpm, tpm, concurrency}}) as Group.model_limits; unlimited ones dropped."""
    limits = ((model, Limits(*(None if v.get(name) is None else int(v[name])
                               for name in ("rpm", "tpm", "concurrency"))))
              for model, v in (values or {}).items())
    return tuple(sorted(((model, lim) for model, lim in limits if not lim.unlimited), key=lambda pair: pair[0]))


@dataclass(frozen=True)
class Balance:
    """A wallet's counters. Its ledger sums to `net`: available + held + frozen - debt."""

    available: int
    held: int
    status: str = "active"  # the account's
    # Running total of what settlements could not charge (beyond the hold, more than
    # the wallet had or the key's quota allowed): the operator's loss on this account.
    shortfall: int = 0
    # Credit of disputed payments, set aside until the dispute closes.
    frozen: int = 0
    # What a debit (a refund, a lost dispute, an adjustment) could not take because the
    # wallet had less: the next credits pay it first. While it is owed, nothing is held.
    debt: int = 0
    # Payment disputes open on the account: while there is one, its keys are suspended.
    disputes: int = 0

    @property
    def total(self) -> int:
        """What the wallet owns: spendable, reserved by requests in flight, and frozen."""
        return self.available + self.held + self.frozen

    @property
    def net(self) -> int:
        """What the account's ledger sums to: what it owns less what it owes."""
        return self.total - self.debt


@dataclass(frozen=True)
class Hold:
    """Money reserved for one request until it is settled or released."""

    request_id: str
    account_id: str
    key_hash: str
    amount: int
    created_at: int  # epoch ms
    expires_at: int  # epoch ms
    key_quota: bool = False  # whether the amount also counts against the key's quota
    plan: str = DEFAULT_GROUP  # the key's plan, which the account must still have


class LedgerKind(enum.StrEnum):
    """What moved a wallet's balance: the ledger entry's `kind`. Credits are positive, debits negative."""

    TOPUP = "topup"  # a paid top-up order (its pay amount)
    BONUS = "bonus"  # a top-up tier's bonus on that order
    CHARGE = "charge"  # a relay request, settled
    REFUND = "refund"  # a payment refunded to the payer: its share of the order's credit goes
    DISPUTE = "dispute"  # a payment dispute lost: the order's credit goes
    REDEEM = "redeem"  # a redemption code
    ADJUSTMENT = "adjustment"  # the operator's, with a reason


# The kinds a credit (money in, once per reference) may have.
CREDIT_KINDS = frozenset({LedgerKind.TOPUP, LedgerKind.BONUS, LedgerKind.REDEEM, LedgerKind.ADJUSTMENT})


@dataclass(frozen=True)
class LedgerEntry:
    """One change of a wallet's balance: positive credits, negative charges."""

    account_id: str
    # Begins with the entry's 13-digit epoch-ms time, so an account's entries sort oldest first.
    entry_id: str
    kind: str  # a LedgerKind
    amount: int
    created_at: int  # epoch ms
    request_id: str | None = None
    key_id: str | None = None
    model: str | None = None
    # Cost the wallet could not cover (charged only up to its balance).
    shortfall: int = 0
    note: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # A credit's reference (a payment event id, an operator's own): it credits once.
    reference: str | None = None


class HoldResult(enum.Enum):
    HELD = "held"
    WALLET_SHORT = "wallet_short"  # not enough available, or the account is not active
    KEY_REFUSED = "key_refused"  # the key is not active, has expired, is over its quota or is gone
    PLAN_REFUSED = "plan_refused"  # the key's plan is no longer one of its account's plans
    SUSPENDED = "suspended"  # a payment dispute is open on the account


@dataclass(frozen=True)
class Credited:
    """The outcome of a credit: its ledger entry and the balance after it. `applied` is False
    when the reference had credited before; `entry` is then that first credit's entry."""

    entry: LedgerEntry
    balance: Balance
    applied: bool


@dataclass(frozen=True)
class Settlement:
    """What settling a hold actually charged; `recorded` when the settlement's own transaction
    wrote the request's usage event (see WalletRepo.records_events)."""

    charged: int
    shortfall: int
    recorded: bool = False


@dataclass(frozen=True)
class ConsoleSession:
    """A session as stored: SHA-256 hashes of its token and CSRF token, never the tokens."""

    session_hash: str
    account_id: str
    session_epoch: int  # the account's epoch at login; the session dies when it moves on
    csrf_hash: str
    created_at: int  # epoch ms
    expires_at: int  # epoch ms


@dataclass(frozen=True)
class PasswordLink:
    """A one-time set-password link as stored: the SHA-256 of its token, never the token.
    An account has at most one; a new one replaces it."""

    account_id: str
    link_hash: str
    created_at: int  # epoch ms
    expires_at: int  # epoch ms


@dataclass(frozen=True)
class Principal:
    """Who a console request acts for, and how it proved it."""

    account_id: str
    role: str
    session_hash: str
    via_cookie: bool


@dataclass(frozen=True)
class UsageEvent:
    time: str  # ISO 8601, UTC
    request_id: str
    account_id: str | None
    key_id: str | None
    endpoint: str
    model: str | None
    channel: str | None
    stream: bool
    status: int
    error_type: str | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    images: int = 0
    cost_units: int = 0
    shortfall_units: int = 0
    latency_ms: int = 0
    ttft_ms: int | None = None

    def to_json_line(self) -> bytes:
        # Every field is a scalar: a copy of the fields, in their order, without asdict's deep copies.
        record = dict(vars(self))
        record["cost_usd"] = units_to_usd(self.cost_units)
        return (json.dumps(record, separators=(",", ":")) + "\n").encode()
