"""Top-ups: an order for what the customer was shown, a checkout at the payment provider, and
one way for its payment to become credit.

An order's timeline:

    create()    order written `pending` first, with the credit snapshotted (tiers may change
                later; the order keeps what was shown); then the provider's checkout session
                is made for exactly its pay amount and attached
       │
       ├── fulfil(facts)     the provider says the session is paid — from the webhook
       │                     (`checkout.session.completed`, `…async_payment_succeeded`) or from the
       │                     customer's return (the session read back from the provider), whichever
       │                     comes first:
       │        amount, currency and mode match:  pending → paid, and in the same transaction the
       │                                          wallet gets a `topup` entry (the pay amount) and a
       │                                          `bonus` entry (the rest), paying any debt first
       │        anything disagrees:               pending → review, nothing credited
       └── expire()          the session ended unpaid: pending → expired

Each step is conditional on the order's version (orders.change), so of racing deliveries one
credits and the others find the order paid.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from chalicelib.core.domain import Account, LedgerEntry, LedgerKind
from chalicelib.core.errors import Conflict, NotFound, PaymentProviderError, PaymentsNotConfigured
from chalicelib.core.payments import (
    CENT_UNITS,
    OrderPage,
    OrderStatus,
    PaymentFacts,
    TopupOrder,
    TopupSettings,
    WalletMove,
)
from chalicelib.payments.orders import Step, change
from chalicelib.payments.tiers import DEFAULT_SETTINGS, check_amount, credit_for, parse_cents, usd
from chalicelib.providers.payment_port import PaymentProvider
from chalicelib.storage.ports import PaymentRepo

log = logging.getLogger(__name__)

MAX_PAGE = 100


class TopupCreate(BaseModel):
    """A customer's top-up: the amount to pay, in USD (a tier's, or any within the range)."""

    model_config = ConfigDict(extra="forbid")

    # A decimal string ("20", "57.50") or a JSON number; parse_cents checks it is whole cents.
    amount_usd: StrictStr | StrictInt | StrictFloat = Field(description="USD to pay, e.g. \"20\" or \"57.50\"")


@dataclass(frozen=True)
class TopupOptions:
    settings: TopupSettings
    methods: tuple[str, ...]
    enabled: bool  # a payment provider is configured


class Topups:
    def __init__(self, payments: PaymentRepo, provider: PaymentProvider | None, *,
                 now_ms: Callable[[], int], new_id: Callable[[], str] | None = None) -> None:
        self._payments = payments
        self._provider = provider
        self._now_ms = now_ms
        self._new_id = new_id or (lambda: f"top_{uuid.uuid4().hex}")

    @property
    def provider(self) -> PaymentProvider:
        if self._provider is None:
            raise PaymentsNotConfigured("Top-ups are not available: no payment provider is configured.")
        return self._provider

    def settings(self) -> TopupSettings:
        return self._payments.topup_settings() or DEFAULT_SETTINGS

    def set_settings(self, settings: TopupSettings) -> None:
        """The operator's new tiers and range; orders made before keep what they were shown."""
        self._payments.put_topup_settings(settings)
        log.info("top-up settings changed: %d tiers, %d to %d cents", len(settings.tiers), settings.min_cents,
                 settings.max_cents)

    def options(self) -> TopupOptions:
        return TopupOptions(self.settings(), self._provider.methods if self._provider else (),
                            enabled=self._provider is not None)

    def create(self, account: Account, command: TopupCreate, *, success_url: str, cancel_url: str) -> TopupOrder:
        """A pending order for the amount, with its checkout session; InvalidRequest naming
        `amount_usd` for an amount outside the operator's range or not in whole cents."""
        provider = self.provider
        settings = self.settings()
        pay_cents = parse_cents(command.amount_usd, "amount_usd")
        check_amount(settings, pay_cents)
        credit = credit_for(settings, pay_cents)
        now = self._now_ms()
        order = TopupOrder(
            order_id=self._new_id(), account_id=account.account_id, status=OrderStatus.PENDING,
            pay_cents=pay_cents, credit_units=credit, bonus_units=credit - pay_cents * CENT_UNITS,
            created_at=now, updated_at=now, provider=provider.name, livemode=provider.livemode,
        )
        # Written before the provider hears of it: a payment can never arrive for an order we lack.
        self._payments.create_order(order)
        urls = {"success_url": success_url.replace("{ORDER_ID}", order.order_id),
                "cancel_url": cancel_url.replace("{ORDER_ID}", order.order_id)}
        try:
            checkout = provider.create_checkout(order, email=account.email, **urls)
        except PaymentProviderError:
            change(self._payments, order, lambda current: ({"status": OrderStatus.EXPIRED, "updated_at": now,
                                                            "note": "the checkout could not be created"}, None)
                   if current.status == OrderStatus.PENDING and current.session_id is None else None)
            raise
        log.info("top-up %s: %s USD for %s, checkout %s", order.order_id, usd(pay_cents), account.account_id,
                 checkout.session_id)
        return change(self._payments, order, lambda current: (
            {"session_id": checkout.session_id, "checkout_url": checkout.url, "expires_at": checkout.expires_at},
            None) if current.session_id is None else None)

    def get(self, account_id: str, order_id: str) -> TopupOrder:
        """The customer's order; a pending one is first checked with the provider (the return from
        checkout lands here, so funds arrive before the webhook does)."""
        order = self._payments.get_order(order_id)
        if order is None or order.account_id != account_id:
            raise NotFound(f"No top-up order `{order_id}`.", param="order_id")
        return self.refresh_if_reachable(order)

    def refresh_if_reachable(self, order: TopupOrder) -> TopupOrder:
        """`refresh`, or the order as stored while the provider cannot be reached (the webhook, which
        the provider retries, still credits it)."""
        try:
            return self.refresh(order)
        except PaymentProviderError as exc:
            log.warning("top-up %s: could not ask the provider about it (%s); shown as stored", order.order_id,
                        exc.message)
            return order

    def find(self, order_id: str) -> TopupOrder:
        order = self._payments.get_order(order_id)
        if order is None:
            raise NotFound(f"No top-up order `{order_id}`.", param="order_id")
        return order

    def list(self, *, account_id: str | None = None, status: str | None = None, limit: int = 50,
             cursor: str | None = None) -> OrderPage:
        return self._payments.list_orders(account_id=account_id, status=status, limit=min(limit, MAX_PAGE),
                                          cursor=cursor)

    def refresh(self, order: TopupOrder) -> TopupOrder:
        """A pending order as the provider sees its session now: paid (credited), expired, or still pending."""
        if order.status != OrderStatus.PENDING or order.session_id is None or self._provider is None:
            return order
        return self.apply(self._provider.session(order.session_id), order) or order

    def apply(self, facts: PaymentFacts, order: TopupOrder | None = None) -> TopupOrder | None:
        """What a checkout session says, applied to its order: credit, review or expiry. None for a
        session naming no order of ours (logged)."""
        order = order or (self._payments.get_order(facts.order_id) if facts.order_id else None)
        if order is None:
            log.warning("checkout session %s names no known order (%s); ignored", facts.session_id, facts.order_id)
            return None
        if order.session_id is not None and facts.session_id != order.session_id:
            log.warning("checkout session %s is not order %s's (%s); ignored", facts.session_id, order.order_id,
                        order.session_id)
            return order
        if facts.paid:
            return self.fulfil(order, facts)
        if facts.expired:
            return change(self._payments, order, self._expire)
        return order

    def fulfil(self, order: TopupOrder, facts: PaymentFacts) -> TopupOrder:
        """pending → paid with its credit, once; or → review if the payment disagrees with the order."""
        return change(self._payments, order, lambda current: self._fulfilment(current, facts))

    def _fulfilment(self, order: TopupOrder, facts: PaymentFacts) -> Step:
        if order.status != OrderStatus.PENDING:
            return None  # paid (or reviewed, refunded, …) before: a repeated delivery changes nothing
        now = self._now_ms()
        paid = {"payment_intent": facts.payment_intent, "paid_at": now, "updated_at": now,
                "session_id": facts.session_id}
        disagreement = _disagreement(order, facts)
        if disagreement:
            log.error("top-up %s needs review: %s; nothing credited", order.order_id, disagreement)
            return {**paid, "status": OrderStatus.REVIEW, "review_reason": disagreement}, None
        entries = [LedgerEntry(
            account_id=order.account_id, entry_id=f"{now:013d}#topup#{order.order_id}", kind=LedgerKind.TOPUP,
            amount=order.pay_cents * CENT_UNITS, created_at=now, reference=order.order_id,
            note=f"top-up of {usd(order.pay_cents)} USD")]
        if order.bonus_units:
            entries.append(LedgerEntry(
                account_id=order.account_id, entry_id=f"{now:013d}#topup#{order.order_id}#bonus",
                kind=LedgerKind.BONUS, amount=order.bonus_units, created_at=now, reference=order.order_id,
                note=f"bonus on the top-up of {usd(order.pay_cents)} USD"))
        log.info("top-up %s paid: crediting %d units to %s", order.order_id, order.credit_units, order.account_id)
        return {**paid, "status": OrderStatus.PAID}, WalletMove(order.account_id, entries=tuple(entries))

    def _expire(self, order: TopupOrder) -> Step:
        if order.status != OrderStatus.PENDING:
            return None
        return {"status": OrderStatus.EXPIRED, "updated_at": self._now_ms()}, None

    def expire(self, order: TopupOrder) -> TopupOrder:
        return change(self._payments, order, self._expire)

    def mark_reviewed(self, order_id: str, note: str) -> TopupOrder:
        """The operator looked at an order in review (and settled it outside, e.g. by an adjustment)."""
        order = self.find(order_id)
        if order.status != OrderStatus.REVIEW:
            raise Conflict(f"Top-up order `{order_id}` is {order.status}, not in review.", param="order_id",
                           code="order_not_in_review")
        now = self._now_ms()
        return change(self._payments, order, lambda current: (
            {"reviewed_at": now, "updated_at": now, "note": note}, None))


def _disagreement(order: TopupOrder, facts: PaymentFacts) -> str | None:
    """Why a paid session does not pay this order, or None: amount, currency and mode must match."""
    if facts.amount_total != order.pay_cents:
        return f"paid {facts.amount_total} cents, the order is for {order.pay_cents}"
    if (facts.currency or "").lower() != order.currency:
        return f"paid in {facts.currency}, the order is in {order.currency}"
    if facts.livemode != order.livemode:
        return f"paid in {'live' if facts.livemode else 'test'} mode, the order was made in " \
               f"{'live' if order.livemode else 'test'} mode"
    return None
