"""The customer's wallet (`/api/wallet…`, a console session), checkout's return page, and the
payment provider's webhook (`/webhooks/stripe`)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from chalice import Blueprint, Response

from chalicelib.api.console import console_request
from chalicelib.api.http import get_gateway, json_response, openai_errors, public_base
from chalicelib.api.render import balance_json
from chalicelib.api.render_payments import ledger_line_json, options_json, order_json
from chalicelib.core.errors import InvalidRequest
from chalicelib.core.money import units_to_usd
from chalicelib.core.validation import parse

if TYPE_CHECKING:
    from chalice.app import Request

    from chalicelib.core.domain import Principal
    from chalicelib.deps import Gateway

wallet_routes = Blueprint(__name__)

RETURN_PATH = "/wallet/topup-return"


def _session(*, with_body: bool = False) -> tuple[Gateway, Principal, Any]:
    return console_request(wallet_routes.current_request, with_body=with_body)


def query(request: Request, name: str) -> str | None:
    return (request.query_params or {}).get(name)


def page_limit(request: Request, default: int = 50, maximum: int = 200) -> int:
    """The `limit` query parameter: a whole number from 1 to `maximum`."""
    text = query(request, "limit")
    if text is None:
        return default
    if not text.isdigit() or not 1 <= int(text) <= maximum:
        raise InvalidRequest(f"limit must be a whole number from 1 to {maximum}.", param="limit",
                             code="invalid_value")
    return int(text)


def order_status(request: Request) -> str | None:
    from chalicelib.core.payments import OrderStatus

    status = query(request, "status")
    if status is not None and status not in set(OrderStatus):
        raise InvalidRequest(f"status must be one of {', '.join(OrderStatus)}.", param="status",
                             code="invalid_value")
    return status


@wallet_routes.route("/api/wallet", methods=["GET"])
@openai_errors
def wallet() -> Response:
    gateway, principal, _ = _session()
    return json_response({"account_id": principal.account_id,
                          **balance_json(gateway.wallet.balance(principal.account_id))})


@wallet_routes.route("/api/wallet/topup-options", methods=["GET"])
@openai_errors
def topup_options() -> Response:
    gateway, _, _ = _session()
    return json_response(options_json(gateway.topups.options()))


@wallet_routes.route("/api/wallet/topups", methods=["POST"])
@openai_errors
def create_topup() -> Response:
    from chalicelib.payments.topups import TopupCreate

    gateway, principal, body = _session(with_body=True)
    command = parse(TopupCreate, body)
    base = public_base(gateway, wallet_routes.current_request)
    settings = gateway.settings
    order = gateway.topups.create(
        gateway.accounts.profile(principal), command,
        success_url=settings.topup_success_url or f"{base}{RETURN_PATH}?order_id={{ORDER_ID}}",
        cancel_url=settings.topup_cancel_url or f"{base}{RETURN_PATH}?order_id={{ORDER_ID}}&cancelled=1",
    )
    return json_response(order_json(order), status=201)


@wallet_routes.route("/api/wallet/topups", methods=["GET"])
@openai_errors
def list_topups() -> Response:
    gateway, principal, _ = _session()
    request = wallet_routes.current_request
    page = gateway.topups.list(account_id=principal.account_id, status=order_status(request),
                               limit=page_limit(request), cursor=query(request, "cursor"))
    return json_response({"data": [order_json(order) for order in page.orders], "next_cursor": page.cursor})


@wallet_routes.route("/api/wallet/topups/{order_id}", methods=["GET"])
@openai_errors
def get_topup(order_id: str) -> Response:
    gateway, principal, _ = _session()
    return json_response(order_json(gateway.topups.get(principal.account_id, order_id)))


@wallet_routes.route("/api/wallet/ledger", methods=["GET"])
@openai_errors
def ledger() -> Response:
    gateway, principal, _ = _session()
    request = wallet_routes.current_request
    page = gateway.wallet.ledger(principal.account_id, limit=page_limit(request), cursor=query(request, "cursor"))
    return json_response({"data": [ledger_line_json(line) for line in page.lines], "next_cursor": page.cursor})


@wallet_routes.route("/api/wallet/redeem", methods=["POST"])
@openai_errors
def redeem() -> Response:
    from chalicelib.payments.codes import RedeemInput

    gateway, principal, body = _session(with_body=True)
    redeemed = gateway.codes.redeem(principal.account_id, parse(RedeemInput, body))
    assert redeemed.code is not None and redeemed.balance is not None
    return json_response({"credited_usd": units_to_usd(redeemed.code.value_units),
                          "code": redeemed.code.hint, **balance_json(redeemed.balance)})


@wallet_routes.route("/webhooks/stripe", methods=["POST"])
@openai_errors
def stripe_webhook() -> Response:
    """Stripe's deliveries: 2xx only once the event's effect is committed; any failure is a 5xx, and
    Stripe delivers again."""
    request = wallet_routes.current_request
    gateway = get_gateway()
    outcome = gateway.webhooks.handle(request.raw_body, request.headers.get("stripe-signature"))
    return json_response({"received": True, "outcome": outcome})


@wallet_routes.route(RETURN_PATH, methods=["GET"])
@openai_errors
def topup_return() -> Response:
    """Where checkout sends the customer back: the order is checked with the provider at once (so the
    credit is there before the webhook), and its state shown. The order id is the only input; the
    page shows the order's amounts and state, nothing of the account."""
    gateway = get_gateway()
    request = wallet_routes.current_request
    order_id = query(request, "order_id") or ""
    order = gateway.topups.refresh_if_reachable(gateway.topups.find(order_id))
    return Response(_return_page(order_json(order), cancelled=query(request, "cancelled") == "1"),
                    status_code=200, headers={"Content-Type": "text/html; charset=utf-8",
                                              "Cache-Control": "no-store"})


def _return_page(order: dict[str, Any], *, cancelled: bool) -> str:
    status = order["status"]
    if status in ("paid", "partially_refunded", "refunded", "disputed"):
        headline = f"Payment received: {order['credit_usd']} USD credited"
    elif cancelled and status == "pending":
        headline = "Payment cancelled: nothing was charged"
    elif status == "pending":
        headline = "Payment pending: this page shows the credit once the payment clears"
    elif status == "review":
        headline = "Payment received: the operator is checking it before it is credited"
    else:
        headline = "This top-up was not paid"
    rows = "".join(f"<tr><th>{html.escape(label)}</th><td>{html.escape(str(order[key]))}</td></tr>"
                   for label, key in (("Order", "order_id"), ("Status", "status"), ("Paid (USD)", "pay_usd"),
                                      ("Credit (USD)", "credit_usd"), ("Bonus (USD)", "bonus_usd")))
    refresh = '<meta http-equiv="refresh" content="3">' if status == "pending" and not cancelled else ""
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">{refresh}"
            f"<title>Tokenway top-up</title><meta name=\"viewport\" content=\"width=device-width\"></head>"
            f"<body style=\"font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto\">"
            f"<h1>{html.escape(headline)}</h1><table>{rows}</table>"
            # Relative, so it holds under a path prefix too: from /wallet/topup-return to /#/topup/<order>.
            f"<p><a href=\"../#/topup/{html.escape(order['order_id'])}\">Back to the console</a></p></body></html>")
