"""Usage monitoring: the customer's dashboard data, request log and CSV export (`/api/usage/…`, a
console session), the operator's over every account (`/admin/usage/…`), and the billing endpoints
third-party chat clients read with a relay key (`/v1/dashboard/billing/…`, also without `/v1`)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from chalice import Blueprint, Response

from chalicelib.api.console import console_request, operator_request
from chalicelib.api.http import get_gateway, json_response, now_ms, openai_errors
from chalicelib.api.render import iso
from chalicelib.api.render_usage import csv_lines, event_json, summary_json
from chalicelib.api.streaming import hand_off
from chalicelib.api.wallet_routes import page_limit, query
from chalicelib.core.errors import InvalidRequest
from chalicelib.core.money import UNITS_PER_USD

if TYPE_CHECKING:
    from chalice.app import Request

    from chalicelib.usage.reports import UsageQuery

usage_routes = Blueprint(__name__)


def _usage_query(request: Request) -> UsageQuery:
    from chalicelib.usage.reports import UsageQuery

    return UsageQuery(since=query(request, "from"), until=query(request, "to"), tz=query(request, "tz"),
                      granularity=query(request, "granularity"), group_by=query(request, "group_by"),
                      key_id=query(request, "key_id"), model=query(request, "model"),
                      status=query(request, "status"))


def _logs(account_id: str | None, *, operator: bool) -> Response:
    gateway = get_gateway()
    request = usage_routes.current_request
    page = gateway.usage.logs(account_id, _usage_query(request), limit=page_limit(request),
                              cursor=query(request, "cursor"))
    return json_response({"data": [event_json(event, operator=operator) for event in page.events],
                          "next_cursor": page.cursor, "as_of": iso(page.as_of)})


def _export(account_id: str | None, *, operator: bool) -> Response:
    """The log as CSV, written as it is read (streamed by a server that streams)."""
    gateway = get_gateway()
    lines = csv_lines(gateway.usage.export(account_id, _usage_query(usage_routes.current_request)),
                      operator=operator)
    headers = {"Content-Type": "text/csv; charset=utf-8",
               "Content-Disposition": 'attachment; filename="tokenway-usage.csv"', "Cache-Control": "no-store"}
    first = next(lines)  # the header line: a bad filter fails here, before any byte is sent
    if hand_off(_chain(first, lines)):
        return Response(body="", status_code=200, headers=headers)
    return Response(body=first + "".join(lines), status_code=200, headers=headers)


def _chain(first: str, rest: Any) -> Any:
    yield first
    yield from rest


@usage_routes.route("/api/usage/summary", methods=["GET"])
@openai_errors
def summary() -> Response:
    gateway, principal, _ = console_request(usage_routes.current_request)
    return json_response(summary_json(gateway.usage.summary(principal.account_id,
                                                            _usage_query(usage_routes.current_request))))


@usage_routes.route("/api/usage/logs", methods=["GET"])
@openai_errors
def logs() -> Response:
    _, principal, _ = console_request(usage_routes.current_request)
    return _logs(principal.account_id, operator=False)


@usage_routes.route("/api/usage/export.csv", methods=["GET"])
@openai_errors
def export() -> Response:
    _, principal, _ = console_request(usage_routes.current_request)
    return _export(principal.account_id, operator=False)


@usage_routes.route("/admin/usage/summary", methods=["GET"])
@openai_errors
def admin_summary() -> Response:
    gateway, _ = operator_request(usage_routes.current_request)
    request = usage_routes.current_request
    return json_response(summary_json(gateway.usage.summary(query(request, "account_id"), _usage_query(request),
                                                            operator=True)))


@usage_routes.route("/admin/usage/logs", methods=["GET"])
@openai_errors
def admin_logs() -> Response:
    operator_request(usage_routes.current_request)
    return _logs(query(usage_routes.current_request, "account_id"), operator=True)


@usage_routes.route("/admin/usage/export.csv", methods=["GET"])
@openai_errors
def admin_export() -> Response:
    operator_request(usage_routes.current_request)
    return _export(query(usage_routes.current_request, "account_id"), operator=True)


# The billing endpoints OpenAI once served and third-party chat clients still read (with the relay key).

def _relay_key() -> Any:
    gateway = get_gateway()
    return gateway, gateway.keys.authenticate(usage_routes.current_request.headers.get("authorization"),
                                              now_ms=now_ms(), fresh=True)


@usage_routes.route("/v1/dashboard/billing/subscription", methods=["GET"])
@usage_routes.route("/dashboard/billing/subscription", methods=["GET"])
@openai_errors
def billing_subscription() -> Response:
    """The wallet's balance as the limit: what the key's account can still spend."""
    gateway, key = _relay_key()
    balance = float(Decimal(gateway.wallet.balance(key.account_id).available) / UNITS_PER_USD)
    return json_response({"object": "billing_subscription", "has_payment_method": True,
                          "soft_limit_usd": balance, "hard_limit_usd": balance, "system_hard_limit_usd": balance,
                          "access_until": 0})


@usage_routes.route("/v1/dashboard/billing/usage", methods=["GET"])
@usage_routes.route("/dashboard/billing/usage", methods=["GET"])
@openai_errors
def billing_usage() -> Response:
    """The account's spend from `start_date` to `end_date` (UTC dates, end excluded; default: this
    month), in cents as OpenAI reported it."""
    gateway, key = _relay_key()
    request = usage_routes.current_request
    today = datetime.fromtimestamp(now_ms() / 1000, tz=UTC).date()
    start = _date(query(request, "start_date"), "start_date") or today.replace(day=1)
    end = _date(query(request, "end_date"), "end_date") or (
        date(today.year + (today.month == 12), today.month % 12 + 1, 1))
    span = gateway.usage.range(_as_query(start, end))
    cents = Decimal(gateway.usage.spend(key.account_id, span.since_ms, span.until_ms)) * 100 / UNITS_PER_USD
    return json_response({"object": "list", "total_usage": float(cents)})


def _date(text: str | None, name: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(f"{name} must be a date such as 2026-11-01.", param=name, code="invalid_value") from None


def _as_query(start: date, end: date) -> UsageQuery:
    from chalicelib.usage.reports import UsageQuery

    return UsageQuery(since=start.isoformat(), until=end.isoformat(), tz="UTC")
