"""The payment provider's webhook: verified first, then applied once, then acknowledged.

    verify the signature over the raw body (nothing is read before; no secret: 503, never
    "skip verification")
      → an event handled before: 200, nothing done
      → an event type we do not act on: 200, ignored
      → apply it (each handler is idempotent: orders change conditionally on their version)
      → remember the event id (30 days: longer than the provider's 3 days of retries)
      → 200
    Any failure before the effect is committed answers 5xx, so the provider delivers again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from chalicelib.core.payments import PaymentEvent, PaymentFacts, TopupOrder
from chalicelib.payments.reversals import Reversals
from chalicelib.payments.topups import Topups
from chalicelib.storage.ports import PaymentRepo

log = logging.getLogger(__name__)

EVENT_RETENTION_MS = 30 * 24 * 3600 * 1000


class PaymentWebhooks:
    def __init__(self, payments: PaymentRepo, topups: Topups, reversals: Reversals, *,
                 now_ms: Callable[[], int]) -> None:
        self._payments = payments
        self._topups = topups
        self._reversals = reversals
        self._now_ms = now_ms
        self._handlers: dict[str, Callable[[PaymentEvent], None]] = {
            "checkout.session.completed": self._session,
            "checkout.session.async_payment_succeeded": self._session,
            "checkout.session.async_payment_failed": self._session,
            "checkout.session.expired": self._session,
            "charge.refunded": self._charge_refunded,
            "charge.dispute.created": self._dispute_created,
            "charge.dispute.closed": self._dispute_closed,
        }

    def handle(self, body: bytes, signature: str | None) -> str:
        """Verify and apply one delivery; what became of it ("applied", "duplicate", "ignored")."""
        event = self._topups.provider.verify_event(body, signature)
        if self._payments.event_handled(event.event_id):
            log.info("payment event %s (%s) handled before", event.event_id, event.type)
            return "duplicate"
        handler = self._handlers.get(event.type)
        if handler is None:
            log.info("payment event %s of type %s ignored", event.event_id, event.type)
            return "ignored"
        handler(event)
        now = self._now_ms()
        self._payments.record_event(event.event_id, event.type, now, now + EVENT_RETENTION_MS)
        return "applied"

    def _session(self, event: PaymentEvent) -> None:
        session = event.data
        facts = PaymentFacts(
            session_id=session.get("id", ""),
            order_id=session.get("client_reference_id") or (session.get("metadata") or {}).get("order_id"),
            # An async payment's completion says "unpaid" until its own success event.
            paid=session.get("payment_status") == "paid" and event.type != "checkout.session.async_payment_failed",
            amount_total=session.get("amount_total"),
            currency=session.get("currency"),
            livemode=bool(event.livemode),
            payment_intent=_id(session.get("payment_intent")),
            expired=event.type in ("checkout.session.expired", "checkout.session.async_payment_failed"),
        )
        self._topups.apply(facts)

    def _charge_refunded(self, event: PaymentEvent) -> None:
        charge = event.data
        order = self._order(event, charge.get("payment_intent"))
        if order is not None:
            self._reversals.refunded(order, int(charge.get("amount_refunded") or 0))

    def _dispute_created(self, event: PaymentEvent) -> None:
        dispute = event.data
        order = self._order(event, dispute.get("payment_intent"))
        if order is not None:
            self._reversals.dispute_opened(order, dispute["id"])

    def _dispute_closed(self, event: PaymentEvent) -> None:
        dispute = event.data
        order = self._order(event, dispute.get("payment_intent"))
        if order is not None:
            self._reversals.dispute_closed(order, dispute["id"], str(dispute.get("status")))

    def _order(self, event: PaymentEvent, payment_intent: object) -> TopupOrder | None:
        order = self._reversals.order_of_payment(_id(payment_intent))
        if order is None:
            log.warning("payment event %s (%s) is for a payment of no known order; ignored", event.event_id,
                        event.type)
        return order


def _id(value: object) -> str | None:
    """An object's id, whether the provider sent the id or the expanded object."""
    if isinstance(value, dict):
        return value.get("id")
    return value if isinstance(value, str) else None
