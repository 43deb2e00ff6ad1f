"""Money going back to the payer: refunds and disputes of a paid top-up.

    paid ── refund (cumulative R of P cents) ──► debit the refunded share of the order's credit,
    │                                            bonus included: credit × R / P less what earlier
    │                                            refunds debited (so repeated, partial and
    │                                            out-of-order events add up to the same total);
    │                                            partially_refunded while R < P, then refunded
    └── dispute opened ──► disputed: the order's credit still in the wallet (up to what is
            │               available) is frozen, and the account's keys are suspended
            ├── won  ──► the frozen credit is available again; the keys work again
            └── lost ──► the order's credit (less refunds) is debited, frozen credit first;
                         refunded

A debit larger than the wallet leaves it at zero and records the rest as a debt, which the
next credits pay first (WalletMove). Each step is conditional on the order's version.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from chalicelib.core.domain import LedgerEntry, LedgerKind
from chalicelib.core.errors import Conflict, InvalidRequest
from chalicelib.core.payments import OrderStatus, TopupOrder, WalletMove
from chalicelib.payments.orders import Step, change
from chalicelib.payments.tiers import usd
from chalicelib.payments.topups import Topups
from chalicelib.storage.ports import PaymentRepo, WalletRepo

log = logging.getLogger(__name__)

# The order's states in which its credit is in the customer's hands.
_CREDITED = frozenset({OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.DISPUTED})
# A dispute closed in the customer's favour (an inquiry closed without a chargeback is one too).
_WON = frozenset({"won", "warning_closed"})


class Reversals:
    def __init__(self, payments: PaymentRepo, wallets: WalletRepo, topups: Topups, *,
                 now_ms: Callable[[], int]) -> None:
        self._payments = payments
        self._wallets = wallets
        self._topups = topups
        self._now_ms = now_ms

    def order_of_payment(self, payment_intent: str | None) -> TopupOrder | None:
        """The order a payment paid. If its checkout was not seen yet (events arrive in any order),
        the provider is asked which session it paid, and that session applied first."""
        if not payment_intent:
            return None
        order = self._payments.order_by_payment(payment_intent)
        if order is not None:
            return order
        for facts in self._topups.provider.sessions_for_payment(payment_intent):
            order = self._topups.apply(facts)
            if order is not None:
                return order
        return None

    def refund(self, order_id: str, amount_cents: int | None, reason: str) -> TopupOrder:
        """The operator's refund: asked of the provider, then debited as the provider counts it."""
        order = self._topups.find(order_id)
        if order.status not in (OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED) or not order.payment_intent:
            raise Conflict(f"Top-up order `{order_id}` is {order.status}: only a paid order can be refunded.",
                           param="order_id", code="order_not_refundable")
        left = order.pay_cents - order.refunded_cents
        if amount_cents is not None and not 0 < amount_cents <= left:
            raise InvalidRequest(f"amount_usd must be more than 0 and at most the {usd(left)} USD not yet refunded.",
                                 param="amount_usd", code="invalid_value")
        # One refund per state of the order: two operators (or a retried request) refunding the order as
        # they both read it send the same key, and the provider refunds once.
        refunded = self._topups.provider.refund(
            order.payment_intent, amount_cents, reason=reason, order_id=order.order_id,
            idempotency_key=f"refund-{order.order_id}-{order.refunded_cents}-{amount_cents or 'rest'}")
        return self.refunded(order, refunded, reason=reason)

    def refunded(self, order: TopupOrder, refunded_cents: int, *, reason: str | None = None) -> TopupOrder:
        """The provider says `refunded_cents` of the order's payment are refunded, in all."""
        return change(self._payments, order, lambda current: self._refund_step(current, refunded_cents, reason))

    def _refund_step(self, order: TopupOrder, refunded_cents: int, reason: str | None) -> Step:
        refunded_cents = min(refunded_cents, order.pay_cents)
        if refunded_cents <= order.refunded_cents:
            return None  # this refund (or a later one) was applied before
        now = self._now_ms()
        changes: dict[str, object] = {"refunded_cents": refunded_cents, "updated_at": now}
        if order.status not in _CREDITED:
            # Nothing was credited (in review, or not paid here): the refund is only recorded.
            return changes, None
        target = order.credit_units * refunded_cents // order.pay_cents
        debit = target - order.refunded_units
        changes["refunded_units"] = target
        if order.status != OrderStatus.DISPUTED:
            changes["status"] = _refund_status(order.pay_cents, refunded_cents)
        if debit <= 0:
            return changes, None
        log.info("top-up %s: %s USD refunded in all, debiting %d units", order.order_id, usd(refunded_cents), debit)
        entry = LedgerEntry(
            account_id=order.account_id, entry_id=f"{now:013d}#refund#{order.order_id}#{refunded_cents}",
            kind=LedgerKind.REFUND, amount=-debit, created_at=now, reference=order.order_id,
            note=reason or f"refund of {usd(refunded_cents)} USD of the top-up of {usd(order.pay_cents)} USD")
        return changes, WalletMove(order.account_id, entries=(entry,))

    def dispute_opened(self, order: TopupOrder, dispute_id: str) -> TopupOrder:
        return change(self._payments, order, lambda current: self._open_step(current, dispute_id))

    def _open_step(self, order: TopupOrder, dispute_id: str) -> Step:
        if order.dispute_id == dispute_id or order.dispute_status == "open":
            return None  # opened (or opened and closed) before
        now = self._now_ms()
        changes: dict[str, object] = {"dispute_id": dispute_id, "dispute_status": "open", "updated_at": now}
        if order.status not in _CREDITED:
            return changes, None  # nothing was credited: nothing to freeze
        # What is left of the order's credit, as far as the wallet still has it.
        freeze = min(order.credit_units - order.refunded_units, self._wallets.balance(order.account_id).available)
        log.warning("top-up %s disputed (%s): freezing %d units, suspending %s's keys", order.order_id, dispute_id,
                    freeze, order.account_id)
        changes.update(status=OrderStatus.DISPUTED, frozen_units=freeze)
        return changes, WalletMove(order.account_id, freeze=freeze, disputes=1)

    def dispute_closed(self, order: TopupOrder, dispute_id: str, status: str) -> TopupOrder:
        if order.dispute_id is None:
            order = self.dispute_opened(order, dispute_id)  # the closing came first: open it, then close
        return change(self._payments, order, lambda current: self._close_step(current, dispute_id, status))

    def _close_step(self, order: TopupOrder, dispute_id: str, status: str) -> Step:
        if order.dispute_id != dispute_id or order.dispute_status != "open":
            return None  # closed before, or another dispute's
        now = self._now_ms()
        won = status in _WON
        changes: dict[str, object] = {"dispute_status": "won" if won else "lost", "frozen_units": 0,
                                      "updated_at": now}
        if order.status != OrderStatus.DISPUTED:
            return changes, None  # nothing was frozen or suspended for it
        if won:
            log.info("top-up %s: dispute %s won; %d units available again", order.order_id, dispute_id,
                     order.frozen_units)
            changes["status"] = _refund_status(order.pay_cents, order.refunded_cents)
            return changes, WalletMove(order.account_id, unfreeze=order.frozen_units, disputes=-1)
        debit = order.credit_units - order.refunded_units
        log.warning("top-up %s: dispute %s lost; debiting %d units", order.order_id, dispute_id, debit)
        changes.update(status=OrderStatus.REFUNDED, refunded_units=order.credit_units,
                       refunded_cents=order.pay_cents)
        entries = (LedgerEntry(
            account_id=order.account_id, entry_id=f"{now:013d}#dispute#{order.order_id}#{dispute_id}",
            kind=LedgerKind.DISPUTE, amount=-debit, created_at=now, reference=dispute_id,
            note=f"dispute lost on the top-up of {usd(order.pay_cents)} USD"),) if debit > 0 else ()
        return changes, WalletMove(order.account_id, unfreeze=order.frozen_units, entries=entries, disputes=-1)


def _refund_status(pay_cents: int, refunded_cents: int) -> OrderStatus:
    """A credited order's state by how much of its payment is refunded."""
    if refunded_cents >= pay_cents:
        return OrderStatus.REFUNDED
    return OrderStatus.PARTIALLY_REFUNDED if refunded_cents else OrderStatus.PAID
