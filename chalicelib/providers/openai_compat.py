"""The adapter for OpenAI-compatible upstreams (DeepSeek, Qwen, Kimi, Doubao, GLM, OpenAI…).

Requests go through one shared httpx client; transport failures and bad
answers are mapped to ProviderError subclasses here, at the boundary.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx

from chalicelib.core.domain import Channel
from chalicelib.core.errors import ProviderError, UpstreamRejected, UpstreamUnavailable
from chalicelib.providers.first_token import watched
from chalicelib.providers.port import Operation
from chalicelib.providers.upstream_http import (
    error_message,
    failed_body,
    json_object,
    reading,
    refused,
    send,
    timeouts,
)

# OpenAI's paths, under each channel's base URL (`…/v1`).
_PATHS = {
    Operation.CHAT: "/chat/completions",
    Operation.EMBEDDINGS: "/embeddings",
    Operation.IMAGES: "/images/generations",
}


class OpenAICompatAdapter:
    def __init__(self, http: httpx.Client) -> None:
        self._http = http

    def call(self, channel: Channel, operation: Operation, body: dict[str, Any], *,
             timeout_s: float) -> dict[str, Any]:
        """POST the body to the operation's path and return the upstream's JSON object."""
        request = self._request(channel, _PATHS[operation], body, timeout_s)
        response = send(self._http, channel, request, timeout_s)
        _raise_for_status(channel, response.status_code, response.content)
        return json_object(channel, response.content)

    def stream(self, channel: Channel, operation: Operation, body: dict[str, Any], *,
               timeout_s: float, first_token_s: float | None = None) -> Iterator[dict[str, Any]]:
        """POST a streaming request. The connection and status are checked before this
        returns, so a failure to start can still fall back to another channel; the
        returned iterator yields each `data:` event as a dict until `[DONE]`, and
        raises ProviderError if the stream breaks or ends early."""
        request = self._request(channel, _PATHS[operation], body, timeout_s)
        started = time.monotonic()
        response = send(self._http, channel, request, timeout_s, stream=True, first_token_s=first_token_s)
        if response.status_code >= 400:
            _raise_for_status(channel, response.status_code, failed_body(response))
        return watched(_events(channel, response, timeout_s), response, channel, first_token_s, started=started)

    @staticmethod
    def _request(channel: Channel, path: str, body: dict[str, Any], timeout_s: float) -> httpx.Request:
        url = channel.base_url.rstrip("/") + path
        return httpx.Request(
            "POST", url, content=json.dumps(body).encode(),
            # The channel's extra headers first: they may add to the gateway's, never replace its credential.
            headers={**dict(channel.extra_headers), "Authorization": f"Bearer {channel.api_key}",
                     "Content-Type": "application/json"},
            extensions={"timeout": timeouts(timeout_s)},
        )


def _events(channel: Channel, response: httpx.Response, timeout_s: float) -> Iterator[dict[str, Any]]:
    finished = False
    with reading(channel, response, timeout_s):
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue  # blank separators, comments (": keep-alive"), event names
            data = line[5:].strip()
            if data == "[DONE]":
                return
            event = json_object(channel, data.encode())
            if "error" in event and "choices" not in event:
                raise UpstreamUnavailable(error_message(event) or f"The upstream `{channel.name}` failed mid-stream.")
            finished = finished or any(
                isinstance(c, dict) and c.get("finish_reason") for c in event.get("choices") or [])
            yield event
    # Some providers omit [DONE]; a stream that reached a finish_reason is complete.
    if not finished:
        raise UpstreamUnavailable(f"The upstream `{channel.name}` ended the stream early.")


def _raise_for_status(channel: Channel, status: int, content: bytes) -> None:
    refusal = refused(channel, status, content)
    if refusal is None:
        return
    error, message = refusal
    raise UpstreamRejected(
        status, message,
        param=error.get("param") if isinstance(error.get("param"), str) else None,
        code=str(error["code"]) if error.get("code") is not None else None,
        error_type=error.get("type") if isinstance(error.get("type"), str) else None,
    )




__all__ = ["OpenAICompatAdapter", "ProviderError"]
