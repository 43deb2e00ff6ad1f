"""What the relay asks of an upstream adapter, whatever protocol the provider speaks.

The relay names an operation and gives an OpenAI-format body; the adapter
knows its provider's paths and shapes, translates to and from them, and maps
its transport failures to ProviderError. The relay never builds a URL.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import Any, Protocol

from chalicelib.core.domain import Channel


class Operation(enum.StrEnum):
    """What a relay request asks an upstream to do (the usage events' `endpoint`)."""

    CHAT = "chat.completions"
    EMBEDDINGS = "embeddings"
    IMAGES = "images.generations"


class ProviderAdapter(Protocol):
    def call(self, channel: Channel, operation: Operation, body: dict[str, Any], *,
             timeout_s: float) -> dict[str, Any]:
        """Run one operation with an OpenAI-format body; the OpenAI-format answer."""

    def stream(self, channel: Channel, operation: Operation, body: dict[str, Any], *,
               timeout_s: float, first_token_s: float | None = None) -> Iterator[dict[str, Any]]:
        """Start a streamed operation (connection and status checked before returning, so a
        failure to start may fall back); the iterator yields OpenAI-format chunks. With
        `first_token_s`, a stream whose first token has not come that long after the call
        fails with UpstreamTimeout (see first_token.py); later reads wait `timeout_s` each."""


# Channel kind → adapter, built by the composition root.
Adapters = dict[str, ProviderAdapter]
