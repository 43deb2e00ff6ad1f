"""Typed values of top-ups, payments and redemption codes. Amounts: cents where a payment
provider counts them (what the customer pays), units everywhere else (see money.py)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from chalicelib.core.domain import Balance, LedgerEntry

CENT_UNITS = 10**7  # one US cent in units (10^-9 USD)


class OrderStatus(enum.StrEnum):
    """A top-up order's state.

        pending ──┬── paid ──┬── partially_refunded ── refunded
                  │          └── disputed ──┬── paid (won)
                  │                          └── refunded (lost)
                  ├── expired (the checkout session ended unpaid)
                  └── review (the provider's amount, currency or mode disagreed: nothing credited)
    """

    PENDING = "pending"
    PAID = "paid"
    EXPIRED = "expired"
    REFUNDED = "refunded"
    PARTIALLY_REFUNDED = "partially_refunded"
    DISPUTED = "disputed"
    REVIEW = "review"


@dataclass(frozen=True)
class TopupTier:
    """Pay `pay_cents`, get `credit_units` (the pay amount and its bonus)."""

    pay_cents: int
    credit_units: int

    @property
    def bonus_units(self) -> int:
        return self.credit_units - self.pay_cents * CENT_UNITS


@dataclass(frozen=True)
class TopupSettings:
    """The operator's top-up offer: tiers by pay amount (ascending), the range of a custom amount."""

    tiers: tuple[TopupTier, ...]
    min_cents: int = 500
    max_cents: int = 1_000_000


@dataclass(frozen=True)
class TopupOrder:
    """A top-up as the customer was shown it, and what became of it. `version` moves on with every
    change (each change is conditional on the version it read)."""

    order_id: str
    account_id: str
    status: str  # an OrderStatus
    pay_cents: int
    credit_units: int  # pay and bonus, snapshotted when the order was made
    bonus_units: int
    created_at: int  # epoch ms
    currency: str = "usd"
    provider: str = "stripe"
    livemode: bool = False  # the provider mode the order was made in; a payment in the other is reviewed
    version: int = 0
    updated_at: int = 0
    session_id: str | None = None  # the provider's checkout session
    checkout_url: str | None = None
    expires_at: int | None = None  # when the checkout session ends unpaid
    payment_intent: str | None = None
    paid_at: int | None = None
    refunded_cents: int = 0  # as the provider last said (cumulative)
    refunded_units: int = 0  # debited from the wallet for refunds so far
    dispute_id: str | None = None
    dispute_status: str | None = None  # "open", "won", "lost"
    frozen_units: int = 0  # set aside while the dispute is open
    review_reason: str | None = None
    reviewed_at: int | None = None
    note: str | None = None


@dataclass(frozen=True)
class WalletMove:
    """One atomic change of a wallet, in this order: `unfreeze` frozen credit back to available
    (paying any debt first); the `entries`, each written to the ledger (a credit pays debt
    first, then adds to available; a debit takes from available, and what available lacks
    becomes debt); `freeze` units from available into frozen (they must be available);
    `disputes` added to the count of open disputes."""

    account_id: str
    entries: tuple[LedgerEntry, ...] = ()
    unfreeze: int = 0
    freeze: int = 0
    disputes: int = 0


@dataclass(frozen=True)
class PaymentFacts:
    """What the payment provider says about a checkout session."""

    session_id: str
    order_id: str | None  # from the session's client_reference_id / metadata
    paid: bool
    amount_total: int | None  # cents
    currency: str | None
    livemode: bool
    payment_intent: str | None
    expired: bool = False


@dataclass(frozen=True)
class Checkout:
    """A checkout session made for an order."""

    session_id: str
    url: str
    expires_at: int  # epoch ms


@dataclass(frozen=True)
class PaymentEvent:
    """A verified provider event, reduced to what the gateway acts on."""

    event_id: str
    type: str
    livemode: bool
    created: int  # epoch s
    # The event's object (a checkout session, a charge, a dispute) as plain values.
    data: dict = field(repr=False)


class RedeemResult(enum.Enum):
    REDEEMED = "redeemed"
    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"
    DISABLED = "disabled"


@dataclass(frozen=True)
class RedemptionCode:
    """A code as stored: the hash of its secret, never the secret."""

    code_hash: str
    code_id: str  # public, for the operator's listing
    hint: str  # the code's first and last characters
    value_units: int
    created_at: int  # epoch ms
    expires_at: int | None = None  # epoch ms
    status: str = "active"  # "active" | "used" | "disabled"
    batch: str | None = None
    note: str | None = None
    redeemed_by: str | None = None
    redeemed_at: int | None = None


@dataclass(frozen=True)
class LedgerLine:
    """A ledger entry as the customer reads it: with the balance after it (the ledger's running sum)."""

    entry: LedgerEntry
    balance_after: int


@dataclass(frozen=True)
class LedgerPage:
    """Entries newest first, and the cursor of the next page (None: this is the last)."""

    lines: tuple[LedgerLine, ...]
    cursor: str | None


@dataclass(frozen=True)
class OrderPage:
    orders: tuple[TopupOrder, ...]
    cursor: str | None


@dataclass(frozen=True)
class Redeemed:
    """The outcome of a redemption: why it failed, or the code's value and the balance after."""

    result: RedeemResult
    code: RedemptionCode | None = None
    balance: Balance | None = None  # when redeemed
