"""Reconciliation: the provider's paid checkout sessions of a period against the orders credited.

Each difference names the order and session and what disagrees:
- `not_credited`: paid at the provider, the order still pending or expired here (`topup
  confirm` applies it);
- `unknown_order`: paid at the provider for no order of ours;
- `in_review`: paid, held for review (amount, currency or mode disagreed);
- `amount_differs`: the order credited, for another amount than the session's;
- `not_paid_at_provider`: credited here with no paid session at the provider in the period.
"""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.core.payments import OrderStatus, TopupOrder
from chalicelib.providers.payment_port import PaymentProvider
from chalicelib.storage.ports import PaymentRepo

_CREDITED = {OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED, OrderStatus.DISPUTED}


@dataclass(frozen=True)
class Difference:
    kind: str
    order_id: str | None
    session_id: str | None
    detail: str


def reconcile(provider: PaymentProvider, payments: PaymentRepo, since_s: int, until_s: int) -> list[Difference]:
    """Every difference between the provider's paid sessions created in [since_s, until_s) and the
    orders created then."""
    differences = []
    seen: set[str] = set()
    for facts in provider.paid_sessions(since_s, until_s):
        order = payments.get_order(facts.order_id) if facts.order_id else None
        if order is None:
            differences.append(Difference("unknown_order", facts.order_id, facts.session_id,
                                          f"paid {facts.amount_total} {facts.currency} for no known order"))
            continue
        seen.add(order.order_id)
        if order.status in (OrderStatus.PENDING, OrderStatus.EXPIRED):
            differences.append(Difference("not_credited", order.order_id, facts.session_id,
                                          f"paid at the provider, {order.status} here"))
        elif order.status == OrderStatus.REVIEW:
            differences.append(Difference("in_review", order.order_id, facts.session_id,
                                          order.review_reason or "held for review"))
        elif facts.amount_total != order.pay_cents:
            differences.append(Difference("amount_differs", order.order_id, facts.session_id,
                                          f"paid {facts.amount_total} cents, credited for {order.pay_cents}"))
    for order in _orders_created(payments, since_s * 1000, until_s * 1000):
        if order.status in _CREDITED and order.order_id not in seen:
            differences.append(Difference("not_paid_at_provider", order.order_id, order.session_id,
                                          f"{order.status} here, no paid session at the provider"))
    return differences


def _orders_created(payments: PaymentRepo, since_ms: int, until_ms: int) -> list[TopupOrder]:
    """Orders created in [since_ms, until_ms), read newest first until older ones."""
    found, cursor = [], None
    while True:
        page = payments.list_orders(limit=100, cursor=cursor)
        for order in page.orders:
            if order.created_at < since_ms:
                return found
            if order.created_at < until_ms:
                found.append(order)
        if page.cursor is None:
            return found
        cursor = page.cursor
