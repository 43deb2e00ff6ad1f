"""Usage events on DynamoDB: written by the transaction that settles or releases the request (no call of
their own), once, with what was charged; carried from the outbox table's stream to Firehose and S3."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from chalicelib.core.domain import Account, HoldResult, LedgerEntry, UsageEvent
from chalicelib.storage.dynamodb.common import from_item
from chalicelib.storage.dynamodb.usage_outbox import forward, lines_of
from tests.contract.conftest import PREFIX
from tests.contract.test_usage_rollups import KEY, entry, hold, usage


def event(request_id: str, *, status: int = 200) -> UsageEvent:
    return UsageEvent(time="2026-11-26T10:00:07.000+00:00", request_id=request_id, account_id=KEY.account_id,
                      key_id=KEY.key_id, endpoint="chat.completions", model="gpt-4o", channel="openai-main",
                      stream=False, status=status, prompt_tokens=1_200, completion_tokens=300, latency_ms=250)


@pytest.fixture
def wallet(dynamo_repos):
    dynamo_repos.accounts.create(Account(account_id=KEY.account_id, email="a@example.com", created_at=1))
    dynamo_repos.keys.create(KEY)
    dynamo_repos.wallets.credit(LedgerEntry(KEY.account_id, "0000000000000#credit", "credit", 1_000, 0))
    return dynamo_repos


def outbox(repos) -> dict[str, dict[str, Any]]:
    items = repos.dynamodb.scan(TableName=f"{PREFIX}-usage-outbox", ConsistentRead=True)["Items"]
    return {item["request_id"]["S"]: json.loads(from_item(item)["line"]) for item in items}


def test_a_settlement_writes_its_event_with_what_was_charged_and_the_shortfall(wallet):
    assert wallet.wallets.records_events
    assert wallet.wallets.hold(hold("r1", 500)) is HoldResult.HELD
    # 1,000 funded, 500 held: a cost of 1,700 is charged 1,000 and falls 700 short.
    settlement = wallet.wallets.settle(hold("r1", 500), 1_700, entry("r1"), usage(), event("r1"))

    assert (settlement.charged, settlement.shortfall, settlement.recorded) == (1_000, 700, True)
    written = outbox(wallet)["r1"]
    assert (written["cost_units"], written["shortfall_units"], written["cost_usd"]) == (1_000, 700, "0.000001")
    assert written["prompt_tokens"] == 1_200 and written["status"] == 200


def test_a_request_settled_twice_has_one_event_the_first(wallet):
    wallet.wallets.hold(hold("r1", 500))
    wallet.wallets.settle(hold("r1", 500), 400, entry("r1"), usage(), event("r1"))
    again = wallet.wallets.settle(hold("r1", 500), 400, entry("r1"), usage(), event("r1", status=599))

    assert (again.charged, again.recorded) == (0, False)
    assert list(outbox(wallet)) == ["r1"] and outbox(wallet)["r1"]["status"] == 200


def test_a_release_writes_its_event_and_a_second_release_none(wallet):
    wallet.wallets.hold(hold("r2", 500))
    assert wallet.wallets.release(hold("r2", 500), usage(error=True), event("r2", status=502)) is True
    assert wallet.wallets.release(hold("r2", 500), usage(error=True), event("r2", status=503)) is False

    assert outbox(wallet)["r2"]["status"] == 502 and outbox(wallet)["r2"]["cost_units"] == 0


def test_the_one_machine_wallet_leaves_events_to_the_usage_files(sqlite_repos):
    assert sqlite_repos.wallets.records_events is False


def test_the_stream_carries_each_event_to_firehose_and_s3(wallet, emulator):
    outputs_stream = emulator.client("dynamodb").describe_table(
        TableName=f"{PREFIX}-usage-outbox")["Table"]["LatestStreamArn"]
    streams = emulator.client("dynamodbstreams")
    wallet.wallets.hold(hold("r4", 500))
    wallet.wallets.settle(hold("r4", 500), 400, entry("r4"), usage(), event("r4"))
    records = []
    for shard in streams.describe_stream(StreamArn=outputs_stream)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(StreamArn=outputs_stream, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        records.extend(streams.get_records(ShardIterator=iterator, Limit=1000)["Records"])
    mine = [record for record in records if "r4" in json.dumps(record, default=str)]
    assert [json.loads(line)["request_id"] for line in lines_of(mine)] == ["r4"]

    firehose = emulator.client("firehose")
    stream_name = f"{PREFIX}-usage"
    bucket = firehose.describe_delivery_stream(DeliveryStreamName=stream_name)["DeliveryStreamDescription"][
        "Destinations"][0]["ExtendedS3DestinationDescription"]["BucketARN"].split(":::")[1]
    s3 = emulator.client("s3")
    assert forward(firehose, stream_name, mine) == 1
    landed = [json.loads(line) for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])
              for line in s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode().splitlines()
              if line]
    assert [e["cost_units"] for e in landed if e["request_id"] == "r4"] == [400]


def insert(request_id: str) -> dict[str, Any]:
    return {"eventName": "INSERT", "dynamodb": {"NewImage": {"line": {"S": event(request_id).to_json_line().decode()}}}}


@dataclass
class RefusingFirehose:
    """A Firehose endpoint that refuses the first `refusals` records it is sent (as throttled)."""

    refusals: int
    sent: list[list[bytes]] = field(default_factory=list)

    def put_record_batch(self, DeliveryStreamName: str, Records: list[dict[str, bytes]]) -> dict[str, Any]:  # noqa: N803
        self.sent.append([record["Data"] for record in Records])
        answers = []
        for _ in Records:
            refused = self.refusals > 0
            self.refusals -= refused
            answers.append({"ErrorCode": "ServiceUnavailableException"} if refused else {"RecordId": "x"})
        return {"FailedPutCount": sum("ErrorCode" in a for a in answers), "RequestResponses": answers}


def test_records_firehose_refuses_are_sent_again_and_only_they():
    firehose = RefusingFirehose(refusals=1)
    assert forward(firehose, "s", [insert("a"), insert("b"), {"eventName": "REMOVE", "dynamodb": {}}]) == 2
    assert [len(batch) for batch in firehose.sent] == [2, 1]
    assert json.loads(firehose.sent[1][0])["request_id"] == "a"


def test_a_batch_firehose_keeps_refusing_raises_so_that_the_stream_delivers_it_again():
    with pytest.raises(RuntimeError, match="refused 1 usage events"):
        forward(RefusingFirehose(refusals=10), "s", [insert("a")])


def test_an_event_no_transaction_carried_is_put_on_its_own_as_a_batch_of_one(dynamo_repos, emulator):
    from chalicelib.storage.usage_sinks import FirehoseUsageSink

    firehose = emulator.client("firehose")
    stream_name = f"{PREFIX}-usage"
    bucket = firehose.describe_delivery_stream(DeliveryStreamName=stream_name)["DeliveryStreamDescription"][
        "Destinations"][0]["ExtendedS3DestinationDescription"]["BucketARN"].split(":::")[1]
    FirehoseUsageSink(firehose, stream_name).put(event("r5", status=502))

    s3 = emulator.client("s3")
    landed = [json.loads(line) for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])
              for line in s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode().splitlines()
              if line]
    assert [e["status"] for e in landed if e["request_id"] == "r5"] == [502]
