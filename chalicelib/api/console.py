"""What console views share: who a request acts for, and the session cookie."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalice.app import Request

from chalicelib.api.http import cookie_header, get_gateway, read_console_json
from chalicelib.api.json_body import read_json
from chalicelib.identity.sessions import COOKIE_NAME, SESSION_PREFIX
from chalicelib.keys.auth import bearer_token

if TYPE_CHECKING:
    from chalicelib.core.domain import Principal
    from chalicelib.deps import Gateway


def console_principal(request: Request) -> Principal:
    """Who the request acts for, from its session token (Bearer) or cookie; raises
    InvalidSession (401) or PermissionDenied (403), which `openai_errors` renders."""
    return get_gateway().console.authenticate(request.headers, request.method)


def console_request(request: Request, *, with_body: bool = False) -> tuple[Gateway, Principal, Any]:
    """The gateway, who the request acts for, and (once that is known) its JSON body."""
    gateway = get_gateway()
    principal = console_principal(request)
    body = read_console_json(request, max_bytes=gateway.settings.max_body_bytes) if with_body else None
    return gateway, principal, body


def session_cookie(token: str, max_age: int) -> dict[str, str]:
    """The header that sets (or, with an empty token and `max_age=0`, deletes) the session cookie."""
    return {"Set-Cookie": cookie_header(COOKIE_NAME, token, max_age=max_age)}


def operator_request(request: Request, *, with_body: bool = True) -> tuple[Gateway, Any]:
    """The gateway and the request's JSON body (None without one, or when the view takes none),
    once the caller is known to be an operator: the admin token, or the console session of an
    account with the admin role."""
    gateway = get_gateway()
    authorization = request.headers.get("authorization")
    bearer = bearer_token(authorization) or ""
    if bearer.startswith(SESSION_PREFIX) or (not authorization and f"{COOKIE_NAME}=" in
                                             (request.headers.get("cookie") or "")):
        gateway.console.require_admin(console_principal(request))
    else:
        gateway.admin.authorize(authorization)
    body = None
    if with_body and request.method in ("POST", "PUT", "PATCH"):
        body = read_json(request.raw_body, max_bytes=gateway.settings.max_body_bytes)
    return gateway, body
