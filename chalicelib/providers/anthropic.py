"""The adapter for Anthropic's Messages API: OpenAI chat bodies in, OpenAI answers out.

A chat body is translated to `POST {base_url}/messages` (anthropic_messages.py),
sent with the channel's key in `x-api-key`, and the answer translated back: a
message to a `chat.completion`, a stream of Anthropic events to OpenAI chunks
ending with a usage-only chunk. Usage keeps Anthropic's two cache counts beside
OpenAI's fields, so that cache writes are priced at their own rate
(pricing.read_usage). Embeddings and images have no Anthropic counterpart.

Natively (`messages`, `messages_stream`, for clients that speak the Messages API
themselves), the body goes up as the relay gives it and the answer comes back
untranslated: a stream's events one by one, each with its own text. A refusal
(4xx) carries Anthropic's error body (ProviderError.upstream_envelope), so that
it can be passed on as Anthropic worded it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx

from chalicelib.core.domain import Channel
from chalicelib.core.errors import UpstreamRejected, UpstreamUnavailable
from chalicelib.providers.anthropic_messages import StreamTranslator, to_completion, to_messages_body
from chalicelib.providers.first_token import has_message_token, watched
from chalicelib.providers.port import MessagesEvent, Operation
from chalicelib.providers.upstream_http import (
    error_message,
    failed_body,
    json_object,
    reading,
    refused,
    send,
    timeouts,
)

ANTHROPIC_VERSION = "2023-06-01"


class AnthropicAdapter:
    def __init__(self, http: httpx.Client) -> None:
        self._http = http

    def call(self, channel: Channel, operation: Operation, body: dict[str, Any], *,
             timeout_s: float) -> dict[str, Any]:
        """Send a chat as one Messages request; the answer as a `chat.completion`."""
        request = self._request(channel, operation, body, timeout_s, stream=False)
        response = send(self._http, channel, request, timeout_s)
        _raise_for_status(channel, response.status_code, response.content)
        message = json_object(channel, response.content)
        if message.get("type") == "error":
            _raise_error_event(channel, message)
        try:
            return to_completion(message)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UpstreamUnavailable(f"The upstream `{channel.name}` sent a malformed response.") from exc

    def stream(self, channel: Channel, operation: Operation, body: dict[str, Any], *,
               timeout_s: float, first_token_s: float | None = None) -> Iterator[dict[str, Any]]:
        """Start a streamed chat. The connection and status are checked before this returns,
        so a failure to start can still fall back to another channel; the iterator yields
        OpenAI chunks and raises ProviderError if the stream breaks or ends early."""
        request = self._request(channel, operation, body, timeout_s, stream=True)
        started = time.monotonic()
        response = send(self._http, channel, request, timeout_s, stream=True, first_token_s=first_token_s)
        if response.status_code >= 400:
            _raise_for_status(channel, response.status_code, failed_body(response))
        return watched(_chunks(channel, response, timeout_s), response, channel, first_token_s, started=started)

    def messages(self, channel: Channel, body: dict[str, Any], *, timeout_s: float) -> dict[str, Any]:
        """Send a Messages body as it is; Anthropic's message as it answered."""
        response = send(self._http, channel, _post(channel, body, timeout_s), timeout_s)
        _raise_for_status(channel, response.status_code, response.content)
        message = json_object(channel, response.content)
        if message.get("type") == "error":
            _raise_error_event(channel, message)
        return message

    def messages_stream(self, channel: Channel, body: dict[str, Any], *, timeout_s: float,
                        first_token_s: float | None = None) -> Iterator[MessagesEvent]:
        """Start a streamed Messages request sent as it is; its events as they arrive (see port.py),
        the first token within `first_token_s` as `stream` has it."""
        started = time.monotonic()
        response = send(self._http, channel, _post(channel, body, timeout_s), timeout_s, stream=True,
                        first_token_s=first_token_s)
        if response.status_code >= 400:
            _raise_for_status(channel, response.status_code, failed_body(response))
        return watched(_events(channel, response, timeout_s), response, channel, first_token_s, started=started,
                       is_token=has_message_token)

    @staticmethod
    def _request(channel: Channel, operation: Operation, body: dict[str, Any], timeout_s: float, *,
                 stream: bool) -> httpx.Request:
        if operation is not Operation.CHAT:
            raise UpstreamRejected(400, f"{operation} is not supported by Anthropic channels.",
                                   code="unsupported_operation")
        payload = to_messages_body(body)
        payload["stream"] = stream
        return _post(channel, payload, timeout_s)


def _post(channel: Channel, payload: dict[str, Any], timeout_s: float) -> httpx.Request:
    return httpx.Request(
        "POST", channel.base_url.rstrip("/") + "/messages", content=json.dumps(payload).encode(),
        # The channel's extra headers first (an `anthropic-beta`, say): they never replace its credential.
        headers={**dict(channel.extra_headers), "x-api-key": channel.api_key,
                 "anthropic-version": ANTHROPIC_VERSION, "Content-Type": "application/json"},
        extensions={"timeout": timeouts(timeout_s)},
    )


def _events(channel: Channel, response: httpx.Response, timeout_s: float) -> Iterator[MessagesEvent]:
    """Anthropic's events as they arrive, each with its own lines, up to `message_stop`."""
    with reading(channel, response, timeout_s):
        for raw in _raw_events(response.iter_lines()):
            data = "\n".join(line[5:].lstrip() for line in raw.split("\n") if line.startswith("data:"))
            if not data:
                continue  # a comment or a bare event name: nothing to relay
            event = json_object(channel, data.encode())
            kind = event.get("type")
            if kind == "error":
                _raise_error_event(channel, event)
            yield MessagesEvent(str(kind), event, raw)
            if kind == "message_stop":
                return
    raise UpstreamUnavailable(f"The upstream `{channel.name}` ended the stream early.")


def _raw_events(lines: Iterator[str]) -> Iterator[str]:
    """The text of each SSE event (its lines and the blank line that ends it), as soon as it ends."""
    pending: list[str] = []
    for line in lines:
        if line:
            pending.append(line)
        elif pending:
            yield "\n".join(pending) + "\n\n"
            pending = []
    if pending:  # the last event, its blank line lost with the connection
        yield "\n".join(pending) + "\n\n"


def _chunks(channel: Channel, response: httpx.Response, timeout_s: float) -> Iterator[dict[str, Any]]:
    translator = StreamTranslator()
    with reading(channel, response, timeout_s):
        for line in response.iter_lines():
            # `event:` lines repeat the data's own `type`; blank lines separate events.
            if not line.startswith("data:"):
                continue
            event = json_object(channel, line[5:].strip().encode())
            if event.get("type") == "error":
                _raise_error_event(channel, event)
            try:
                chunks = translator.feed(event)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise UpstreamUnavailable(f"The upstream `{channel.name}` sent a malformed event.") from exc
            yield from chunks
            if translator.done:
                return
    raise UpstreamUnavailable(f"The upstream `{channel.name}` ended the stream early.")


def _raise_error_event(channel: Channel, event: dict[str, Any]) -> None:
    """An error Anthropic sends inside a 200 answer (mid-stream overload, most often): retryable."""
    message = error_message(event) or f"The upstream `{channel.name}` failed mid-stream."
    failure = UpstreamUnavailable(f"The upstream `{channel.name}` failed: {message}")
    failure.upstream_envelope = event
    raise failure


def _raise_for_status(channel: Channel, status: int, content: bytes) -> None:
    refusal = refused(channel, status, content)
    if refusal is None:
        return
    error, message = refusal
    # Anthropic's `rate_limit_error` is OpenAI's too; its other 4xx types read as OpenAI's request errors.
    rejected = UpstreamRejected(status, message, error_type="rate_limit_error" if status == 429 else
                                "invalid_request_error" if isinstance(error.get("type"), str) else None)
    if isinstance(error.get("type"), str):
        rejected.upstream_envelope = json.loads(content)  # it parsed already: `error` was read from it
    raise rejected




__all__ = ["AnthropicAdapter"]
