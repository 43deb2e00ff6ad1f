"""What a relay request is held for, what goes upstream, and what the client is told it paid.

The upstream here bills like the red team's probes: every prompt field, and the
output cap only from the field its provider reads (see relay_requests.billing_upstream).
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from chalicelib.billing.pricing import prompt_tokens
from chalicelib.catalog.catalog import BUILTIN_MODELS, DEFAULT_MAX_OUTPUT_TOKENS
from chalicelib.core.domain import ModelEntry
from chalicelib.core.errors import InsufficientQuota, InvalidRequest, UpstreamUnavailable
from chalicelib.core.validation import parse
from chalicelib.relay.schemas import EmbeddingsRequest
from tests.unit.conftest import CHAT, EMBED, IMAGE, World, chat_reply, chunk, sse
from tests.unit.relay_requests import HELLO, billing_upstream, chat, embed, images

BIG = "x" * 65_000


def charges(world: World) -> list:
    return [entry for entry in world.ledger() if entry.kind == "charge"]


def assert_nothing_held_or_sent(world: World) -> None:
    assert world.sent == [] and world.balance().held == 0 and charges(world) == []


# The prompt estimate covers every field sent upstream.

@pytest.mark.parametrize("field, value", [
    ("functions", [{"name": "f", "description": BIG, "parameters": {"type": "object"}}]),
    ("response_format", {"type": "json_schema", "json_schema": {"name": "s", "description": BIG}}),
    ("tools", [{"type": "function", "function": {"name": "f", "description": BIG}}]),
    ("metadata", {"note": BIG}),
])
def test_a_large_field_besides_messages_is_held_for(world, field, value):
    world.fund("0.001")
    bill = billing_upstream()
    held_during_call = []

    def upstream(request):
        held_during_call.append(world.balance().held)
        return bill(request)

    world.handler = upstream
    with pytest.raises(InsufficientQuota):
        chat(world, max_tokens=1, **{field: value})
    assert_nothing_held_or_sent(world)

    world.fund("1")
    result = chat(world, max_tokens=1, **{field: value})
    assert world.sent_json()[field] == value
    [charge] = charges(world)
    assert result.cost_units == -charge.amount <= held_during_call[0]


# The cap the hold paid for goes upstream, in the field the provider reads.

def test_thirty_parallel_requests_capped_in_the_field_the_provider_ignores_cost_what_they_served(world):
    # test-chat's provider reads max_tokens only (as DeepSeek and GLM do).
    world.fund("0.001")
    world.handler = billing_upstream(cap_field="max_tokens", writes=20_000)
    barrier = threading.Barrier(30)

    def one(n: int):
        barrier.wait()
        try:
            return chat(world, f"req_{n}", max_completion_tokens=1)
        except InsufficientQuota:
            return None

    with ThreadPoolExecutor(max_workers=30) as pool:
        results = [r for r in pool.map(one, range(30)) if r is not None]

    assert results
    for request in world.sent:
        sent = json.loads(request.content)
        assert sent["max_tokens"] == 1 and "max_completion_tokens" not in sent
    assert all(entry.shortfall == 0 for entry in charges(world))
    told = sum(result.cost_units for result in results)
    assert told == -sum(entry.amount for entry in charges(world)) == 10**6 - world.balance().available
    assert world.balance().held == 0


def test_a_model_without_a_max_output_is_capped_at_the_default_which_is_held_for_and_sent(world):
    world.catalog_repo.put_model(ModelEntry(**{**CHAT.__dict__, "name": "uncapped", "max_output_tokens": None}))
    world.fund("0.01")
    world.handler = billing_upstream(writes=20_000)

    result = chat(world, model="uncapped")

    assert world.sent_json()["max_tokens"] == DEFAULT_MAX_OUTPUT_TOKENS
    [charge] = charges(world)
    assert charge.shortfall == 0 and result.cost_units == -charge.amount
    assert world.balance().available == usd(0.01) - result.cost_units


def test_every_builtin_chat_model_has_a_max_output_and_a_cap_field():
    for model in BUILTIN_MODELS.values():
        if model.kind.value == "chat":
            assert model.max_output_tokens and model.cap_field in ("max_tokens", "max_completion_tokens")
    assert BUILTIN_MODELS["deepseek-chat"].cap_field == "max_tokens"
    assert BUILTIN_MODELS["glm-4"].cap_field == "max_tokens"
    assert BUILTIN_MODELS["gpt-4o"].cap_field == "max_completion_tokens"


def usd(amount: float) -> int:
    return round(amount * 10**9)


# Embeddings input, validated as OpenAI does; nothing unheld goes upstream.

@pytest.mark.parametrize("value", [
    "", [], [""], ["ok", ""], ["x"] * 2049, None, 3, True, {"text": "x"}, [1.5], [[1, 2], []], [["a"]],
    [1, "a"], [True], [-1], [[1, -2]],
])
def test_an_invalid_embeddings_input_is_400_naming_input(world, value):
    with pytest.raises(InvalidRequest) as caught:
        embed(world, input=value)
    assert caught.value.param == "input" and caught.value.status == 400
    assert_nothing_held_or_sent(world)


def test_twenty_empty_embeddings_on_an_empty_wallet_reach_no_upstream(world):
    for n in range(20):
        with pytest.raises(InvalidRequest):
            embed(world, f"r{n}", input=[""])
        with pytest.raises(InsufficientQuota):
            embed(world, f"s{n}", input=[[7]])  # one token costs more than nothing
    assert_nothing_held_or_sent(world)


@pytest.mark.parametrize("value", ["Hello", ["a"] * 2048, [1, 2, 3], [[1], [2, 3]]])
def test_valid_embeddings_inputs_pass(value):
    assert parse(EmbeddingsRequest, {"model": "m", "input": value}).input == value


# What the client is told is what the wallet was charged.

def test_a_stream_whose_usage_passes_the_hold_tells_the_client_what_was_charged(world):
    world.fund("0.00003")  # 30 000 units
    usage = {"prompt_tokens": 10, "completion_tokens": 1000, "total_tokens": 1010}
    world.handler = lambda r: httpx.Response(200, content=sse(chunk("Hi"), chunk(finish="stop"),
                                                              chunk(usage=usage, choices=False)))
    result = chat(world, stream=True, max_tokens=1, stream_options={"include_usage": True})
    events = list(result.events)

    last = json.loads(events[-2][6:])
    assert last["usage"]["cost_usd"] == "0.00003" and result.cost_units == 30_000
    assert events[-1] == "data: [DONE]\n\n"
    [charge] = charges(world)
    assert charge.amount == -30_000 and charge.shortfall == 10 * 1000 + 1000 * 2000 - 30_000
    assert world.usage.events[-1].shortfall_units == charge.shortfall


# Images: by quality and size, and the count the upstream returns.

DALL_E = ModelEntry(**{**IMAGE.__dict__, "name": "test-dalle", "prices": BUILTIN_MODELS["dall-e-3"].prices})


def image_answer(count: int):
    return lambda r: httpx.Response(200, json={"created": 1, "data": [{"url": f"u{i}"} for i in range(count)]})


@pytest.mark.parametrize("quality, size, usd_each", [
    (None, None, "0.04"), ("standard", "1024x1024", "0.04"), ("standard", "1792x1024", "0.08"),
    (None, "1024x1792", "0.08"), ("hd", None, "0.08"), ("hd", "1024x1024", "0.08"), ("hd", "1792x1024", "0.12"),
    ("hd", "1024x1792", "0.12"),
])
def test_images_are_priced_by_quality_and_size(world, quality, size, usd_each):
    world.catalog_repo.put_model(DALL_E)
    world.fund("1")
    world.handler = image_answer(1)
    body = {key: value for key, value in (("quality", quality), ("size", size)) if value}
    result = images(world, model="test-dalle", **body)
    assert result.cost_units == usd(float(usd_each))
    assert {k: world.sent_json()[k] for k in body} == body


@pytest.mark.parametrize("body, param", [
    ({"quality": "ultra"}, "quality"), ({"size": "512x512"}, "size"), ({"quality": "hd", "size": "256x256"}, "size"),
    ({"size": 1024}, "size"),
])
def test_an_unpriced_quality_or_size_is_400(world, body, param):
    world.catalog_repo.put_model(DALL_E)
    world.fund("1")
    with pytest.raises(InvalidRequest) as caught:
        images(world, model="test-dalle", **body)
    assert caught.value.param == param
    assert_nothing_held_or_sent(world)


@pytest.mark.parametrize("field", ["num_images", "number_of_images", "num_outputs", "batch_size"])
def test_a_providers_own_image_count_is_refused(world, field):
    world.fund("1")
    with pytest.raises(InvalidRequest) as caught:
        images(world, **{field: 8})
    assert caught.value.param == field
    assert_nothing_held_or_sent(world)


def test_the_images_the_upstream_returns_are_what_is_charged(world):
    world.fund("1")
    world.handler = image_answer(8)
    result = images(world, n=1)
    assert result.cost_units == 8 * usd(0.04)
    assert world.usage.events[-1].images == 8
    assert world.balance().available == usd(1) - 8 * usd(0.04)


# Every usage shape a supported provider sends is read.

@pytest.mark.parametrize("usage, cost", [
    ({"input_tokens": 10, "output_tokens": 5}, 10 * 1000 + 5 * 2000),
    ({"input_tokens": 6, "cache_read_input_tokens": 4, "output_tokens": 5}, 6 * 1000 + 4 * 500 + 5 * 2000),
    ({"input_tokens": 10, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 5},
     6 * 1000 + 4 * 500 + 5 * 2000),
    ({"prompt_tokens": 10, "completion_tokens": 5, "prompt_cache_hit_tokens": 4}, 6 * 1000 + 4 * 500 + 5 * 2000),
    ({"prompt_tokens": 10, "completion_tokens": 5, "cached_tokens": 4}, 6 * 1000 + 4 * 500 + 5 * 2000),
])
def test_each_providers_usage_shape_is_charged(world, usage, cost):
    world.fund("1")
    reply = {**chat_reply(), "usage": usage}
    world.handler = lambda r: httpx.Response(200, json=reply)
    result = chat(world)
    assert result.cost_units == cost
    assert result.body["usage"]["prompt_tokens"] == 10 and result.body["usage"]["completion_tokens"] == 5


@pytest.mark.parametrize("usage", [{}, {"total_tokens": 15}, {"prompt_tokens": None}])
def test_a_usage_without_counts_is_charged_the_estimate(world, usage):
    world.fund("1")
    reply = {**chat_reply("abcdef"), "usage": usage}
    world.handler = lambda r: httpx.Response(200, json=reply)
    result = chat(world)
    assert result.cost_units == prompt_tokens(HELLO) * 1000 + 2 * 2000


def test_a_stream_in_another_usage_shape_is_charged(world):
    world.fund("1")
    usage = {"input_tokens": 10, "output_tokens": 2}
    world.handler = lambda r: httpx.Response(200, content=sse(chunk("Hi"), chunk(finish="stop"),
                                                              chunk(usage=usage, choices=False)))
    result = chat(world, stream=True)
    list(result.events)
    assert result.cost_units == 10 * 1000 + 2 * 2000


def test_embeddings_in_another_usage_shape_are_charged(world):
    world.fund("1")
    world.handler = lambda r: httpx.Response(200, json={
        "object": "list", "usage": {"input_tokens": 1000}, "data": [{"object": "embedding", "embedding": [0.1]}]})
    assert embed(world, input="Hello").cost_units == 1000 * 20


# Fields that change the provider's price: refused unless the model passes them through.

@pytest.mark.parametrize("field, value", [
    ("service_tier", "priority"), ("reasoning_effort", "high"), ("audio", {"voice": "alloy", "format": "wav"}),
    ("modalities", ["text", "audio"]), ("web_search_options", {}), ("prediction", {"type": "content",
                                                                                    "content": "x"}),
])
def test_a_price_changing_field_is_refused_unless_the_model_passes_it_through(world, field, value):
    world.fund("1")
    with pytest.raises(InvalidRequest) as caught:
        chat(world, **{field: value})
    assert caught.value.param == field and caught.value.status == 400
    assert_nothing_held_or_sent(world)

    world.catalog_repo.put_model(ModelEntry(**{**CHAT.__dict__, "pass_through": (field,)}))
    chat(world, **{field: value})
    assert world.sent_json()[field] == value


def test_text_only_modalities_and_null_fields_pass(world):
    world.fund("1")
    chat(world, modalities=["text"], service_tier=None)
    assert world.sent_json()["modalities"] == ["text"]


def test_embeddings_take_their_unknown_fields_upstream(world):
    world.fund("1")
    world.handler = lambda r: httpx.Response(200, json={"object": "list", "usage": {"prompt_tokens": 2},
                                                        "data": []})
    embed(world, input="Hello", dimensions=64, encoding_format="base64")
    sent = world.sent_json()
    assert (sent["dimensions"], sent["encoding_format"]) == (64, "base64")
    assert sent["model"] == EMBED.routes[0].upstream_model


# Every way out after the hold closes it at once and records the request.

def test_an_unexpected_failure_after_the_hold_releases_it_records_it_and_propagates(world):
    world.fund("1")

    def broken(request):
        raise RuntimeError("the client library broke")

    world.handler = broken
    with pytest.raises(RuntimeError):
        chat(world)
    assert world.balance().held == 0 and world.balance().available == usd(1)
    [event] = world.usage.events
    assert (event.status, event.error_type, event.cost_units) == (500, "api_error", 0)


def test_an_unexpected_failure_mid_stream_closes_the_hold_and_records_a_500(world):
    world.fund("1")

    def broken_stream():
        yield sse(chunk("abc"), done=False)
        raise RuntimeError("the client library broke")

    world.handler = lambda r: httpx.Response(200, content=broken_stream())
    result = chat(world, stream=True)
    with pytest.raises(RuntimeError):
        list(result.events)
    assert world.balance().held == 0
    event = world.usage.events[-1]
    assert (event.status, event.error_type) == (500, "api_error")
    assert result.cost_units == -charges(world)[0].amount  # the content delivered, as for a cut stream


def test_a_failed_upstream_is_recorded_with_its_status_and_type(world):
    world.fund("1")
    world.handler = lambda r: httpx.Response(503, json={"error": {"message": "overloaded"}})
    with pytest.raises(UpstreamUnavailable):
        embed(world, input="Hello")
    [event] = world.usage.events
    assert (event.status, event.error_type, event.endpoint) == (502, "upstream_error", "embeddings")
    assert world.balance().held == 0
