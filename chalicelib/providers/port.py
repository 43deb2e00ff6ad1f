"""What the relay asks of an upstream adapter, whatever protocol the provider speaks.

The relay names an operation and gives an OpenAI-format body; the adapter
knows its provider's paths and shapes, translates to and from them, and maps
its transport failures to ProviderError. The relay never builds a URL.

An adapter whose provider speaks Anthropic's Messages API also serves it natively
(MessagesAdapter): the client's Messages body goes up as it is, and the answer comes
back as the provider sent it, each stream event with its own text.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

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


@dataclass(frozen=True)
class MessagesEvent:
    """One event of a Messages API stream: its type, its data, and its text as the upstream sent it
    (`event: …` and `data: …` lines and the blank line that ends it)."""

    type: str
    data: dict[str, Any]
    raw: str


@runtime_checkable
class MessagesAdapter(Protocol):
    def messages(self, channel: Channel, body: dict[str, Any], *, timeout_s: float) -> dict[str, Any]:
        """Send a Messages API body as it is; the message the provider answered."""

    def messages_stream(self, channel: Channel, body: dict[str, Any], *, timeout_s: float,
                        first_token_s: float | None = None) -> Iterator[MessagesEvent]:
        """Start a streamed Messages API request (connection and status checked before returning, so a
        failure to start may fall back); the iterator yields each event as it arrives, up to
        `message_stop`, and raises ProviderError if the stream breaks, ends early or carries an error."""


# Channel kind → adapter, built by the composition root.
Adapters = dict[str, ProviderAdapter]
