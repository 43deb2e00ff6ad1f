"""The operator's admin API (used by `python -m tokenway_cli.main`), behind the admin token.

Each view imports the command it parses when it runs: importing the app (a cold start) pays for
none of them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalice import Blueprint, Response

from chalicelib.api.console import operator_request
from chalicelib.api.http import json_response, openai_errors
from chalicelib.api.render import (
    account_json,
    channel_json,
    credit_json,
    group_json,
    iso,
    key_json,
    model_json,
    wallet_json,
)
from chalicelib.core.validation import parse

if TYPE_CHECKING:
    from chalicelib.deps import Gateway

admin_routes = Blueprint(__name__)


def _authorized(*, with_body: bool = True) -> tuple[Gateway, Any]:
    return operator_request(admin_routes.current_request, with_body=with_body)


@admin_routes.route("/admin/channels", methods=["POST"])
@openai_errors
def add_channel() -> Response:
    from chalicelib.admin.operations import ChannelInput

    gateway, body = _authorized()
    channel = gateway.admin.add_channel(parse(ChannelInput, body))
    return json_response({"name": channel.name, "base_url": channel.base_url, "kind": channel.kind,
                          "api_key_hint": channel.api_key_hint, "header_names": list(channel.header_names)},
                         status=201)


@admin_routes.route("/admin/channels", methods=["GET"])
@openai_errors
def list_channels() -> Response:
    """Each channel's breaker state, success rate, mean latency and failures in the window, as the
    process answering sees them (the breaker is kept per process; a forced state is shared)."""
    gateway, _ = _authorized()
    return json_response({"data": [channel_json(channel, health) for channel, health in gateway.admin.channels()]})


@admin_routes.route("/admin/channels/{name}/state", methods=["POST"])
@openai_errors
def force_channel_state(name: str) -> Response:
    from chalicelib.admin.operations import ChannelStateInput

    gateway, body = _authorized()
    state = parse(ChannelStateInput, body).state
    return json_response(channel_json(*gateway.admin.force_channel_state(name, state)))


@admin_routes.route("/admin/models", methods=["POST"])
@openai_errors
def add_model() -> Response:
    from chalicelib.admin.operations import ModelInput

    gateway, body = _authorized()
    return json_response(model_json(gateway.admin.add_model(parse(ModelInput, body))), status=201)


@admin_routes.route("/admin/models", methods=["GET"])
@openai_errors
def list_models() -> Response:
    """Every catalog model with its prices and routes, and whether a channel can serve it now (and if not, why)."""
    gateway, _ = _authorized()
    return json_response({"data": [{**model_json(model), "routable": why_not is None, "unroutable_reason": why_not}
                                   for model, why_not in gateway.catalog.availability()]})


@admin_routes.route("/admin/groups", methods=["POST"])
@openai_errors
def add_group() -> Response:
    from chalicelib.admin.operations import GroupInput

    gateway, body = _authorized()
    return json_response(group_json(gateway.admin.add_group(parse(GroupInput, body))), status=201)


@admin_routes.route("/admin/groups", methods=["GET"])
@openai_errors
def list_groups() -> Response:
    gateway, _ = _authorized()
    return json_response({"data": [group_json(group) for group in gateway.admin.groups()]})


@admin_routes.route("/admin/groups/{name}/limits", methods=["PUT"])
@openai_errors
def set_group_limits(name: str) -> Response:
    """A plan's request limits per key, on all its models or (`model`) on one."""
    from chalicelib.admin.operations import LimitsInput

    gateway, body = _authorized()
    return json_response(group_json(gateway.admin.set_limits(name, parse(LimitsInput, body))))


@admin_routes.route("/admin/limits", methods=["GET"])
@openai_errors
def list_limits() -> Response:
    """Every plan's request limits per key (null: unlimited)."""
    gateway, _ = _authorized()
    return json_response({"data": [{"group": group.name, **group.limits.as_dict(),
                                    "model_limits": group.model_limits_dict()} for group in gateway.admin.groups()]})


@admin_routes.route("/admin/accounts", methods=["POST"])
@openai_errors
def create_account() -> Response:
    from chalicelib.identity.accounts import NewAccount

    gateway, body = _authorized()
    # The same service, rules and answers as a customer's sign-up.
    account = gateway.accounts.create(parse(NewAccount, body))
    return json_response({"account_id": account.account_id, "email": account.email}, status=201)


@admin_routes.route("/admin/admins", methods=["POST"])
@openai_errors
def grant_admin() -> Response:
    """The account with the email made an admin (created if need be) and a one-time set-password link for it;
    201 when the account is new. Safe to repeat; 409 `account_disabled` for a disabled account."""
    from chalicelib.admin.admins import AdminGrant, grant_admin

    gateway, body = _authorized()
    granted = grant_admin(parse(AdminGrant, body), accounts=gateway.accounts, admin=gateway.admin,
                          links=gateway.password_links)
    link = granted.link
    # The link's token is in this answer only: no cache may keep it.
    return json_response({**account_json(granted.account), "created": granted.created, "promoted": granted.promoted,
                          "password_link": {"token": link.token, "url": link.url, "expires_at": iso(link.expires_at)}},
                         status=201 if granted.created else 200, headers={"Cache-Control": "no-store"})


@admin_routes.route("/admin/accounts", methods=["GET"])
@openai_errors
def list_accounts() -> Response:
    gateway, _ = _authorized()
    search = (admin_routes.current_request.query_params or {}).get("search")
    return json_response({"data": [account_json(a) for a in gateway.admin.accounts(search)]})


@admin_routes.route("/admin/accounts/{account_id}", methods=["PATCH"])
@openai_errors
def change_account(account_id: str) -> Response:
    from chalicelib.admin.operations import AccountChanges

    gateway, body = _authorized()
    return json_response(account_json(gateway.admin.change_account(account_id, parse(AccountChanges, body))))


@admin_routes.route("/admin/accounts/{account_id}/password-link", methods=["POST"])
@openai_errors
def password_link(account_id: str) -> Response:
    """A one-time set-password link for the operator to hand to the account's owner; earlier links stop."""
    gateway, _ = _authorized(with_body=False)
    link = gateway.password_links.issue(account_id)
    # The token is in this answer only: no cache may keep it.
    return json_response({"token": link.token, "url": link.url, "expires_at": iso(link.expires_at)}, status=201,
                         headers={"Cache-Control": "no-store"})


@admin_routes.route("/admin/accounts/{account_id}/credit", methods=["POST"])
@openai_errors
def credit_wallet(account_id: str) -> Response:
    from chalicelib.admin.operations import CreditInput

    gateway, body = _authorized()
    return json_response(credit_json(account_id, gateway.admin.credit(account_id, parse(CreditInput, body))))


@admin_routes.route("/admin/accounts/{account_id}/wallet", methods=["GET"])
@openai_errors
def show_wallet(account_id: str) -> Response:
    gateway, _ = _authorized()
    return json_response(wallet_json(account_id, gateway.admin.wallet(account_id)))


@admin_routes.route("/admin/accounts/{account_id}/keys", methods=["POST"])
@openai_errors
def create_key(account_id: str) -> Response:
    from chalicelib.keys.manage import KeyCreate

    gateway, body = _authorized()
    created = gateway.admin.create_key(account_id, parse(KeyCreate, body))
    return json_response({"key": created.secret, "key_id": created.key.key_id, "account_id": account_id,
                          **key_json(created.key)}, status=201)


@admin_routes.route("/admin/accounts/{account_id}/keys", methods=["GET"])
@openai_errors
def list_account_keys(account_id: str) -> Response:
    gateway, _ = _authorized()
    return json_response({"data": [key_json(key) for key in gateway.admin.account_keys(account_id)]})


@admin_routes.route("/admin/accounts/{account_id}/keys/{key_id}", methods=["DELETE"])
@openai_errors
def revoke_account_key(account_id: str, key_id: str) -> Response:
    """Revoke one of the account's keys: it stops working at once, for good."""
    gateway, _ = _authorized(with_body=False)
    gateway.admin.revoke_key(account_id, key_id)
    return json_response({"account_id": account_id, "key_id": key_id, "status": "revoked"})


@admin_routes.route("/admin/holds/sweep", methods=["POST"])
@openai_errors
def sweep_holds() -> Response:
    gateway, _ = _authorized()
    return json_response({"released": gateway.billing.sweep()})
