"""The payment provider through Stripe's official library (Stripe itself, or the local demo speaking its API).

A top-up's life as Stripe sees it, and the call that shows each step to the gateway:

    create_checkout ── session open, unpaid (expires_at: 24 h on, less 5 min for clock skew)
        ├── the customer pays ── session complete, paid ──────── checkout.session.completed
        │       (or complete, unpaid, then paid later) ───────── …async_payment_succeeded
        │       ├── refund(pi, cents | None) ── charge.amount_refunded grows ── charge.refunded
        │       └── the bank disputes ── charge.dispute.created ── charge.dispute.closed (won | lost)
        └── nobody pays ── session expired ───────────────────── checkout.session.expired

Webhook events are hints until verify_event has checked their signature; session() and
paid_sessions() read the same facts back from the API, for the order's page and for
reconciliation. Every failure of the library (refused, unreachable, a 5xx after its retries)
leaves here as PaymentProviderError: the services credit nothing on it. Messages never carry
the secret key nor anything of a webhook's body.

`stripe` is imported when a StripePayments is built, not when this module is: the gateway's
cold start does not pay for a library only top-ups use.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from chalicelib.core.errors import InvalidSignature, PaymentProviderError, PaymentsNotConfigured
from chalicelib.core.payments import CENT_UNITS, Checkout, PaymentEvent, PaymentFacts, TopupOrder

if TYPE_CHECKING:
    import stripe

# Stripe accepts a checkout session's expires_at between 30 minutes and 24 hours after its creation
# by Stripe's clock; a customer may come back to the page later the same day. Five minutes short of
# 24 h so a clock running a little ahead of Stripe's is not refused.
CHECKOUT_TTL_S = 24 * 3600 - 300
WEBHOOK_TOLERANCE_S = 300  # a signed event older (or newer) than this is refused: replays stay short-lived
MAX_NETWORK_RETRIES = 2  # the library retries connection failures, 409 and 5xx, with idempotency keys on POSTs
TIMEOUT_S = 20.0
_PAGE = 100  # Stripe's largest list page


class StripePayments:
    """PaymentProvider over `stripe.StripeClient` with an HTTPX transport."""

    name = "stripe"

    def __init__(self, secret_key: str, *, webhook_secret: str | None, methods: tuple[str, ...] = ("card",),
                 api_base: str | None = None, timeout_s: float = TIMEOUT_S,
                 now_s: Callable[[], float] = time.time) -> None:
        import stripe

        self._stripe = stripe
        self._webhook_secret = webhook_secret
        self._now_s = now_s
        self.methods = tuple(methods)
        self.livemode = secret_key.startswith(("sk_live_", "rk_live_"))
        # httpx is already the gateway's pinned HTTP stack (the relay's); its sync client keeps
        # connections alive between calls, where the library's default would pick `requests`
        # when some other package happens to install it.
        http_client = stripe.HTTPXClient(timeout=timeout_s, allow_sync_methods=True)
        base = {"api": api_base.rstrip("/")} if api_base else None
        self._client = stripe.StripeClient(secret_key, base_addresses=base, http_client=http_client,
                                           max_network_retries=MAX_NETWORK_RETRIES)

    # -- checkout

    def create_checkout(self, order: TopupOrder, *, success_url: str, cancel_url: str,
                        email: str | None) -> Checkout:
        """A hosted checkout session charging exactly the order's pay amount, naming the order."""
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": [{
                "price_data": {"currency": order.currency, "unit_amount": order.pay_cents,
                               "product_data": {"name": _product_name(order)}},
                "quantity": 1,
            }],
            # The order is named three ways so that a session, its events and its payment intent
            # (refunds, disputes) each lead back to it.
            "client_reference_id": order.order_id,
            "metadata": {"order_id": order.order_id},
            "payment_intent_data": {"metadata": {"order_id": order.order_id}},
            "payment_method_types": list(self.methods),
            "success_url": success_url,
            "cancel_url": cancel_url,
            "expires_at": int(self._now_s()) + CHECKOUT_TTL_S,
        }
        if email:
            params["customer_email"] = email
        session = self._call("create a checkout session", self._client.v1.checkout.sessions.create, params)
        if not session.get("url") or not session.get("id"):
            raise PaymentProviderError("The payment provider returned a checkout session without its id or URL.")
        return Checkout(session_id=session["id"], url=session["url"], expires_at=int(session["expires_at"]) * 1000)

    # -- reading sessions

    def session(self, session_id: str) -> PaymentFacts:
        """What the provider says of a checkout session now."""
        return _facts(self._call("read a checkout session", self._client.v1.checkout.sessions.retrieve,
                                 session_id))

    def sessions_for_payment(self, payment_intent: str) -> list[PaymentFacts]:
        """The checkout sessions paid by one payment (to find the order of a refund or dispute)."""
        return list(self._list("list a payment's checkout sessions",
                               {"payment_intent": payment_intent, "limit": _PAGE}))

    def paid_sessions(self, since_s: int, until_s: int) -> Iterator[PaymentFacts]:
        """Every paid checkout session created in [since_s, until_s), for reconciliation."""
        params = {"created": {"gte": since_s, "lt": until_s}, "status": "complete", "limit": _PAGE}
        # `complete` includes sessions whose asynchronous payment has not arrived yet: only paid ones count.
        return (facts for facts in self._list("list paid checkout sessions", params) if facts.paid)

    def _list(self, doing: str, params: dict) -> Iterator[PaymentFacts]:
        page = self._call(doing, self._client.v1.checkout.sessions.list, params)
        pages = page.auto_paging_iter()
        while True:
            # The next page is fetched inside next(): its failures are mapped like the first page's.
            session = self._call(doing, next, pages, None)
            if session is None:
                return
            yield _facts(session)

    # -- refunds

    def refund(self, payment_intent: str, amount_cents: int | None, *, reason: str, order_id: str,
               idempotency_key: str) -> int:
        """Refund the payment (all of what is left, or `amount_cents`); the payment's refunded total in cents."""
        params: dict[str, Any] = {"payment_intent": payment_intent, "metadata": {"order_id": order_id,
                                                                                 "reason": reason}}
        if amount_cents is not None:
            params["amount"] = amount_cents
        # Stripe answers a repeated key with the first refund: a retried or doubled request refunds once.
        refund = self._call("refund a payment", self._client.v1.refunds.create, params,
                            {"idempotency_key": idempotency_key})
        charge_id = refund.get("charge")
        if isinstance(charge_id, dict):
            charge_id = charge_id.get("id")
        if not charge_id:
            raise PaymentProviderError("The payment provider's refund names no charge.")
        # The charge's cumulative total, not this refund's amount: a refund made elsewhere (the
        # provider's dashboard) counts too, and the services store the total as the provider says it.
        charge = self._call("read a refunded charge", self._client.v1.charges.retrieve, charge_id)
        return int(charge["amount_refunded"])

    # -- webhooks

    def verify_event(self, body: bytes, signature: str | None) -> PaymentEvent:
        """The event the body carries once its signature verifies within 300 s; InvalidSignature otherwise."""
        if not self._webhook_secret:
            raise PaymentsNotConfigured("Payment webhooks are not accepted: no webhook secret is configured.")
        if not signature:
            raise InvalidSignature("The payment webhook carries no Stripe-Signature header.")
        try:
            event = self._stripe.Webhook.construct_event(body, signature, self._webhook_secret,
                                                         tolerance=WEBHOOK_TOLERANCE_S)
        except self._stripe.SignatureVerificationError as exc:
            raise InvalidSignature(_signature_refusal(str(exc))) from None
        except ValueError:  # not UTF-8, or signed but not JSON (the library parses after verifying)
            raise InvalidSignature("The payment webhook's body is not a JSON event.") from None
        plain = event.to_dict()
        data = plain.get("data")
        obj = data.get("object") if isinstance(data, dict) else None
        if not isinstance(plain.get("id"), str) or not isinstance(plain.get("type"), str) \
                or not isinstance(obj, dict):
            raise InvalidSignature("The payment webhook's body is not a Stripe event (id, type, data.object).")
        return PaymentEvent(event_id=plain["id"], type=plain["type"], livemode=bool(plain.get("livemode")),
                            created=int(plain.get("created") or 0), data=obj)

    # -- errors

    def _call(self, doing: str, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)`, its result as plain dicts, and every library failure as PaymentProviderError."""
        try:
            result = fn(*args)
        except self._stripe.StripeError as exc:
            raise PaymentProviderError(_failure(doing, exc)) from exc
        if isinstance(result, self._stripe.ListObject):
            return result
        return result.to_dict() if isinstance(result, self._stripe.StripeObject) else result


def _product_name(order: TopupOrder) -> str:
    if order.bonus_units > 0:
        return f"Tokenway credit ${_dollars(order.credit_units)} (incl. ${_dollars(order.bonus_units)} bonus)"
    return f"Tokenway credit ${_dollars(order.credit_units)}"


def _dollars(units: int) -> str:
    """Units as dollars for a label: whole cents, trailing `.00` dropped (`$20`, `$20.50`)."""
    cents = units // CENT_UNITS
    whole, rest = divmod(cents, 100)
    return f"{whole:,}" if rest == 0 else f"{whole:,}.{rest:02d}"


def _facts(session: dict) -> PaymentFacts:
    metadata = session.get("metadata") or {}
    order_id = session.get("client_reference_id") or metadata.get("order_id")
    intent = session.get("payment_intent")
    if isinstance(intent, dict):  # expanded
        intent = intent.get("id")
    amount = session.get("amount_total")
    return PaymentFacts(session_id=session["id"], order_id=order_id,
                        paid=session.get("payment_status") == "paid",
                        amount_total=int(amount) if amount is not None else None,
                        currency=session.get("currency"), livemode=bool(session.get("livemode")),
                        payment_intent=intent, expired=session.get("status") == "expired")


def _failure(doing: str, exc: stripe.StripeError) -> str:
    """What failed, in words safe to log and return: the library's message names no key (it masks them)."""
    import stripe

    status = f" (HTTP {exc.http_status})" if exc.http_status else ""
    if isinstance(exc, stripe.AuthenticationError):
        return f"The payment provider refused our credentials trying to {doing}{status}."
    if isinstance(exc, stripe.APIConnectionError):
        return f"The payment provider could not be reached to {doing}."
    said = (exc.user_message or "").strip()
    return f"The payment provider failed to {doing}{status}" + (f": {said}" if said else ".")


def _signature_refusal(reason: str) -> str:
    """Why the signature failed, from the library's reason (which never quotes the body)."""
    lowered = reason.lower()
    if "timestamp outside the tolerance" in lowered:
        return "The payment webhook's signature is too old (signed more than 300 s ago)."
    if "matching the expected signature" in lowered:
        return "The payment webhook's signature does not match its body and our webhook secret."
    return "The payment webhook's Stripe-Signature header is malformed."

