"""What the relay answers a request with, and how a request that failed is recorded."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from chalicelib.core.errors import GatewayError, InternalError
from chalicelib.core.money import units_to_usd


@dataclass
class RelayResult:
    """A relay answer: a JSON body, or a stream of SSE events. `cost_units`, what the
    wallet was charged, is known once the body is returned or the stream is exhausted."""

    request_id: str
    body: dict[str, Any] | None = None
    events: Iterator[str] | None = None
    cost_units: int | None = None
    limit_headers: dict[str, str] = field(default_factory=dict)  # x-ratelimit-*, when the key is limited

    @property
    def cost_usd(self) -> str | None:
        return None if self.cost_units is None else units_to_usd(self.cost_units)


def failure(exc: BaseException) -> tuple[int, str]:
    """The status and error type a request that ended with `exc` is recorded with."""
    if isinstance(exc, GatewayError):
        return exc.status, exc.type
    return InternalError.status, InternalError.type
