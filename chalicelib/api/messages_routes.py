"""Anthropic's Messages API, `POST /v1/messages` (and `/messages`), for the `anthropic` SDKs and
the clients built on them, served by the relay's `messages` (relay/anthropic_native.py): natively on
Anthropic channels (the body as sent, the answer as Anthropic sent it), translated to a chat on any
other; held, settled and recorded like every relay call.

The key comes as `x-api-key` or as `Authorization: Bearer`. Every error on these paths is in
Anthropic's envelope `{"type": "error", "error": {"type", "message"}}`, with `request-id` and
`X-Request-Id`, and a cost of 0.00: an Anthropic channel's refusal (4xx) as Anthropic worded it,
with its status; the gateway's own errors with the gateway's status (402 as `billing_error`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalice import Blueprint, Response

from chalicelib.api.http import client_ip, gateway_error, get_gateway, json_response, now_ms, read_json
from chalicelib.api.routing import METHODS, method_not_allowed
from chalicelib.api.streaming import hand_off
from chalicelib.core.errors import InvalidApiKey, MethodNotAllowed, RateLimited, UpstreamRejected
from chalicelib.core.validation import parse
from chalicelib.keys.auth import key_authorization

if TYPE_CHECKING:
    from chalicelib.relay.relay import RelayResult

messages_routes = Blueprint(__name__)

_PATHS = ("/v1/messages", "/messages")


def _messages() -> Response:
    from chalicelib.relay.anthropic_inbound import check_messages_body
    from chalicelib.relay.schemas import MessagesRequest

    gateway = get_gateway()
    request = messages_routes.current_request
    request_id = gateway.relay.new_request_id()
    try:
        authorization = key_authorization(request.headers.get("x-api-key"), request.headers.get("authorization"))
        if authorization is None:
            raise InvalidApiKey("You didn't provide an API key. Send it as `x-api-key: sk-…` or "
                                "`Authorization: Bearer sk-…`.")
        key = gateway.keys.authenticate(authorization, now_ms=now_ms())
        body = check_messages_body(read_json(request.raw_body, max_bytes=gateway.settings.max_body_bytes))
        result = gateway.relay.messages(key, parse(MessagesRequest, body), request_id, client_ip=client_ip(request))
    except Exception as exc:
        # A refused or failed request is never charged, and says so.
        return _error(exc, request_id)
    return _render(result)


def _render(result: RelayResult) -> Response:
    headers = {**_ids(result.request_id), **result.limit_headers}
    if result.events is None:
        headers["X-Tokenway-Cost-USD"] = result.cost_usd or "0.00"
        return json_response(result.body, headers=headers)
    headers.update({"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    if hand_off(result.events):
        # Written as it comes; the cost is known once the stream is settled, in message_delta's usage.
        return Response(body="", status_code=200, headers=headers)
    body = "".join(result.events)  # buffered (API Gateway and Lambda): settled once joined
    headers["X-Tokenway-Cost-USD"] = result.cost_usd or "0.00"
    return Response(body=body, status_code=200, headers=headers)


def _ids(request_id: str) -> dict[str, str]:
    # Anthropic's clients read `request-id`; the gateway's own routes say `X-Request-Id`.
    return {"X-Request-Id": request_id, "request-id": request_id}


def _error(exc: Exception, request_id: str | None) -> Response:
    from chalicelib.relay.anthropic_stream import anthropic_error

    error = gateway_error(exc, view="messages", request_id=request_id)
    headers = {"X-Tokenway-Cost-USD": "0.00", **(_ids(request_id) if request_id else {}),
               # The key's request limits, when it has some, also on a refusal (429) or a failure.
               **(getattr(exc, "limit_headers", None) or {})}
    if isinstance(error, RateLimited):
        headers["Retry-After"] = str(error.retry_after_s)
    if isinstance(error, MethodNotAllowed):
        headers["Allow"] = ", ".join(error.allow)
    if isinstance(error, UpstreamRejected) and error.upstream_envelope is not None:
        return json_response(error.upstream_envelope, status=error.status, headers=headers)
    return json_response(anthropic_error(error.status, error.message), status=error.status, headers=headers)


def _view(handler: Any) -> Any:
    """`handler` with whatever it raises, before a request id is made, in Anthropic's envelope."""

    def view() -> Response:
        try:
            return handler()
        except Exception as exc:
            return _error(exc, None)

    view.__name__ = handler.__name__
    return view


def messages() -> Response:
    return _messages()


def messages_method_not_allowed() -> Response:
    """Other methods on these paths: 405 in Anthropic's envelope (the gateway's cover would answer in OpenAI's)."""
    raise method_not_allowed(messages_routes.current_request, ("POST",))


for _path in _PATHS:
    messages_routes.route(_path, methods=["POST"], name=f"messages{_path.replace('/', '_')}")(_view(messages))
    messages_routes.route(_path, methods=[m for m in METHODS if m != "POST"],
                          name=f"messages_other{_path.replace('/', '_')}")(_view(messages_method_not_allowed))
