"""The operator's admin API (used by `python -m chalicelib.cli`), behind the admin token."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Response

from chalicelib.api.http import ANY_CONTENT_TYPE, json_response, openai_errors, read_json
from chalicelib.deps import Gateway, get_gateway
from chalicelib.domain import Balance, ModelEntry
from chalicelib.money import units_to_usd

admin_routes = Blueprint(__name__)


def _authorized() -> tuple[Gateway, Any]:
    """The gateway and the request's JSON body (None for GET), once the admin token checks out."""
    gateway = get_gateway()
    request = admin_routes.current_request
    gateway.admin.authorize(request.headers.get("authorization"))
    body = None
    if request.method != "GET":
        body = read_json(request.raw_body, max_bytes=gateway.settings.max_body_bytes)
    return gateway, body


def _wallet(account_id: str, balance: Balance) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "balance_usd": units_to_usd(balance.total),
        "held_usd": units_to_usd(balance.held),
        "available_usd": units_to_usd(balance.available),
    }


def _model(model: ModelEntry) -> dict[str, Any]:
    prices = model.prices
    return {
        "name": model.name,
        "kind": model.kind.value,
        "routes": [{"channel": r.channel, "upstream_model": r.upstream_model} for r in model.routes],
        "input_per_1m": units_to_usd(prices.input_per_1m),
        "cached_input_per_1m": units_to_usd(prices.cached_rate),
        "output_per_1m": units_to_usd(prices.output_per_1m),
        "per_image": units_to_usd(prices.per_image),
        "context_window": model.context_window,
        "max_output_tokens": model.max_output_tokens,
        "timeout_s": model.timeout_s,
    }


@admin_routes.route("/admin/channels", methods=["POST"], content_types=ANY_CONTENT_TYPE)
@openai_errors
def add_channel() -> Response:
    gateway, body = _authorized()
    channel = gateway.admin.add_channel(body)
    return json_response({"name": channel.name, "base_url": channel.base_url, "kind": channel.kind}, status=201)


@admin_routes.route("/admin/models", methods=["POST"], content_types=ANY_CONTENT_TYPE)
@openai_errors
def add_model() -> Response:
    gateway, body = _authorized()
    return json_response(_model(gateway.admin.add_model(body)), status=201)


@admin_routes.route("/admin/accounts", methods=["POST"], content_types=ANY_CONTENT_TYPE)
@openai_errors
def create_account() -> Response:
    gateway, body = _authorized()
    account = gateway.admin.create_account(body)
    return json_response({"account_id": account.account_id, "email": account.email}, status=201)


@admin_routes.route("/admin/accounts/{account_id}/credit", methods=["POST"], content_types=ANY_CONTENT_TYPE)
@openai_errors
def credit_wallet(account_id: str) -> Response:
    gateway, body = _authorized()
    return json_response(_wallet(account_id, gateway.admin.credit(account_id, body)))


@admin_routes.route("/admin/accounts/{account_id}/wallet", methods=["GET"])
@openai_errors
def show_wallet(account_id: str) -> Response:
    gateway, _ = _authorized()
    return json_response(_wallet(account_id, gateway.admin.wallet(account_id)))


@admin_routes.route("/admin/accounts/{account_id}/keys", methods=["POST"], content_types=ANY_CONTENT_TYPE)
@openai_errors
def create_key(account_id: str) -> Response:
    gateway, body = _authorized()
    created = gateway.admin.create_key(account_id, body)
    key = created.key
    return json_response({"key": created.secret, "key_id": key.key_id, "account_id": key.account_id,
                          "name": key.name, "group": key.group, "hint": key.hint}, status=201)


@admin_routes.route("/admin/holds/sweep", methods=["POST"], content_types=ANY_CONTENT_TYPE)
@openai_errors
def sweep_holds() -> Response:
    gateway = get_gateway()
    gateway.admin.authorize(admin_routes.current_request.headers.get("authorization"))
    return json_response({"released": gateway.billing.sweep()})
