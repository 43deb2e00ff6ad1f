"""What every view shares: the client's address, the JSON body, and turning errors into OpenAI envelopes."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Sequence
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import TYPE_CHECKING, Any

from chalice import Response

from chalicelib.api.json_body import read_json
from chalicelib.core.errors import (
    GatewayError,
    InternalError,
    MethodNotAllowed,
    RateLimited,
    UnsupportedMediaType,
)

if TYPE_CHECKING:
    from chalicelib.deps import Gateway

log = logging.getLogger(__name__)



def get_gateway() -> Gateway:
    """The container's gateway. The composition root (boto3, httpx, pydantic and every service) is
    imported by the first request that needs it, not with the app: importing the app stays cheap."""
    from chalicelib import deps

    return deps.get_gateway()


def now_ms() -> int:
    """The gateway's clock, in epoch milliseconds."""
    from chalicelib import deps

    return deps.now_ms()


def json_response(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body=json.dumps(body, separators=(",", ":")), status_code=status,
                    headers={"Content-Type": "application/json", **(headers or {})})


def _error_response(error: GatewayError, headers: dict[str, str] | None = None) -> Response:
    """The error's OpenAI envelope with its status, and the headers its kind carries."""
    if isinstance(error, RateLimited):
        headers = {**(headers or {}), "Retry-After": str(error.retry_after_s)}
    if isinstance(error, MethodNotAllowed):
        headers = {**(headers or {}), "Allow": ", ".join(error.allow)}
    return json_response(error.envelope(), status=error.status, headers=headers)


def empty_response(*, status: int = 204, headers: dict[str, str] | None = None) -> Response:
    """A response without a body (204 No Content)."""
    return Response(body="", status_code=status, headers=headers or {})


def public_base(gateway: Gateway, request: Any) -> str:
    """The gateway's base URL as customers reach it: the setting, else this request's host."""
    if gateway.settings.public_url:
        return gateway.settings.public_url.rstrip("/")
    headers = request.headers
    scheme = (headers.get("x-forwarded-proto") or "http").split(",")[0].strip()
    return f"{scheme}://{headers.get('host', 'localhost')}"


def cookie_header(name: str, value: str, *, max_age: int) -> str:
    """A Set-Cookie value that scripts cannot read, sent only over HTTPS and only by the
    site itself (never on a cross-site request); `max_age=0` deletes the cookie."""
    return f"{name}={value}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age={max_age}"


def client_ip(request: Any) -> str | None:
    """The caller's address: the peer API Gateway (or the one-machine server) saw, or, when that peer is a
    trusted proxy (TOKENWAY_TRUSTED_PROXIES), the right-most address of X-Forwarded-For it did not add."""
    identity = (request.context or {}).get("identity") or {}
    return forwarded_client(identity.get("sourceIp"), request.headers.get("x-forwarded-for"),
                            get_gateway().settings.trusted_proxies)


def forwarded_client(peer: str | None, forwarded_for: str | None,
                     trusted: Sequence[IPv4Network | IPv6Network]) -> str | None:
    """Walk from the peer back along X-Forwarded-For while each hop is a trusted proxy; the first
    address that is not one is the client. A header from an untrusted peer is never read."""
    hops = [hop.strip() for hop in (forwarded_for or "").split(",") if hop.strip()]
    address = peer
    while address is not None and _is_trusted(address, trusted) and hops:
        hop = hops.pop()
        try:
            address = str(ip_address(hop))
        except ValueError:
            return address  # garbage before a trusted proxy: the proxy is the last address known
    return address


def _is_trusted(address: str, trusted: Sequence[IPv4Network | IPv6Network]) -> bool:
    try:
        parsed = ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in trusted)


def read_console_json(request: Any, *, max_bytes: int) -> Any:
    """A console write's JSON body, which must say it is JSON: a page on another site can
    send a form or text/plain cross-site without asking, but not application/json."""
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise UnsupportedMediaType("Send the body as JSON, with Content-Type: application/json.")
    return read_json(request.raw_body, max_bytes=max_bytes)


def render_error(exc: Exception, *, view: str, request_id: str | None = None,
                 headers: dict[str, str] | None = None) -> Response:
    """The one place an error becomes a response: a GatewayError as its envelope (logged when 5xx),
    anything else as a logged, generic 500; `headers` go on the response either way."""
    return _error_response(gateway_error(exc, view=view, request_id=request_id), headers)


def gateway_error(exc: Exception, *, view: str, request_id: str | None = None) -> GatewayError:
    """The error a client is told of: a GatewayError as it is (logged when 5xx), anything else
    logged with its traceback and told as a generic 500."""
    if isinstance(exc, GatewayError):
        if exc.status >= 500:
            log.warning("%s %s: %s: %s", view, request_id or "-", type(exc).__name__, exc.message,
                        exc_info=exc if exc.__cause__ is not None else None)
        return exc
    log.error("%s %s: unhandled error", view, request_id or "-", exc_info=exc)
    return InternalError("The server had an error while processing your request.")


def openai_errors(view: Callable[..., Response]) -> Callable[..., Response]:
    """Decorate a view so that whatever it raises is rendered by `render_error`."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        try:
            return view(*args, **kwargs)
        except Exception as exc:
            return render_error(exc, view=view.__name__)

    return wrapper
