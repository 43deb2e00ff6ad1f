"""What the upstream adapters share at the HTTP boundary: sending a request with failures mapped to
ProviderError, reading a failed stream's body, and reading JSON and error messages from answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from chalicelib.core.domain import Channel
from chalicelib.core.errors import UpstreamTimeout, UpstreamUnavailable

CONNECT_TIMEOUT_S = 10.0


def timeouts(timeout_s: float) -> dict[str, Any]:
    """A request's timeouts: `timeout_s` for each read, at most CONNECT_TIMEOUT_S to connect."""
    return httpx.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s)).as_dict()


def send(http: httpx.Client, channel: Channel, request: httpx.Request, timeout_s: float, *,
         stream: bool = False, first_token_s: float | None = None) -> httpx.Response:
    """Send the request; a timeout or a transport failure as the ProviderError that says so.

    With `first_token_s` (a stream), the answer's headers must come within it too: they come
    before any token. The body's reads then wait up to `timeout_s` each, the first token's
    deadline being kept by first_token.watched. (httpcore reads the timeouts from the request's
    extensions when it starts reading the body, so setting them back before that applies them.)"""
    waited = timeout_s if first_token_s is None else min(timeout_s, first_token_s)
    request.extensions["timeout"] = timeouts(waited)
    try:
        response = http.send(request, stream=stream)
    except httpx.TimeoutException as exc:
        said = "sent no token" if waited < timeout_s else "did not answer"
        raise UpstreamTimeout(f"The upstream `{channel.name}` {said} in {waited:g} s.") from exc
    except httpx.HTTPError as exc:
        raise UpstreamUnavailable(f"The upstream `{channel.name}` could not be reached.") from exc
    request.extensions["timeout"] = timeouts(timeout_s)
    return response


@contextmanager
def reading(channel: Channel, response: httpx.Response, timeout_s: float) -> Iterator[None]:
    """Reading a streamed answer: a read timeout or a broken connection as the ProviderError that says
    so; the response closed however the reading ends (the client gone included)."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout(f"The upstream `{channel.name}` stopped answering for {timeout_s:g} s.") from exc
    except httpx.HTTPError as exc:
        raise UpstreamUnavailable(f"The upstream `{channel.name}` broke the stream.") from exc
    finally:
        response.close()


def failed_body(response: httpx.Response) -> bytes:
    """The body of a streamed answer that failed (empty if it cannot be read), the response closed."""
    try:
        return response.read()
    except httpx.HTTPError:
        return b""
    finally:
        response.close()


def error_message(payload: Any) -> str | None:
    """The message of an error answer, in the shapes providers send it."""
    if not isinstance(payload, dict):
        return None
    error = payload.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    if isinstance(error, str):
        return error
    return payload.get("message") if isinstance(payload.get("message"), str) else None


def json_object(channel: Channel, content: bytes) -> dict[str, Any]:
    """The answer as a JSON object; UpstreamUnavailable if it is not one."""
    try:
        payload = json.loads(content)
    except ValueError as exc:
        raise UpstreamUnavailable(f"The upstream `{channel.name}` sent a malformed response.") from exc
    if not isinstance(payload, dict):
        raise UpstreamUnavailable(f"The upstream `{channel.name}` sent a malformed response.")
    return payload


def refused(channel: Channel, status: int, content: bytes) -> tuple[dict[str, Any], str] | None:
    """None for a success. A failure another channel may not have (5xx, the gateway's own credential refused)
    raises UpstreamUnavailable; any other refusal is left to the adapter, as the answer's error object (empty
    if it sent none) and its message."""
    if status < 400:
        return None
    try:
        payload = json.loads(content)
    except ValueError:
        payload = None
    message = error_message(payload) or f"The upstream `{channel.name}` answered HTTP {status}."
    if status >= 500:  # Anthropic's 529 "overloaded" among them: another channel may have room
        raise UpstreamUnavailable(f"The upstream `{channel.name}` failed (HTTP {status}): {message}")
    if status in (401, 403):
        # The gateway's own credential for the channel was refused: not the caller's fault.
        raise UpstreamUnavailable(f"The upstream `{channel.name}` refused the gateway's credentials.")
    error = payload.get("error") if isinstance(payload, dict) else None
    return (error if isinstance(error, dict) else {}), message
