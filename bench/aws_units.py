"""`python -m bench.aws_units`: what one relay request writes on DynamoDB and Firehose, in the units AWS bills.

A plain and a streamed chat request, each sent a few times from one key (the key and the catalog cached,
as a warm container has them), through the app in process on the AWS emulator provisioned from
infra/template.yaml. Every AWS call of the last request is listed; each item of a `TransactWriteItems`
with its size (DynamoDB's rule: attribute names and values, the larger of the item before and after a
write) and its write request units: 2 per KB for a transactional write, and 1 per KB for each global
secondary index the write changes (an index projecting ALL is rewritten by any change to the item, one
holding keys only by the item's creation or deletion).
The Firehose record's size is printed beside the 5 KB that Firehose bills each record as.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import boto3
import httpx

from chalicelib import deps
from chalicelib.config import Settings
from devstack.demo_upstream import DemoUpstream
from devstack.emulator import Emulator, provision
from devstack.local_server import InProcessTransport

ROOT = Path(__file__).resolve().parent.parent
ADMIN = "bench-units-admin"
KB = 1024
FIREHOSE_BILLED_BYTES = 5 * KB  # Firehose rounds each record up to the next 5 KB


def value_size(value: dict[str, Any]) -> int:
    """The bytes DynamoDB counts for one attribute value."""
    (kind, data), = value.items()
    if kind == "S":
        return len(data.encode())
    if kind == "N":
        digits = data.lstrip("-").replace(".", "").strip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind == "B":
        return len(data)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(name.encode()) + value_size(inner) + 1 for name, inner in data.items())
    if kind == "L":
        return 3 + sum(value_size(inner) + 1 for inner in data)
    if kind == "SS":
        return sum(len(text.encode()) for text in data)
    if kind == "NS":
        return sum(value_size({"N": number}) for number in data)
    raise ValueError(f"unknown DynamoDB type {kind}")


def item_size(item: dict[str, Any] | None) -> int:
    return sum(len(name.encode()) + value_size(value) for name, value in (item or {}).items())


class Recorder:
    """The AWS calls of a boto3 session, each TransactWriteItems' items sized just after it ran."""

    def __init__(self, session: boto3.session.Session, dynamodb: Any) -> None:
        self._dynamodb = dynamodb  # a client of its own: its reads are not recorded
        self._tables: dict[str, dict[str, Any]] = {}
        self._sizes: dict[tuple[str, str], int] = {}  # the last size seen of each item, for a delete
        self.calls: list[tuple[str, list[dict[str, Any]]]] = []
        self._params: dict[str, Any] = {}
        session.events.register("before-parameter-build", self._before)
        session.events.register("after-call", self._after)

    def _before(self, event_name: str, params: dict[str, Any], **_: Any) -> None:
        self._params = params

    def _after(self, event_name: str, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        details: list[dict[str, Any]] = []
        if operation == "TransactWriteItems":
            details = [self._sized(item) for item in self._params["TransactItems"]]
        elif operation in ("PutRecord", "PutRecordBatch"):
            records = [self._params["Record"]] if operation == "PutRecord" else self._params["Records"]
            details = [{"bytes": len(record["Data"])} for record in records]
        self.calls.append((f"{event_name.split('.')[-2]}.{operation}", details))

    def _sized(self, transact_item: dict[str, Any]) -> dict[str, Any]:
        (action, spec), = transact_item.items()
        table = self._table(spec["TableName"])
        key = spec.get("Key") or {name: spec["Item"][name] for name in table["key"]}
        identity = (spec["TableName"], repr(sorted(key.items())))
        after = self._dynamodb.get_item(TableName=spec["TableName"], Key=key).get("Item")
        size = max(item_size(after), self._sizes.get(identity, 0))
        self._sizes[identity] = size
        units = 2 * max(1, math.ceil(size / KB))
        # A write changes each index whose keys the item has: one projecting ALL with any change to the
        # item; one holding keys only when the item is created or deleted (no update here changes an
        # index's key attributes).
        indexes = [keys for keys, projection in table["indexes"] if after and all(name in after for name in keys)
                   and (projection != "KEYS_ONLY" or action != "Update")]
        index_units = len(indexes) * max(1, math.ceil(size / KB))
        return {"action": action, "table": spec["TableName"], "bytes": size, "units": units,
                "index_units": index_units}

    def _table(self, name: str) -> dict[str, Any]:
        if name not in self._tables:
            described = self._dynamodb.describe_table(TableName=name)["Table"]
            self._tables[name] = {
                "key": [part["AttributeName"] for part in described["KeySchema"]],
                "indexes": [([part["AttributeName"] for part in index["KeySchema"]],
                             index["Projection"]["ProjectionType"])
                            for index in described.get("GlobalSecondaryIndexes", [])],
            }
        return self._tables[name]


def report(label: str, calls: list[tuple[str, list[dict[str, Any]]]]) -> None:
    print(f"\n{label}: {len(calls)} AWS calls: {', '.join(name for name, _ in calls)}")
    total = indexed = 0
    for name, details in calls:
        for detail in details:
            if "table" in detail:
                total += detail["units"]
                indexed += detail["index_units"]
                print(f"  {name:31s} {detail['action']:7s} {detail['table']:26s} {detail['bytes']:5d} B  "
                      f"{detail['units']} WRU + {detail['index_units']} WRU in indexes")
            else:
                print(f"  {name:31s} record {detail['bytes']} B, billed as {FIREHOSE_BILLED_BYTES} B")
    print(f"  DynamoDB write request units: {total} transactional + {indexed} in indexes = {total + indexed}")


def main() -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "bench")
    emulator = Emulator(port=0)
    emulator.start()
    upstream = DemoUpstream()
    upstream.start()
    try:
        provision(emulator.client, ROOT / "infra" / "template.yaml", "units")
        session = boto3.session.Session()
        recorder = Recorder(session, emulator.client("dynamodb"))
        settings = Settings(resource_prefix="units", aws_endpoint_url=emulator.endpoint_url, aws_region="us-east-1",
                            admin_token=ADMIN)
        deps.use_gateway(deps.build_gateway(settings, session=session))
        from app import app

        with httpx.Client(base_url="http://gateway.test", transport=InProcessTransport(app, client_ip="127.0.0.1"),
                          timeout=30) as http:
            admin = {"Authorization": f"Bearer {ADMIN}"}
            http.post("/admin/channels", json={"name": "demo", "base_url": upstream.base_url, "api_key": "demo"},
                      headers=admin)
            http.post("/admin/models", json={"name": "bench-chat", "channel": "demo", "input_per_1m": "0.28",
                                             "output_per_1m": "0.42"}, headers=admin)
            account = http.post("/admin/accounts", json={"email": "units@example.com"}, headers=admin).json()
            http.post(f"/admin/accounts/{account['account_id']}/credit", json={"amount_usd": "100"}, headers=admin)
            key = http.post(f"/admin/accounts/{account['account_id']}/keys", json={"name": "units"},
                            headers=admin).json()["key"]
            body = {"model": "bench-chat", "messages": [{"role": "user", "content": "Hello there, how are you?"}],
                    "max_tokens": 64}
            for label, stream in (("plain chat", False), ("streamed chat", True)):
                for _ in range(3):  # the last one as a warm container serves it
                    recorder.calls.clear()
                    answer = http.post("/v1/chat/completions", json={**body, "stream": stream},
                                       headers={"Authorization": f"Bearer {key}"})
                    answer.raise_for_status()
                report(label, recorder.calls)
    finally:
        deps.use_gateway(None)
        upstream.stop()
        emulator.stop()


if __name__ == "__main__":
    main()
