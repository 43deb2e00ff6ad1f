"""What the relay asks of an upstream adapter, whatever protocol the provider speaks.

An adapter takes OpenAI-format bodies and returns OpenAI-format answers and
stream events; translating to and from its provider's own format, and mapping
its transport failures to ProviderError, happens inside it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from chalicelib.core.domain import Channel


class ProviderAdapter(Protocol):
    def post(self, channel: Channel, path: str, body: dict[str, Any], *, timeout_s: float) -> dict[str, Any]:
        """Send one OpenAI-format request to `path` (`/chat/completions`, …); the OpenAI-format answer."""

    def stream(self, channel: Channel, path: str, body: dict[str, Any], *,
               timeout_s: float) -> Iterator[dict[str, Any]]:
        """Start a streamed request (connection and status checked before returning, so a
        failure to start may fall back); the iterator yields OpenAI-format chunks."""


# Channel kind → adapter, built by the composition root.
Adapters = dict[str, ProviderAdapter]
