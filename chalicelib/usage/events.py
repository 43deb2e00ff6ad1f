"""Usage events: one per relay request, sent to the usage sink (Firehose → S3 as JSON lines)."""

from __future__ import annotations

import logging

from chalicelib.core.domain import UsageEvent
from chalicelib.storage.ports import UsageSink

log = logging.getLogger(__name__)


def emit(sink: UsageSink, event: UsageEvent) -> None:
    """Send the event; a failure is logged and never reaches the request (it is already charged)."""
    try:
        sink.put(event)
    except Exception:  # the request is settled: whatever breaks here must not undo or repeat that
        log.exception("usage event %s was not delivered: %s", event.request_id, event.to_json_line().decode())
