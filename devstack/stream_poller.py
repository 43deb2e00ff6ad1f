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


class StreamPoller:
    def __init__(self, streams: Any, stream_arn: str, handler: Handler, *, interval_s: float = 0.1,
                 batch_size: int = 500) -> None:
        self._streams = streams
        self._stream_arn = stream_arn
        self._handler = handler
        self._interval_s = interval_s
        self._batch_size = batch_size
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stream-poller", daemon=True)
        self._iterators: dict[str, str] = {}  # shard id → its next iterator

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
        shards = self._streams.describe_stream(StreamArn=self._stream_arn)["StreamDescription"]["Shards"]
        for shard in shards:
            shard_id = shard["ShardId"]
            if shard_id not in self._iterators:
                self._iterators[shard_id] = self._streams.get_shard_iterator(
                    StreamArn=self._stream_arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
            answer = self._streams.get_records(ShardIterator=self._iterators[shard_id], Limit=self._batch_size)
            if answer["Records"]:
                self._handler({"Records": answer["Records"]}, None)  # raises: the iterator stays, to retry
                busy = busy or len(answer["Records"]) == self._batch_size
            if answer.get("NextShardIterator"):
                self._iterators[shard_id] = answer["NextShardIterator"]
        return busy
