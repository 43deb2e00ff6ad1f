"""What a relay request is held for and sends upstream, and what the client is told it paid, over HTTP."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import pytest

from chalicelib.storage.dynamodb.common import from_item
from tests.api.conftest import Stack
from tests.fakes import upstream as faults

HELLO = [{"role": "user", "content": "Hello"}]


def post(stack: Stack, key: str, path: str, body: dict) -> httpx.Response:
    return stack.http.post(path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def spent(stack: Stack, account_id: str, funded: str) -> Decimal:
    wallet = stack.wallet(account_id)
    assert wallet["held_usd"] == "0.00"
    return Decimal(funded) - Decimal(wallet["balance_usd"])


def charges(stack: Stack, account_id: str) -> list[dict]:
    items = stack.aws("dynamodb").query(
        TableName=stack.outputs["LedgerTableName"], KeyConditionExpression="account_id = :a",
        ExpressionAttributeValues={":a": {"S": account_id}}, ConsistentRead=True)["Items"]
    return [entry for entry in map(from_item, items) if entry["kind"] == "charge"]


def assert_refused(response: httpx.Response, param: str) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert response.headers["x-tokenway-cost-usd"] == "0.00"


def test_thirty_parallel_caps_go_upstream_in_the_field_deepseek_reads(stack, upstream):
    account_id, key = stack.customer("0.001")
    # DeepSeek reads max_tokens and ignores max_completion_tokens; without a cap it writes on.
    upstream.fail_next(faults.writes(20_000, cap_field="max_tokens"), times=30)
    body = {"model": "deepseek-chat", "messages": HELLO, "max_completion_tokens": 1}

    with ThreadPoolExecutor(max_workers=30) as pool:
        responses = list(pool.map(lambda _: post(stack, key, "/v1/chat/completions", body), range(30)))

    assert [r.status_code for r in responses] == [200] * 30
    for request in upstream.requests:
        assert request.json["max_tokens"] == 1 and "max_completion_tokens" not in request.json
    told = sum(Decimal(r.headers["x-tokenway-cost-usd"]) for r in responses)
    assert told == spent(stack, account_id, "0.001")
    assert all(entry.get("shortfall", 0) == 0 for entry in charges(stack, account_id))


def test_an_operator_chat_model_without_a_max_output_sends_and_holds_the_default(stack, upstream):
    model = stack.admin("POST", "/admin/models", {"name": "no-max-output", "channel": "fake", "input_per_1m": "1",
                                                  "output_per_1m": "1"})
    assert (model["max_output_tokens"], model["cap_field"], model["pass_through"]) == (4096, "max_tokens", [])
    account_id, key = stack.customer("0.01")
    upstream.fail_next(faults.writes(20_000))

    response = post(stack, key, "/v1/chat/completions", {"model": "no-max-output", "messages": HELLO})

    assert upstream.requests[-1].json["max_tokens"] == 4096
    assert response.json()["usage"]["completion_tokens"] == 4096
    assert Decimal(response.headers["x-tokenway-cost-usd"]) == spent(stack, account_id, "0.01")
    [charge] = charges(stack, account_id)
    assert charge.get("shortfall", 0) == 0


def test_usage_beyond_the_wallet_tells_the_client_what_was_charged_and_records_the_shortfall(stack, upstream):
    account_id, key = stack.customer("0.00001")  # 10 000 units
    upstream.fail_next(faults.usage(prompt=10, completion=100_000))

    response = post(stack, key, "/v1/chat/completions", {"model": "deepseek-chat", "messages": HELLO,
                                                         "max_tokens": 1})

    assert response.status_code == 200
    assert response.headers["x-tokenway-cost-usd"] == response.json()["usage"]["cost_usd"] == "0.00001"
    assert stack.wallet(account_id)["balance_usd"] == "0.00"
    [charge] = charges(stack, account_id)
    assert charge["amount"] == -10_000 and charge["shortfall"] == 10 * 280 + 100_000 * 420 - 10_000


@pytest.mark.parametrize("value", ["", [], [""], ["a", ""], ["a"] * 2049, [[]], {"a": 1}])
def test_an_invalid_embeddings_input_is_400_and_reaches_no_upstream(stack, upstream, value):
    _, key = stack.customer("0")
    for _ in range(20 if value == "" else 1):
        assert_refused(post(stack, key, "/v1/embeddings", {"model": "text-embedding-3-small", "input": value}),
                       "input")
    assert upstream.requests == []


def test_an_image_is_charged_by_its_quality_and_size_and_unpriced_ones_are_refused(stack, upstream):
    account_id, key = stack.customer("1")
    hd = post(stack, key, "/v1/images/generations", {"model": "dall-e-3", "prompt": "a lotus", "quality": "hd",
                                                     "size": "1792x1024"})
    assert hd.headers["x-tokenway-cost-usd"] == "0.12"
    assert (upstream.requests[-1].json["quality"], upstream.requests[-1].json["size"]) == ("hd", "1792x1024")
    sent = len(upstream.requests)
    assert_refused(post(stack, key, "/v1/images/generations", {"model": "dall-e-3", "prompt": "x",
                                                               "size": "512x512"}), "size")
    assert_refused(post(stack, key, "/v1/images/generations", {"model": "dall-e-3", "prompt": "x",
                                                               "quality": "ultra"}), "quality")
    assert_refused(post(stack, key, "/v1/images/generations", {"model": "dall-e-3", "prompt": "x",
                                                               "num_images": 8}), "num_images")
    assert len(upstream.requests) == sent
    assert spent(stack, account_id, "1") == Decimal("0.12")


def test_the_images_an_upstream_returns_are_what_is_charged(stack, upstream):
    account_id, key = stack.customer("1")
    upstream.fail_next(faults.images(8))
    response = post(stack, key, "/v1/images/generations", {"model": "dall-e-3", "prompt": "a lotus", "n": 1})
    assert len(response.json()["data"]) == 8
    assert response.headers["x-tokenway-cost-usd"] == "0.32"
    assert spent(stack, account_id, "1") == Decimal("0.32")


@pytest.mark.parametrize("field, value", [("service_tier", "priority"), ("reasoning_effort", "high"),
                                          ("web_search_options", {}), ("modalities", ["text", "audio"])])
def test_a_price_changing_field_the_prices_do_not_cover_is_400(stack, upstream, field, value):
    account_id, key = stack.customer("1")
    assert_refused(post(stack, key, "/v1/chat/completions", {"model": "deepseek-chat", "messages": HELLO,
                                                             field: value}), field)
    assert upstream.requests == []
    assert spent(stack, account_id, "1") == 0


def test_an_operator_passes_a_price_changing_field_through_and_sets_the_cap_field(stack, upstream):
    stack.admin("POST", "/admin/models", {"name": "tiered-model", "channel": "fake", "input_per_1m": "1",
                                          "output_per_1m": "1", "pass_through": ["service_tier"],
                                          "cap_field": "max_completion_tokens", "max_output_tokens": 64})
    _, key = stack.customer("1")
    response = post(stack, key, "/v1/chat/completions", {"model": "tiered-model", "messages": HELLO,
                                                         "service_tier": "flex"})
    assert response.status_code == 200, response.text
    sent = upstream.requests[-1].json
    assert (sent["service_tier"], sent["max_completion_tokens"]) == ("flex", 64) and "max_tokens" not in sent


def test_a_large_response_format_is_held_for(stack, upstream):
    _, key = stack.customer("0.001")
    schema = {"type": "json_schema", "json_schema": {"name": "s", "schema": {"description": "x" * 65_000}}}
    response = post(stack, key, "/v1/chat/completions", {"model": "deepseek-chat", "messages": HELLO,
                                                         "max_tokens": 1, "response_format": schema})
    assert response.status_code == 402, response.text
    assert upstream.requests == []
    assert json.loads(response.text)["error"]["code"] == "insufficient_quota"
