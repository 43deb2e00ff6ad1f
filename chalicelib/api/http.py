"""What every view shares: reading the JSON body, and turning errors into OpenAI envelopes."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from chalice import Response

from chalicelib.core.errors import (
    GatewayError,
    InternalError,
    InvalidRequest,
    PayloadTooLarge,
    RateLimited,
    UnsupportedMediaType,
)

log = logging.getLogger(__name__)

# Chalice checks a request's Content-Type against the route before the view
# runs; the gateway reads JSON whatever the client called it (curl -d says
# application/x-www-form-urlencoded).
ANY_CONTENT_TYPE = ["*/*"]


def json_response(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body=json.dumps(body, separators=(",", ":")), status_code=status,
                    headers={"Content-Type": "application/json", **(headers or {})})


def error_response(error: GatewayError, headers: dict[str, str] | None = None) -> Response:
    if isinstance(error, RateLimited):
        headers = {**(headers or {}), "Retry-After": str(error.retry_after_s)}
    return json_response(error.envelope(), status=error.status, headers=headers)


def empty_response(*, status: int = 204, headers: dict[str, str] | None = None) -> Response:
    """A response without a body (204 No Content)."""
    return Response(body="", status_code=status, headers=headers or {})


def cookie_header(name: str, value: str, *, max_age: int) -> str:
    """A Set-Cookie value that scripts cannot read, sent only over HTTPS and only by the
    site itself (never on a cross-site request); `max_age=0` deletes the cookie."""
    return f"{name}={value}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age={max_age}"


def client_ip(request: Any) -> str | None:
    """The caller's address as API Gateway (or chalice local) saw it."""
    identity = (request.context or {}).get("identity") or {}
    return identity.get("sourceIp")


def read_console_json(request: Any, *, max_bytes: int) -> Any:
    """A console write's JSON body, which must say it is JSON: a page on another site can
    send a form or text/plain cross-site without asking, but not application/json."""
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise UnsupportedMediaType("Send the body as JSON, with Content-Type: application/json.")
    return read_json(request.raw_body, max_bytes=max_bytes)


def read_json(raw_body: bytes | None, *, max_bytes: int) -> Any:
    """The request's JSON body; 413 above `max_bytes`, 400 if it is not JSON."""
    raw = raw_body or b""
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"The request body is larger than the limit of {max_bytes} bytes.")
    if not raw.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("The request body is not valid JSON.") from None


def openai_errors(view: Callable[..., Response]) -> Callable[..., Response]:
    """Render GatewayError as its envelope; anything else as a logged, generic 500."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        try:
            return view(*args, **kwargs)
        except GatewayError as exc:
            if exc.status >= 500:
                log.warning("%s: %s", type(exc).__name__, exc.message, exc_info=exc.__cause__ is not None)
            return error_response(exc)
        except Exception:
            log.exception("unhandled error in %s", view.__name__)
            return error_response(InternalError("The server had an error while processing your request."))

    return wrapper
