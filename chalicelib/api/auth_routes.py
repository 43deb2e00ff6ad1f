"""Console accounts and sessions: sign-up, login, logout, password change, a forgotten password
mailed a link, a password set with a link, and who is logged in. Each view parses its body into the
service's command."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalice import Blueprint, Response

from chalicelib.api.console import console_principal, session_cookie
from chalicelib.api.http import (
    client_ip,
    empty_response,
    get_gateway,
    json_response,
    openai_errors,
    read_console_json,
)
from chalicelib.api.render import iso
from chalicelib.core.validation import parse

if TYPE_CHECKING:
    from chalicelib.core.domain import Account
    from chalicelib.deps import Gateway

auth_routes = Blueprint(__name__)

# These bodies are a few hundred bytes; there is no reason to read megabytes.
_MAX_BODY_BYTES = 64 * 1024
# Responses that carry secrets or personal data must not be kept by any cache.
_NO_STORE = {"Cache-Control": "no-store"}


def _command(gateway: Gateway, command: type[Any]) -> Any:
    """The request's JSON body as `command`; 400 naming the first bad field."""
    limit = min(_MAX_BODY_BYTES, gateway.settings.max_body_bytes)
    return parse(command, read_console_json(auth_routes.current_request, max_bytes=limit))


def _account(account: Account) -> dict[str, Any]:
    return {"account_id": account.account_id, "email": account.email, "role": account.role}


@auth_routes.route("/api/auth/signup", methods=["POST"])
@openai_errors
def signup() -> Response:
    from chalicelib.identity.accounts import SignUp

    gateway = get_gateway()
    account = gateway.accounts.sign_up(_command(gateway, SignUp), client_ip(auth_routes.current_request))
    return json_response(_account(account), status=201)


@auth_routes.route("/api/auth/login", methods=["POST"])
@openai_errors
def login() -> Response:
    from chalicelib.identity.accounts import LogIn

    gateway = get_gateway()
    result = gateway.accounts.login(_command(gateway, LogIn), client_ip(auth_routes.current_request))
    session = result.session
    body = {"token": session.token, "expires_at": iso(session.expires_at), "csrf_token": session.csrf_token,
            "account": _account(result.account)}
    cookie = session_cookie(session.token, gateway.settings.session_ttl_s)
    return json_response(body, headers={**cookie, **_NO_STORE})


@auth_routes.route("/api/auth/logout", methods=["POST"])
@openai_errors
def logout() -> Response:
    request = auth_routes.current_request
    get_gateway().accounts.logout(console_principal(request))
    return empty_response(headers=session_cookie("", 0))


@auth_routes.route("/api/auth/password", methods=["POST"])
@openai_errors
def change_password() -> Response:
    from chalicelib.identity.accounts import ChangePassword

    gateway = get_gateway()
    request = auth_routes.current_request
    principal = console_principal(request)
    gateway.accounts.change_password(principal, _command(gateway, ChangePassword), client_ip(request))
    # Every session of the account has ended, this one too: the client logs in again.
    return empty_response(headers=session_cookie("", 0))


@auth_routes.route("/api/auth/password/set", methods=["POST"])
@openai_errors
def set_password() -> Response:
    """A password from an operator's one-time link; no session needed, and every session ends."""
    from chalicelib.identity.password_links import SetPassword

    gateway = get_gateway()
    gateway.password_links.set_password(_command(gateway, SetPassword))
    return empty_response(headers=session_cookie("", 0))


@auth_routes.route("/api/auth/password/forgot", methods=["POST"])
@openai_errors
def forgot_password() -> Response:
    """Mail a set-password link to the email's account, if there is one: the answer never says."""
    from chalicelib.identity.password_reset import ForgotPassword

    gateway = get_gateway()
    gateway.password_resets.forgot(_command(gateway, ForgotPassword), client_ip(auth_routes.current_request))
    return json_response({"status": "sent"}, status=202)


@auth_routes.route("/api/auth/me", methods=["GET"])
@openai_errors
def me() -> Response:
    gateway = get_gateway()
    account = gateway.accounts.profile(console_principal(auth_routes.current_request))
    return json_response({**_account(account), "created_at": iso(account.created_at)}, headers=_NO_STORE)
