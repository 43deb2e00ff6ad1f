"""The OpenAI-compatible relay routes, each with and without the `/v1` prefix."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from chalice import Blueprint, Response

from chalicelib.api.http import (
    client_ip,
    get_gateway,
    json_response,
    now_ms,
    openai_errors,
    read_json,
    render_error,
)
from chalicelib.api.streaming import hand_off
from chalicelib.core.errors import ModelNotFound
from chalicelib.core.validation import parse

if TYPE_CHECKING:
    from chalicelib.core.domain import ApiKey
    from chalicelib.deps import Gateway
    from chalicelib.relay.relay import RelayResult

relay_routes = Blueprint(__name__)


def _command(endpoint: str) -> type[Any]:
    """The request the relay service of `endpoint` takes (imported with the first request, not the app)."""
    from chalicelib.relay.schemas import ChatRequest, EmbeddingsRequest, ImagesRequest

    return {"chat": ChatRequest, "embeddings": EmbeddingsRequest, "images": ImagesRequest}[endpoint]


def _relay(endpoint: str) -> Response:
    gateway = get_gateway()
    request = relay_routes.current_request
    request_id = gateway.relay.new_request_id()
    try:
        key = gateway.keys.authenticate(request.headers.get("authorization"), now_ms=now_ms())
        body = read_json(request.raw_body, max_bytes=gateway.settings.max_body_bytes)
        command = parse(_command(endpoint), body)
        result = getattr(gateway.relay, endpoint)(key, command, request_id, client_ip=client_ip(request))
    except Exception as exc:
        # A refused or failed request is never charged, and says so.
        # The key's request limits, when it has some, also on a refusal (429) or a failure.
        limits = getattr(exc, "limit_headers", None) or {}
        return render_error(exc, view=endpoint, request_id=request_id,
                            headers={"X-Request-Id": request_id, "X-Tokenway-Cost-USD": "0.00", **limits})
    return _render(result)


def _render(result: RelayResult) -> Response:
    headers = {"X-Request-Id": result.request_id, **result.limit_headers}
    if result.events is None:
        headers["X-Tokenway-Cost-USD"] = result.cost_usd or "0.00"
        return json_response(result.body, headers=headers)
    headers.update({"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    if hand_off(result.events):
        # A server that streams writes each event as it comes, after these headers: the cost is
        # known only once the stream is settled, in the usage chunk for a client that asks for it.
        return Response(body="", status_code=200, headers=headers)
    # API Gateway and Lambda buffer the response, so the stream is joined into
    # one body; it is settled (and its cost known) once joined.
    body = "".join(result.events)
    headers["X-Tokenway-Cost-USD"] = result.cost_usd or "0.00"
    return Response(body=body, status_code=200, headers=headers)


@relay_routes.route("/v1/chat/completions", methods=["POST"])
@relay_routes.route("/chat/completions", methods=["POST"])
@openai_errors
def chat_completions() -> Response:
    return _relay("chat")


@relay_routes.route("/v1/embeddings", methods=["POST"])
@relay_routes.route("/embeddings", methods=["POST"])
@openai_errors
def embeddings() -> Response:
    return _relay("embeddings")


@relay_routes.route("/v1/images/generations", methods=["POST"])
@relay_routes.route("/images/generations", methods=["POST"])
@openai_errors
def images_generations() -> Response:
    return _relay("images")


def _models_key(gateway: Gateway) -> ApiKey:
    # A fresh read, not the cached one: these routes make no hold, which would check the key's
    # status again, so a revoked, regenerated or disabled key is refused here at once.
    return gateway.keys.authenticate(relay_routes.current_request.headers.get("authorization"), now_ms=now_ms(),
                                     fresh=True)


@relay_routes.route("/v1/models", methods=["GET"])
@relay_routes.route("/models", methods=["GET"])
@openai_errors
def list_models() -> Response:
    gateway = get_gateway()
    return json_response(gateway.relay.models(_models_key(gateway)))


@relay_routes.route("/v1/models/{model}", methods=["GET"])
@relay_routes.route("/models/{model}", methods=["GET"])
@openai_errors
def retrieve_model(model: str) -> Response:
    """One model, as OpenAI's `models.retrieve` answers; 404 for one the key may not see."""
    gateway = get_gateway()
    name = unquote(model)
    for entry in gateway.relay.models(_models_key(gateway))["data"]:
        if entry["id"] == name:
            return json_response(entry)
    raise ModelNotFound(f"The model '{name[:200]}' does not exist or you do not have access to it.",
                        param="model")
