"""Where usage events go: Firehose (landing in S3 as JSON lines), or a list in memory for tests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from chalicelib.core.domain import UsageEvent
from chalicelib.storage.dynamodb.usage_outbox import forward, put_lines


class FirehoseUsageSink:
    """Puts events as JSON lines on a Firehose delivery stream: those of the usage-outbox stream (see
    usage_outbox.py), and one at a time those a settlement's transaction could not carry."""

    def __init__(self, client: Any, stream_name: str) -> None:
        self._client = client
        self._stream_name = stream_name

    def put(self, event: UsageEvent) -> None:
        # A batch of one: the forwarder's call, so the functions need one Firehose action.
        put_lines(self._client, self._stream_name, [event.to_json_line()])

    def forward(self, records: Iterable[dict[str, Any]]) -> int:
        """Send the events of a usage-outbox stream batch (see usage_outbox.py); how many."""
        return forward(self._client, self._stream_name, records)


class InMemoryUsageSink:
    def __init__(self) -> None:
        self.events: list[UsageEvent] = []

    def put(self, event: UsageEvent) -> None:
        self.events.append(event)
