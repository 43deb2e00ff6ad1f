"""The wallet's invariants through the whole stack, under concurrency."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx

from chalicelib.storage.dynamodb.common import from_item
from tests.fakes import upstream as faults


def test_fifty_racing_requests_on_a_wallet_that_affords_ten_never_overdraw_it(stack, upstream):
    # Output at $1 per 1M tokens and free input: a request capped at 100 output
    # tokens holds $0.0001, and the upstream reports exactly 100, so it costs that.
    stack.admin("POST", "/admin/models", {"name": "race-model", "channel": "fake", "input_per_1m": "0",
                                          "output_per_1m": "1"})
    account_id, key = stack.customer("0.001")
    upstream.fail_next(faults.usage(prompt=7, completion=100, cached=0), times=50)
    body = {"model": "race-model", "messages": [{"role": "user", "content": "go"}], "max_tokens": 100}

    def one(_: int) -> int:
        return httpx.post(stack.url + "/v1/chat/completions", json=body,
                          headers={"Authorization": f"Bearer {key}"}, timeout=60).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(one, range(50)))

    assert statuses.count(200) == 10
    assert statuses.count(402) == 40
    wallet = stack.wallet(account_id)
    assert (wallet["balance_usd"], wallet["held_usd"]) == ("0.00", "0.00")
    ledger = stack.aws("dynamodb").query(
        TableName=stack.outputs["LedgerTableName"], KeyConditionExpression="account_id = :a",
        ExpressionAttributeValues={":a": {"S": account_id}}, ConsistentRead=True)["Items"]
    amounts = [from_item(item)["amount"] for item in ledger]
    assert sorted(amounts) == [-100_000] * 10 + [1_000_000]
    assert sum(amounts) == 0


def test_every_request_lands_one_usage_event_in_the_bucket(stack, upstream):
    account_id, key = stack.customer("1")
    response = stack.http.post("/chat/completions", headers={"Authorization": f"Bearer {key}"},
                               json={"model": "deepseek-chat", "messages": [{"role": "user", "content": "Hi"}]})
    request_id = response.headers["x-request-id"]
    s3 = stack.aws("s3")
    bucket = stack.outputs["UsageBucketName"]
    events = []
    for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().decode()
        events.extend(json.loads(line) for line in body.splitlines() if line)
    [event] = [e for e in events if e["request_id"] == request_id]
    usage = response.json()["usage"]
    assert event["account_id"] == account_id and event["model"] == "deepseek-chat"
    assert event["channel"] == "fake" and event["status"] == 200 and event["stream"] is False
    assert (event["prompt_tokens"], event["completion_tokens"]) == (usage["prompt_tokens"],
                                                                    usage["completion_tokens"])
    assert Decimal(event["cost_usd"]) == Decimal(response.headers["x-tokenway-cost-usd"])
    assert event["latency_ms"] >= 0 and event["key_id"].startswith("key_")


def test_no_table_holds_a_plaintext_key(stack, upstream):
    account_id, key = stack.customer("1")
    stack.http.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                    json={"model": "deepseek-chat", "messages": [{"role": "user", "content": "Hi"}]})
    dynamodb = stack.aws("dynamodb")
    secret = key[3:]
    for table in dynamodb.list_tables()["TableNames"]:
        for page in dynamodb.get_paginator("scan").paginate(TableName=table):
            assert secret not in json.dumps(page["Items"]), table


def test_thirty_racing_requests_on_a_key_whose_quota_affords_five_never_pass_it(stack, upstream):
    stack.admin("POST", "/admin/models", {"name": "quota-race-model", "channel": "fake", "input_per_1m": "0",
                                          "output_per_1m": "1"})
    account = stack.admin("POST", "/admin/accounts", {"email": "quota-race@example.com"})["account_id"]
    stack.admin("POST", f"/admin/accounts/{account}/credit", {"amount_usd": "10"})
    key = stack.admin("POST", f"/admin/accounts/{account}/keys", {"name": "capped", "quota_usd": "0.0005"})
    upstream.fail_next(faults.usage(prompt=7, completion=100, cached=0), times=30)
    body = {"model": "quota-race-model", "messages": [{"role": "user", "content": "go"}], "max_tokens": 100}

    def one(_: int) -> httpx.Response:
        return httpx.post(stack.url + "/v1/chat/completions", json=body,
                          headers={"Authorization": f"Bearer {key['key']}"}, timeout=60)

    with ThreadPoolExecutor(max_workers=30) as pool:
        responses = list(pool.map(one, range(30)))

    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 5 and statuses.count(403) == 25
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 403} == {"key_quota_exceeded"}
    [listed] = stack.admin("GET", f"/admin/accounts/{account}/keys")["data"]
    assert (listed["spent_usd"], listed["quota_left_usd"]) == ("0.0005", "0.00")
    wallet = stack.wallet(account)
    assert (wallet["balance_usd"], wallet["held_usd"]) == ("9.9995", "0.00")
