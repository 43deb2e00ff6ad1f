"""Typed values passed between the layers. Amounts are integer units (see money.py)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class ModelKind(enum.StrEnum):
    CHAT = "chat"
    EMBEDDING = "embedding"
    IMAGE = "image"


@dataclass(frozen=True)
class Prices:
    """List prices in units: per 1M tokens, or per image."""

    input_per_1m: int = 0
    output_per_1m: int = 0
    cached_input_per_1m: int | None = None  # None: cached input costs the full input price
    per_image: int = 0

    @property
    def cached_rate(self) -> int:
        return self.input_per_1m if self.cached_input_per_1m is None else self.cached_input_per_1m


@dataclass(frozen=True)
class Channel:
    """An upstream endpoint and the credential to call it."""

    name: str
    base_url: str
    api_key: str = field(repr=False)
    kind: str = "openai"


@dataclass(frozen=True)
class Route:
    """One way to serve a model: a channel and the model id that channel knows it by."""

    channel: str
    upstream_model: str


@dataclass(frozen=True)
class ModelEntry:
    """A public model name with its prices, limits and the channels that serve it, in order."""

    name: str
    kind: ModelKind
    prices: Prices
    routes: tuple[Route, ...] = ()
    context_window: int | None = None
    max_output_tokens: int | None = None
    use_case: str = ""
    timeout_s: float | None = None
    owned_by: str = "tokenway"


@dataclass(frozen=True)
class Account:
    account_id: str
    email: str
    created_at: int
    status: str = "active"


@dataclass(frozen=True)
class ApiKey:
    """A stored key: its hash and settings, never its secret."""

    key_id: str
    key_hash: str
    account_id: str
    name: str
    created_at: int
    hint: str
    group: str | None = None
    status: str = "active"
    spent: int = 0


@dataclass(frozen=True)
class Balance:
    available: int
    held: int

    @property
    def total(self) -> int:
        """What the wallet owns: spendable plus reserved by requests in flight."""
        return self.available + self.held


@dataclass(frozen=True)
class Hold:
    """Money reserved for one request until it is settled or released."""

    request_id: str
    account_id: str
    key_hash: str
    amount: int
    created_at: int  # epoch ms
    expires_at: int  # epoch ms


@dataclass(frozen=True)
class LedgerEntry:
    """One change of a wallet's balance: positive credits, negative charges."""

    account_id: str
    entry_id: str
    kind: str  # "credit" | "charge"
    amount: int
    created_at: int  # epoch ms
    request_id: str | None = None
    key_id: str | None = None
    model: str | None = None
    # Cost the wallet could not cover (charged only up to its balance).
    shortfall: int = 0
    note: str | None = None


@dataclass(frozen=True)
class Settlement:
    """What settling a hold actually charged."""

    charged: int
    shortfall: int
