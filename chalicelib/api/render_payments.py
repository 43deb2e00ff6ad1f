"""How top-up orders, ledger lines, redemption codes and the top-up offer look in JSON answers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.api.render import iso
from chalicelib.core.money import cents_to_usd as usd
from chalicelib.core.money import units_to_usd

if TYPE_CHECKING:
    from chalicelib.core.payments import LedgerLine, RedemptionCode, TopupOrder
    from chalicelib.payments.reconcile import Difference
    from chalicelib.payments.topups import TopupOptions


def order_json(order: TopupOrder, *, operator: bool = False) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "order_id": order.order_id,
        "status": order.status,
        "pay_usd": usd(order.pay_cents),
        "credit_usd": units_to_usd(order.credit_units),
        "bonus_usd": units_to_usd(order.bonus_units),
        "currency": order.currency.upper(),
        "provider": order.provider,
        "checkout_url": order.checkout_url if order.status == "pending" else None,
        "created_at": iso(order.created_at),
        "paid_at": iso(order.paid_at),
        "expires_at": iso(order.expires_at),
        "refunded_usd": usd(order.refunded_cents),
        "dispute_status": order.dispute_status,
    }
    if operator:
        shown.update(
            account_id=order.account_id, livemode=order.livemode, session_id=order.session_id,
            payment_intent=order.payment_intent, refunded_credit_usd=units_to_usd(order.refunded_units),
            frozen_usd=units_to_usd(order.frozen_units), dispute_id=order.dispute_id,
            review_reason=order.review_reason, reviewed_at=iso(order.reviewed_at), note=order.note,
        )
    return shown


def ledger_line_json(line: LedgerLine) -> dict[str, Any]:
    entry = line.entry
    return {
        "entry_id": entry.entry_id,
        "kind": entry.kind,
        "amount_usd": units_to_usd(entry.amount),
        "balance_after_usd": units_to_usd(line.balance_after),
        "reference": entry.reference or entry.request_id,
        "note": entry.note,
        "model": entry.model,
        "key_id": entry.key_id,
        "created_at": iso(entry.created_at),
    }


def code_json(code: RedemptionCode) -> dict[str, Any]:
    return {
        "code_id": code.code_id,
        "hint": code.hint,
        "value_usd": units_to_usd(code.value_units),
        "status": code.status,
        "batch": code.batch,
        "note": code.note,
        "created_at": iso(code.created_at),
        "expires_at": iso(code.expires_at),
        "redeemed_by": code.redeemed_by,
        "redeemed_at": iso(code.redeemed_at),
    }


def options_json(options: TopupOptions) -> dict[str, Any]:
    from chalicelib.payments.tiers import tier_json

    settings = options.settings
    return {
        "enabled": options.enabled,
        "currency": "USD",
        "tiers": [tier_json(tier) for tier in settings.tiers],
        "min_usd": usd(settings.min_cents),
        "max_usd": usd(settings.max_cents),
        # A custom amount gets the bonus rate of the highest tier at or below it.
        "custom_amount": True,
        "payment_methods": list(options.methods),
    }


def difference_json(difference: Difference) -> dict[str, Any]:
    return {"kind": difference.kind, "order_id": difference.order_id, "session_id": difference.session_id,
            "detail": difference.detail}
