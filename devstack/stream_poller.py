"""What Lambda's event source mapping does for a DynamoDB stream, for the emulator: read the
stream's new records, in order, and hand them to a function in batches, again if it raises.

    poller = StreamPoller(client("dynamodbstreams"), outputs["UsageOutboxStreamArn"], forward_usage_events)
    poller.start()
    ...
    poller.stop()

On AWS the app stack subscribes the usage forwarder to the usage-outbox stream; locally (the tests'
DynamoDB stack) this runs the same function on the emulator's stream.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]
_MAX_WAIT_S = 5.0
_DESCRIBE_EVERY = 20


class StreamPoller:
    def __init__(self, streams: Any, stream_arn: str, handler: Handler, *, interval_s: float = 0.5,
                 batch_size: int = 500) -> None:
        self._streams = streams
        self._stream_arn = stream_arn
        self._handler = handler
        self._interval_s = interval_s
        self._batch_size = batch_size
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stream-poller", daemon=True)
        self._last: dict[str, str] = {}  # shard id → the sequence number of the last record handed on
        self._shards: list[str] = []
        self._polls = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        wait, failing = self._interval_s, False
        while not self._stopping.wait(wait):
            try:
                busy = self._poll()
                # A full batch: more are waiting, read them at once.
                wait, failing = (0 if busy else self._interval_s), False
            except Exception as exc:  # noqa: BLE001 - as Lambda does: try the same records again, later
                if not failing:
                    log.warning("the stream %s could not be processed (%s); retrying", self._stream_arn, exc)
                wait, failing = min(wait * 2, _MAX_WAIT_S), True

    def _poll(self) -> bool:
        """Hand each shard's new records on; whether a shard had more than one batch."""
        busy = False
        self._polls += 1
        if not self._shards or self._polls % _DESCRIBE_EVERY == 0:  # a stream's shards change seldom
            described = self._streams.describe_stream(StreamArn=self._stream_arn)["StreamDescription"]
            self._shards = [shard["ShardId"] for shard in described["Shards"]]
        for shard_id in self._shards:
            # A new iterator each time, after the last record handed on: the emulator's iterators stay on
            # the table object they were made from, which its transactions replace when one fails.
            last = self._last.get(shard_id)
            where = ({"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": last} if last
                     else {"ShardIteratorType": "TRIM_HORIZON"})
            iterator = self._streams.get_shard_iterator(StreamArn=self._stream_arn, ShardId=shard_id,
                                                        **where)["ShardIterator"]
            records = self._streams.get_records(ShardIterator=iterator, Limit=self._batch_size)["Records"]
            if records:
                self._handler({"Records": records}, None)  # raises: the same records are read again
                self._last[shard_id] = records[-1]["dynamodb"]["SequenceNumber"]
                busy = busy or len(records) == self._batch_size
        return busy
