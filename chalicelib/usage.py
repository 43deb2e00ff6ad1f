"""Usage events: one per relay request, sent to the usage sink (Firehose → S3 as JSON lines)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from chalicelib.money import units_to_usd

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UsageEvent:
    time: str  # ISO 8601, UTC
    request_id: str
    account_id: str | None
    key_id: str | None
    endpoint: str
    model: str | None
    channel: str | None
    stream: bool
    status: int
    error_type: str | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    images: int = 0
    cost_units: int = 0
    shortfall_units: int = 0
    latency_ms: int = 0
    ttft_ms: int | None = None

    def to_json_line(self) -> bytes:
        record = asdict(self)
        record["cost_usd"] = units_to_usd(self.cost_units)
        return (json.dumps(record, separators=(",", ":")) + "\n").encode()


class UsageSink(Protocol):
    def put(self, event: UsageEvent) -> None: ...


class FirehoseUsageSink:
    """Puts each event as one JSON line on a Firehose delivery stream."""

    def __init__(self, client: Any, stream_name: str) -> None:
        self._client = client
        self._stream_name = stream_name

    def put(self, event: UsageEvent) -> None:
        self._client.put_record(DeliveryStreamName=self._stream_name, Record={"Data": event.to_json_line()})


class InMemoryUsageSink:
    def __init__(self) -> None:
        self.events: list[UsageEvent] = []

    def put(self, event: UsageEvent) -> None:
        self.events.append(event)


def emit(sink: UsageSink, event: UsageEvent) -> None:
    """Send the event; a failure is logged and never reaches the request (it is already charged)."""
    try:
        sink.put(event)
    except Exception:  # the request is settled: whatever breaks here must not undo or repeat that
        log.exception("usage event %s was not delivered: %s", event.request_id, event.to_json_line().decode())
