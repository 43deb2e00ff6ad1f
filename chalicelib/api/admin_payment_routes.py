"""The operator's side of payments (behind the admin token or an admin's session): top-up
settings, orders, refunds, adjustments, redemption codes and reconciliation."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from chalice import Blueprint, Response

from chalicelib.api.console import operator_request
from chalicelib.api.http import json_response, openai_errors
from chalicelib.api.render import credit_json
from chalicelib.api.render_payments import code_json, difference_json, options_json, order_json
from chalicelib.api.wallet_routes import order_status, page_limit, query
from chalicelib.core.errors import InvalidRequest, NotFound
from chalicelib.core.validation import parse

if TYPE_CHECKING:
    from chalicelib.deps import Gateway

admin_payment_routes = Blueprint(__name__)


def _authorized(*, with_body: bool = True) -> tuple[Gateway, Any]:
    return operator_request(admin_payment_routes.current_request, with_body=with_body)


@admin_payment_routes.route("/admin/topup-settings", methods=["GET"])
@openai_errors
def topup_settings() -> Response:
    gateway, _ = _authorized()
    return json_response(options_json(gateway.topups.options()))


@admin_payment_routes.route("/admin/topup-settings", methods=["PUT"])
@openai_errors
def put_topup_settings() -> Response:
    from chalicelib.payments.tiers import TopupSettingsInput

    gateway, body = _authorized()
    gateway.topups.set_settings(parse(TopupSettingsInput, body).settings())
    return json_response(options_json(gateway.topups.options()))


@admin_payment_routes.route("/admin/topups", methods=["GET"])
@openai_errors
def list_topups() -> Response:
    gateway, _ = _authorized()
    request = admin_payment_routes.current_request
    page = gateway.topups.list(account_id=query(request, "account_id"), status=order_status(request),
                               limit=page_limit(request), cursor=query(request, "cursor"))
    return json_response({"data": [order_json(order, operator=True) for order in page.orders],
                          "next_cursor": page.cursor})


@admin_payment_routes.route("/admin/topups/{order_id}", methods=["GET"])
@openai_errors
def get_topup(order_id: str) -> Response:
    gateway, _ = _authorized()
    return json_response(order_json(gateway.topups.find(order_id), operator=True))


@admin_payment_routes.route("/admin/topups/{order_id}/confirm", methods=["POST"])
@openai_errors
def confirm_topup(order_id: str) -> Response:
    """Check a pending order with the provider now (credited if paid)."""
    gateway, _ = _authorized(with_body=False)
    return json_response(order_json(gateway.topups.refresh(gateway.topups.find(order_id)), operator=True))


@admin_payment_routes.route("/admin/topups/{order_id}/review", methods=["POST"])
@openai_errors
def review_topup(order_id: str) -> Response:
    from chalicelib.admin.payments import ReviewInput

    gateway, body = _authorized()
    note = parse(ReviewInput, body).note
    return json_response(order_json(gateway.topups.mark_reviewed(order_id, note), operator=True))


@admin_payment_routes.route("/admin/topups/{order_id}/refund", methods=["POST"])
@openai_errors
def refund_topup(order_id: str) -> Response:
    from chalicelib.admin.payments import RefundInput
    from chalicelib.payments.tiers import parse_cents

    gateway, body = _authorized()
    command = parse(RefundInput, body)
    cents = parse_cents(command.amount_usd, "amount_usd") if command.amount_usd is not None else None
    return json_response(order_json(gateway.reversals.refund(order_id, cents, command.reason), operator=True))


@admin_payment_routes.route("/admin/accounts/{account_id}/adjust", methods=["POST"])
@openai_errors
def adjust_wallet(account_id: str) -> Response:
    from chalicelib.admin.payments import AdjustmentInput

    gateway, body = _authorized()
    command = parse(AdjustmentInput, body)
    adjusted = gateway.wallet.adjust(account_id, command.units(), command.reason, command.reference_or_new())
    return json_response(credit_json(account_id, adjusted))


@admin_payment_routes.route("/admin/codes", methods=["POST"])
@openai_errors
def create_codes() -> Response:
    from chalicelib.payments.codes import CodeCreate

    gateway, body = _authorized()
    made = gateway.codes.create(parse(CodeCreate, body))
    # The codes are in this answer only: no cache may keep it.
    return json_response({"data": [{"code": code, **code_json(record)} for code, record in made]}, status=201,
                         headers={"Cache-Control": "no-store"})


@admin_payment_routes.route("/admin/codes", methods=["GET"])
@openai_errors
def list_codes() -> Response:
    gateway, _ = _authorized()
    codes = gateway.codes.list(query(admin_payment_routes.current_request, "batch"))
    return json_response({"data": [code_json(code) for code in codes]})


@admin_payment_routes.route("/admin/codes/{code_id}/disable", methods=["POST"])
@openai_errors
def disable_code(code_id: str) -> Response:
    gateway, _ = _authorized(with_body=False)
    code = gateway.codes.disable(code_id)
    if code is None:
        raise NotFound(f"No redemption code `{code_id}`.", param="code_id")
    return json_response(code_json(code))


@admin_payment_routes.route("/admin/payments/reconcile", methods=["GET"])
@openai_errors
def reconcile() -> Response:
    from chalicelib.payments.reconcile import reconcile as differences

    gateway, _ = _authorized()
    request = admin_payment_routes.current_request
    since, until = _time(query(request, "from"), "from"), _time(query(request, "to"), "to")
    if since >= until:
        raise InvalidRequest("from must be before to.", param="from", code="invalid_value")
    found = differences(gateway.topups.provider, gateway.payments, since, until)
    return json_response({"from": since, "to": until, "data": [difference_json(d) for d in found]})


def _time(text: str | None, name: str) -> int:
    """An ISO 8601 date or time (UTC unless it names a zone) as epoch seconds."""
    from datetime import UTC

    if not text:
        raise InvalidRequest(f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"{name} must be an ISO 8601 date or time, e.g. 2026-11-01.", param=name,
                             code="invalid_value") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())
