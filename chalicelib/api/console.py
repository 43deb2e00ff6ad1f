"""What console views share: who a request acts for, and the session cookie."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalice.app import Request

from chalicelib.api.http import cookie_header, get_gateway
from chalicelib.identity.sessions import COOKIE_NAME

if TYPE_CHECKING:
    from chalicelib.core.domain import Principal


def console_principal(request: Request) -> Principal:
    """Who the request acts for, from its session token (Bearer) or cookie; raises
    InvalidSession (401) or PermissionDenied (403), which `openai_errors` renders."""
    return get_gateway().console.authenticate(request.headers, request.method)


def session_cookie(token: str, max_age: int) -> dict[str, str]:
    """The header that sets (or, with an empty token and `max_age=0`, deletes) the session cookie."""
    return {"Set-Cookie": cookie_header(COOKIE_NAME, token, max_age=max_age)}
