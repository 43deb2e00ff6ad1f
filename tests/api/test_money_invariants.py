"""The wallet's invariants through the whole stack, under concurrency."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import pytest

from chalicelib.storage.dynamodb.common import from_item
from tests.api.conftest import ADMIN_TOKEN
from tests.api.test_server import usage_event
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
    # Written with the settlement, carried by the usage-outbox stream to Firehose, then S3.
    event = usage_event(stack, request_id)
    time.sleep(1)  # a second copy would have followed by now
    assert len(stack.usage_events(request_id)) == 1
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


def _ledger(stack, account_id: str) -> list[dict]:
    items = stack.aws("dynamodb").query(
        TableName=stack.outputs["LedgerTableName"], KeyConditionExpression="account_id = :a",
        ExpressionAttributeValues={":a": {"S": account_id}}, ConsistentRead=True)["Items"]
    return [from_item(item) for item in items]


def _key_item(stack, key_id: str) -> dict:
    dynamodb = stack.aws("dynamodb")
    [found] = dynamodb.query(
        TableName=stack.outputs["KeysTableName"], IndexName="key-id-index", KeyConditionExpression="key_id = :k",
        ExpressionAttributeValues={":k": {"S": key_id}})["Items"]
    return from_item(dynamodb.get_item(TableName=stack.outputs["KeysTableName"], Key={"key_hash": found["key_hash"]},
                                       ConsistentRead=True)["Item"])


def test_racing_requests_whose_usage_passes_their_holds_never_spend_past_the_key_quota(stack, upstream):
    # Each request holds $0.0001 (100 output tokens at $1 per 1M) but the upstream reports
    # 5000 output tokens ($0.005): beyond its hold, a request may take only what the key's
    # $0.001 quota has left.
    stack.admin("POST", "/admin/models", {"name": "overrun-model", "channel": "fake", "input_per_1m": "0",
                                          "output_per_1m": "1"})
    account = stack.admin("POST", "/admin/accounts", {"email": "overrun@example.com"})["account_id"]
    stack.admin("POST", f"/admin/accounts/{account}/credit", {"amount_usd": "10"})
    key = stack.admin("POST", f"/admin/accounts/{account}/keys", {"name": "capped", "quota_usd": "0.001"})
    upstream.fail_next(faults.usage(prompt=7, completion=5_000, cached=0), times=30)
    body = {"model": "overrun-model", "messages": [{"role": "user", "content": "go"}], "max_tokens": 100}

    def one(_: int) -> httpx.Response:
        return httpx.post(stack.url + "/v1/chat/completions", json=body,
                          headers={"Authorization": f"Bearer {key['key']}"}, timeout=60)

    with ThreadPoolExecutor(max_workers=30) as pool:
        responses = list(pool.map(one, range(30)))

    refused = [r for r in responses if r.status_code != 200]
    assert {(r.status_code, r.json()["error"]["code"]) for r in refused} <= {(403, "key_quota_exceeded")}
    [listed] = stack.admin("GET", f"/admin/accounts/{account}/keys")["data"]
    assert (listed["spent_usd"], listed["quota_left_usd"]) == ("0.001", "0.00")
    stored = _key_item(stack, key["key_id"])
    assert (stored["spent"], stored["quota_left"], stored["reserved"]) == (1_000_000, 0, 0)
    charges = [e for e in _ledger(stack, account) if e["kind"] == "charge"]
    assert len(charges) == 30 - len(refused)
    assert sum(-e["amount"] for e in charges) == 1_000_000
    shortfall = sum(e["shortfall"] for e in charges)
    assert shortfall == len(charges) * 5_000_000 - 1_000_000
    wallet = stack.wallet(account)
    assert (wallet["balance_usd"], wallet["held_usd"]) == ("9.999", "0.00")
    assert Decimal(wallet["shortfall_usd"]) == Decimal(shortfall) / 10**9


def test_requests_in_flight_when_their_key_is_regenerated_count_on_it(stack, upstream):
    email, password = f"{uuid.uuid4().hex[:10]}@example.com", "correct horse 42"
    account = httpx.post(stack.url + "/api/auth/signup", json={"email": email, "password": password}).json()
    session = httpx.post(stack.url + "/api/auth/login", json={"email": email, "password": password}).json()["token"]
    console = {"Authorization": f"Bearer {session}"}
    stack.admin("POST", f"/admin/accounts/{account['account_id']}/credit", {"amount_usd": "1"})
    created = httpx.post(stack.url + "/api/tokens", json={"name": "busy", "quota_usd": "0.5"}, headers=console).json()
    upstream.fail_next(faults.delay(1.0), times=10, path="/chat/completions")

    def one(_: int) -> httpx.Response:
        return httpx.post(stack.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {created['key']}"},
                          json={"model": "deepseek-chat", "messages": [{"role": "user", "content": "Hi"}]},
                          timeout=60)

    with ThreadPoolExecutor(max_workers=10) as pool:
        pending = [pool.submit(one, n) for n in range(10)]
        deadline = time.monotonic() + 30
        while len(upstream.requests) < 10 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert upstream.pending_faults == 0  # all ten are at the upstream, their holds open
        regenerated = httpx.post(stack.url + f"/api/tokens/{created['id']}/regenerate", headers=console)
        responses = [future.result() for future in pending]

    assert regenerated.status_code == 200, regenerated.text
    assert [r.status_code for r in responses] == [200] * 10
    paid = sum(Decimal(r.headers["x-tokenway-cost-usd"]) for r in responses)
    usage = httpx.get(stack.url + f"/api/tokens/{created['id']}/usage", headers=console).json()
    assert usage["requests"] == 10 and Decimal(usage["spent_usd"]) == paid
    assert usage["prompt_tokens"] == sum(r.json()["usage"]["prompt_tokens"] for r in responses)
    stored = _key_item(stack, created["id"])
    assert stored["reserved"] == 0 and Decimal(stored["quota_left"]) / 10**9 == Decimal("0.5") - paid
    assert Decimal(stack.wallet(account["account_id"])["balance_usd"]) == Decimal(1) - paid


def test_a_credit_with_a_reference_lands_once_however_often_it_is_sent(stack):
    account = stack.admin("POST", "/admin/accounts", {"email": f"{uuid.uuid4().hex[:8]}@example.com"})["account_id"]
    reference = f"evt_{uuid.uuid4().hex}"
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def one(_: int) -> httpx.Response:
        return httpx.post(stack.url + f"/admin/accounts/{account}/credit", headers=headers, timeout=30,
                          json={"amount_usd": "2.50", "note": "invoice 42", "reference": reference})

    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(one, range(10)))

    assert [r.status_code for r in responses] == [200] * 10
    answers = [r.json() for r in responses]
    assert sum(a["applied"] for a in answers) == 1
    assert len({a["credit"]["entry_id"] for a in answers}) == 1
    assert {(a["balance_usd"], a["credit"]["amount_usd"], a["credit"]["reference"]) for a in answers} == {
        ("2.50", "2.50", reference)}
    assert [e["amount"] for e in _ledger(stack, account)] == [2_500_000_000]
    assert stack.wallet(account)["balance_usd"] == "2.50"

    other = httpx.post(stack.url + f"/admin/accounts/{account}/credit", headers=headers,
                       json={"amount_usd": "3", "reference": reference})
    assert other.status_code == 409 and other.json()["error"]["code"] == "reference_conflict"
    fresh = [stack.admin("POST", f"/admin/accounts/{account}/credit", {"amount_usd": "1"}) for _ in range(2)]
    assert [f["applied"] for f in fresh] == [True, True] and fresh[-1]["balance_usd"] == "4.50"


@pytest.mark.parametrize("body, param", [
    ({"amount_usd": "1", "reference": ""}, "reference"),
    ({"amount_usd": "1", "reference": "   "}, "reference"),
    ({"amount_usd": "1", "reference": "r" * 201}, "reference"),
    ({"amount_usd": "1", "reference": 42}, "reference"),
    ({"amount_usd": "0", "reference": "evt_zero"}, "amount_usd"),
])
def test_a_bad_credit_is_400_naming_the_field_and_credits_nothing(stack, body, param):
    account = stack.admin("POST", "/admin/accounts", {"email": f"{uuid.uuid4().hex[:8]}@example.com"})["account_id"]
    response = httpx.post(stack.url + f"/admin/accounts/{account}/credit", json=body,
                          headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 400 and response.json()["error"]["param"] == param
    assert stack.wallet(account)["balance_usd"] == "0.00"
