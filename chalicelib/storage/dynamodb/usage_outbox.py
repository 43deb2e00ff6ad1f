"""Usage events on AWS without a round trip of their own: written by the transaction that settles
or releases the request, carried to Firehose by the outbox table's stream.

    request ──► hold ──► upstream ──► settle / release: one TransactWriteItems
                                        ├── account, hold, key, ledger entry, rollup
                                        └── usage-outbox[request_id] = the event's JSON line
                                                   │ (the table's stream, NEW_IMAGE, inserts only)
                                                   ▼
                          usage forwarder (a Lambda function on the stream, batches of records)
                                                   │ PutRecordBatch, the records Firehose refused resent
                                                   ▼
                                     Firehose ──► S3 (the request log Athena reads)

An event exists exactly when its request was closed: it commits or fails with the money. The
stream delivers each insert at least once, in order per request; a batch that cannot be delivered
is retried by Lambda (the forwarder raises), so an event may reach S3 twice (as Firehose's own
retries may make it), never zero times while the stream holds it (24 hours); the balances and the
live totals never depend on it (the rollups count each request once, in the same transaction).
Outbox items expire after OUTBOX_TTL_S (their TTL deletions reach the stream as REMOVE records,
which are skipped).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from chalicelib.core.domain import UsageEvent
from chalicelib.storage.dynamodb.common import TransactItem, to_item

OUTBOX_TTL_S = 24 * 3600
# Firehose's limits for one PutRecordBatch: 500 records, 4 MiB.
_BATCH_RECORDS = 500
_BATCH_BYTES = 4 * 1024 * 1024
_RESENDS = 3


def outbox_item(table: str, event: UsageEvent, *, now_s: float | None = None) -> TransactItem:
    """The outbox's part of closing a request: its event, as the JSON line the sink would send."""
    expires_at = int(time.time() if now_s is None else now_s) + OUTBOX_TTL_S
    return TransactItem("outbox", {"Put": {
        "TableName": table,
        "Item": to_item({"request_id": event.request_id, "line": event.to_json_line().decode(),
                         "expires_at": expires_at}),
    }})


def lines_of(records: Iterable[dict[str, Any]]) -> list[bytes]:
    """The event lines of a DynamoDB stream batch: each inserted (or rewritten) item's `line`."""
    lines = []
    for record in records:
        if record.get("eventName") not in ("INSERT", "MODIFY"):
            continue  # REMOVE: the item expired, its event was forwarded when it was written
        image = (record.get("dynamodb") or {}).get("NewImage") or {}
        line = (image.get("line") or {}).get("S")
        if line:
            lines.append(line.encode())
    return lines


def forward(firehose: Any, stream_name: str, records: Iterable[dict[str, Any]]) -> int:
    """Send a stream batch's events to Firehose; how many. Records Firehose refuses are sent again;
    what is still refused after that raises, so that the stream delivers the batch again."""
    lines = lines_of(records)
    put_lines(firehose, stream_name, lines)
    return len(lines)


def put_lines(firehose: Any, stream_name: str, lines: list[bytes]) -> None:
    """Put event lines on Firehose in batches (PutRecordBatch), sending refused records again; raises
    if some are still refused."""
    for batch in _batches(lines):
        pending = batch
        for _ in range(_RESENDS + 1):
            answer = firehose.put_record_batch(DeliveryStreamName=stream_name,
                                               Records=[{"Data": line} for line in pending])
            if not answer.get("FailedPutCount"):
                break
            pending = [line for line, result in zip(pending, answer["RequestResponses"], strict=True)
                       if result.get("ErrorCode")]
        else:
            raise RuntimeError(f"Firehose refused {len(pending)} usage events of a batch of {len(batch)}")


def _batches(lines: list[bytes]) -> Iterable[list[bytes]]:
    batch: list[bytes] = []
    size = 0
    for line in lines:
        if batch and (len(batch) == _BATCH_RECORDS or size + len(line) > _BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(line)
        size += len(line)
    if batch:
        yield batch
