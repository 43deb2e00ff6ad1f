"""Token Management for the logged-in customer: `/api/tokens` (a console session, not an API key), the
plans its keys may use (`/api/groups`) and their price lists (`/api/models`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalice import Blueprint, Response

from chalicelib.api.console import console_request
from chalicelib.api.http import (
    empty_response,
    json_response,
    openai_errors,
)
from chalicelib.api.render import group_json, key_json, key_usage_json, price_list_json
from chalicelib.core.validation import parse

if TYPE_CHECKING:
    from chalicelib.core.domain import Principal
    from chalicelib.deps import Gateway

token_routes = Blueprint(__name__)


def _session(*, with_body: bool = False) -> tuple[Gateway, Principal, Any]:
    return console_request(token_routes.current_request, with_body=with_body)


def _created(created: Any, status: int) -> Response:
    # The secret is in this answer only; it is never stored or shown again.
    return json_response({"key": created.secret, **key_json(created.key)}, status=status)


@token_routes.route("/api/tokens", methods=["GET"])
@openai_errors
def list_tokens() -> Response:
    gateway, principal, _ = _session()
    return json_response({"data": [key_json(key) for key in gateway.tokens.list(principal.account_id)]})


@token_routes.route("/api/tokens", methods=["POST"])
@openai_errors
def create_token() -> Response:
    from chalicelib.keys.manage import KeyCreate

    gateway, principal, body = _session(with_body=True)
    return _created(gateway.tokens.create(gateway.accounts.profile(principal), parse(KeyCreate, body)), 201)


@token_routes.route("/api/tokens/{key_id}", methods=["GET"])
@openai_errors
def get_token(key_id: str) -> Response:
    gateway, principal, _ = _session()
    return json_response(key_json(gateway.tokens.get(principal.account_id, key_id)))


@token_routes.route("/api/tokens/{key_id}", methods=["PATCH"])
@openai_errors
def update_token(key_id: str) -> Response:
    from chalicelib.keys.manage import KeyUpdate

    gateway, principal, body = _session(with_body=True)
    command = parse(KeyUpdate, body)
    return json_response(key_json(gateway.tokens.update(gateway.accounts.profile(principal), key_id, command)))


@token_routes.route("/api/tokens/{key_id}", methods=["DELETE"])
@openai_errors
def revoke_token(key_id: str) -> Response:
    gateway, principal, _ = _session()
    gateway.tokens.revoke(principal.account_id, key_id)
    return empty_response()


@token_routes.route("/api/tokens/{key_id}/regenerate", methods=["POST"])
@openai_errors
def regenerate_token(key_id: str) -> Response:
    gateway, principal, _ = _session()
    return _created(gateway.tokens.regenerate(principal.account_id, key_id), 200)


@token_routes.route("/api/tokens/{key_id}/usage", methods=["GET"])
@openai_errors
def token_usage(key_id: str) -> Response:
    gateway, principal, _ = _session()
    return json_response(key_usage_json(gateway.tokens.get(principal.account_id, key_id)))


@token_routes.route("/api/tokens/{key_id}/limits", methods=["GET"])
@openai_errors
def token_limits(key_id: str) -> Response:
    """The request limits that apply to the key, per scope (null: unlimited)."""
    gateway, principal, _ = _session()
    return json_response({"data": gateway.tokens.limits(principal.account_id, key_id)})


@token_routes.route("/api/groups", methods=["GET"])
@openai_errors
def usable_groups() -> Response:
    """The groups (plans) the customer may give a key."""
    gateway, principal, _ = _session()
    account = gateway.accounts.profile(principal)
    return json_response({"data": [group_json(g) for g in gateway.tokens.usable_groups(account)]})


@token_routes.route("/api/models", methods=["GET"])
@openai_errors
def models_and_prices() -> Response:
    """The models each of the customer's plans can call now, at that plan's prices, and its limits."""
    from chalicelib.billing.price_list import price_list

    gateway, principal, _ = _session()
    groups = gateway.tokens.usable_groups(gateway.accounts.profile(principal))
    return json_response({"data": [price_list_json(plan)
                                   for plan in price_list(groups, gateway.catalog.routable_models())]})
