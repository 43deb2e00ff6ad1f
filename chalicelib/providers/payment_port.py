"""What the top-up services ask of a payment provider (Stripe, or the local demo speaking its API).

The services name orders and amounts; the adapter knows the provider's API, verifies its
webhook signatures, and maps its failures to PaymentProviderError (a 502 to the caller,
never a credit). Amounts are cents, as providers count them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from chalicelib.core.payments import Checkout, PaymentEvent, PaymentFacts, TopupOrder


class PaymentProvider(Protocol):
    name: str  # "stripe"
    livemode: bool  # whether its secret key is a live one: orders are made in this mode
    methods: tuple[str, ...]  # the payment method types offered at checkout ("card", "alipay", …)

    def create_checkout(self, order: TopupOrder, *, success_url: str, cancel_url: str,
                        email: str | None) -> Checkout:
        """A hosted checkout session charging exactly the order's pay amount, naming the order."""

    def session(self, session_id: str) -> PaymentFacts:
        """What the provider says of a checkout session now."""

    def sessions_for_payment(self, payment_intent: str) -> list[PaymentFacts]:
        """The checkout sessions paid by one payment (to find the order of a refund or dispute)."""

    def paid_sessions(self, since_s: int, until_s: int) -> Iterator[PaymentFacts]:
        """Every paid checkout session created in [since_s, until_s), for reconciliation."""

    def refund(self, payment_intent: str, amount_cents: int | None, *, reason: str, order_id: str,
               idempotency_key: str) -> int:
        """Refund the payment (all of what is left, or `amount_cents`) once per `idempotency_key`: a
        repeat refunds nothing more. The payment's refunded total in cents afterwards, as the provider
        counts it."""

    def verify_event(self, body: bytes, signature: str | None) -> PaymentEvent:
        """The event the body carries, once its signature verifies with the webhook secret within
        the provider's tolerance: InvalidSignature otherwise (nothing of the body is read before),
        PaymentsNotConfigured if there is no webhook secret."""
