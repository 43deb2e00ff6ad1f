"""`/v1/messages` on Anthropic channels, natively, driven with the official `anthropic` SDK through the one-machine
server: the body reaches the fake Anthropic upstream as the client sent it, the answer and each stream event come
back as Anthropic sent them (naming the model that answered), and the wallet is charged exactly once, cache reads
and writes at their own prices, also across a fallback to or from an OpenAI-compatible channel."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import anthropic
import httpx
import pytest

from chalicelib.billing.pricing import text_tokens
from tests.api.conftest import Stack
from tests.api.test_limits import away_from_a_minute_boundary, limited_customer
from tests.api.test_relay_charges import charges
from tests.fakes import upstream as faults
from tests.fakes.anthropic_upstream import SIGNATURE, FakeAnthropic

UPSTREAM_MODEL = "claude-sonnet-4-5"
# USD per 1M tokens, as claude-sonnet's list prices; deepseek-chat (the OpenAI-compatible backup) at its own.
INPUT, CACHE_READ, CACHE_WRITE, OUTPUT = Decimal("3.00"), Decimal("0.30"), Decimal("3.75"), Decimal("15.00")
DEEPSEEK_INPUT, DEEPSEEK_OUTPUT = Decimal("0.28"), Decimal("0.42")
USAGE = {"input_tokens": 21, "cache_read_input_tokens": 1200, "cache_creation_input_tokens": 345,
         "output_tokens": 17}
HELLO = [{"role": "user", "content": "Hello"}]
CAP = 4096  # the model's max_output_tokens
# Anthropic-only fields, which a chat has no place for: they reach the upstream as they are.
NATIVE = {
    "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "top_k": 7,
    "metadata": {"user_id": "customer-42"},
    "service_tier": "standard_only",
    "tools": [{"name": "get_weather", "description": "The weather in a city",
               "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
               "cache_control": {"type": "ephemeral"}},
              {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"}],
    "messages": [{"role": "user", "content": [
        {"type": "text", "text": "A long shared context.", "cache_control": {"type": "ephemeral", "ttl": "5m"}},
        {"type": "text", "text": "Hello"}]}],
}


@pytest.fixture(scope="module")
def claude(stack: Stack) -> Iterator[tuple[FakeAnthropic, str, str]]:
    """The fake behind an Anthropic channel, the name of a model it serves at claude-sonnet's prices, and the
    channel's name."""
    fake = FakeAnthropic()
    fake.start()
    channel, name = f"native-{uuid.uuid4().hex[:6]}", f"claude-native-{uuid.uuid4().hex[:6]}"
    stack.admin("POST", "/admin/channels", {"name": channel, "kind": "anthropic", "base_url": fake.base_url,
                                            "api_key": "sk-ant-native"})
    stack.admin("POST", "/admin/models", {
        "name": name, "channel": channel, "upstream_model": UPSTREAM_MODEL, "input_per_1m": str(INPUT),
        "cached_input_per_1m": str(CACHE_READ), "cache_write_per_1m": str(CACHE_WRITE),
        "output_per_1m": str(OUTPUT), "max_output_tokens": CAP})
    yield fake, name, channel
    fake.stop()


@pytest.fixture
def fake(claude: tuple[FakeAnthropic, str, str]) -> Iterator[FakeAnthropic]:
    claude[0].reset()
    claude[0].usage = dict(USAGE)
    yield claude[0]
    claude[0].reset()


@pytest.fixture
def model(claude: tuple[FakeAnthropic, str, str]) -> str:
    return claude[1]


def client(stack: Stack, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stack.url, api_key=key, max_retries=0)


def claude_cost(usage: dict[str, int]) -> Decimal:
    return (usage["input_tokens"] * INPUT + usage["cache_read_input_tokens"] * CACHE_READ
            + usage["cache_creation_input_tokens"] * CACHE_WRITE + usage["output_tokens"] * OUTPUT) / 10**6


def deepseek_cost(prompt: int, completion: int) -> Decimal:
    return (prompt * DEEPSEEK_INPUT + completion * DEEPSEEK_OUTPUT) / 10**6


def spent(stack: Stack, account_id: str, funded: str = "5") -> Decimal:
    wallet = stack.wallet(account_id)
    assert wallet["held_usd"] == "0.00"
    return Decimal(funded) - Decimal(wallet["balance_usd"])


def settled(stack: Stack, account_id: str, within_s: float = 5) -> None:
    deadline = time.monotonic() + within_s
    while stack.wallet(account_id)["held_usd"] != "0.00":
        assert time.monotonic() < deadline, "the hold was not settled"
        time.sleep(0.05)


def sse_events(text: str) -> list[str]:
    """The events of an SSE body, each as its text with the blank line that ends it."""
    return [event + "\n\n" for event in text.split("\n\n") if event.strip()]


def data(event: str) -> dict[str, Any]:
    return json.loads(next(line for line in event.split("\n") if line.startswith("data:"))[5:])


def test_a_message_goes_up_as_sent_and_comes_back_as_anthropic_sent_it_charged_for_cache_reads_and_writes(
        stack, fake, model):
    account_id, key = stack.customer("5")
    fake.reply("Hi.", thinking="The user greets me.")

    fields = {name: value for name, value in NATIVE.items() if name != "top_k"}  # no longer in the SDK's signature
    raw = client(stack, key).messages.with_raw_response.create(model=model, max_tokens=2000, **fields,
                                                               extra_body={"top_k": NATIVE["top_k"]})
    message = raw.parse()

    sent = fake.requests[-1]
    assert sent.json == {**NATIVE, "model": UPSTREAM_MODEL, "max_tokens": 2000}
    assert sent.headers["x-api-key"] == "sk-ant-native"
    assert message.id == "msg_fake01" and message.model == model
    thinking, text = message.content
    assert (thinking.type, thinking.thinking, thinking.signature) == ("thinking", "The user greets me.", SIGNATURE)
    assert (text.type, text.text, message.stop_reason) == ("text", "Hi.", "end_turn")
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens,
            message.usage.cache_creation_input_tokens, message.usage.output_tokens) == (21, 1200, 345, 17)
    cost = claude_cost(USAGE)  # the cache write at $3.75, the cache read at $0.30
    assert Decimal(raw.headers["x-tokenway-cost-usd"]) == cost == Decimal(message.usage.model_extra["cost_usd"])
    assert spent(stack, account_id) == cost
    [charge] = charges(stack, account_id)
    assert (-charge["amount"], charge["model"]) == (cost * 10**9, model)
    [event] = stack.usage_events(raw.headers["request-id"])
    assert (event["model"], event["status"], event["stream"]) == (model, 200, False)
    assert (event["prompt_tokens"], event["cached_tokens"], event["completion_tokens"]) == (21 + 1200 + 345, 1200, 17)
    assert Decimal(event["cost_usd"]) == cost


def test_a_stream_passes_each_event_on_as_anthropic_sent_it(stack, fake, model):
    account_id, key = stack.customer("5")
    fake.reply("Hi there, friend.", thinking="Greet back briefly.")

    with httpx.Client(timeout=30) as http:
        response = http.post(stack.url + "/v1/messages", headers={"x-api-key": key},
                             json={"model": model, "max_tokens": 2000, "stream": True, **NATIVE})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")

    assert fake.requests[-1].json == {**NATIVE, "model": UPSTREAM_MODEL, "max_tokens": 2000, "stream": True}
    received, upstream_sent = sse_events(response.text), fake.streamed[-1]
    assert len(received) == len(upstream_sent)
    for ours, theirs in zip(received, upstream_sent, strict=True):
        if data(theirs)["type"] not in ("message_start", "message_delta"):
            assert ours == theirs  # the very text Anthropic sent
    start, delta = data(received[0]), data(received[-2])
    assert start["message"]["model"] == model and data(upstream_sent[0])["message"]["model"] == UPSTREAM_MODEL
    assert {**start["message"], "model": UPSTREAM_MODEL} == data(upstream_sent[0])["message"]
    deltas = [data(event)["delta"]["type"] for event in received if data(event)["type"] == "content_block_delta"]
    assert list(dict.fromkeys(deltas)) == ["thinking_delta", "signature_delta", "text_delta"]
    cost = claude_cost(USAGE)  # input and cache counts from message_start, the output from message_delta
    assert Decimal(delta["usage"].pop("cost_usd")) == cost == spent(stack, account_id)
    assert delta == data(upstream_sent[-2])
    [event] = stack.usage_events(response.headers["request-id"])
    assert (event["status"], event["stream"], event["completion_tokens"]) == (200, True, 17)
    assert len(charges(stack, account_id)) == 1


def test_the_sdk_streams_thinking_and_text_and_the_final_message_carries_the_usage(stack, fake, model):
    account_id, key = stack.customer("5")
    fake.reply("Four.", thinking="Two and two.")
    with client(stack, key).messages.stream(model=model, max_tokens=2000, messages=HELLO,
                                            thinking={"type": "enabled", "budget_tokens": 1024}) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert "thinking" in kinds and "signature" in kinds and "text" in kinds
    assert [block.type for block in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == "Two and two." and final.content[1].text == "Four."
    assert final.model == model and final.usage.cache_creation_input_tokens == 345
    assert fake.requests[-1].json["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert spent(stack, account_id) == claude_cost(USAGE)


def test_the_output_cap_is_what_was_held_for_and_the_gateways_fields_stay_home(stack, fake, model):
    _, key = stack.customer("5")
    response = stack.http.post("/v1/messages", headers={"x-api-key": key},
                               json={"model": model, "models": ["deepseek-chat"], "max_tokens": 50_000,
                                     "messages": HELLO})
    assert response.status_code == 200, response.text
    assert fake.requests[-1].json == {"model": UPSTREAM_MODEL, "max_tokens": CAP, "messages": HELLO}


def test_a_wallet_that_affords_less_than_the_cap_sends_the_cap_it_affords(stack, fake, model):
    account_id, key = stack.customer("0.01")
    client(stack, key).messages.create(model=model, max_tokens=1000, messages=HELLO)
    sent = fake.requests[-1].json["max_tokens"]
    # $0.01 affords the prompt estimate and fewer than 1000 output tokens at $15 / 1M.
    assert 0 < sent < 1000
    assert spent(stack, account_id, "0.01") == claude_cost(USAGE)


def answered(sdk: anthropic.Anthropic, stream: bool, **body: Any) -> tuple[Any, Decimal]:
    """The SDK's message, plain or streamed, and the cost its usage told; a stream's message_start names the
    same model as its final message."""
    if not stream:
        message = sdk.messages.create(**body)
        return message, Decimal(message.usage.model_extra["cost_usd"])
    with sdk.messages.stream(**body) as events:
        seen = list(events)
        message = events.get_final_message()
    [start] = [event.message.model for event in seen if event.type == "message_start"]
    [delta] = [event.usage for event in seen if event.type == "message_delta"]
    assert start == message.model
    return message, Decimal(delta.model_extra["cost_usd"])


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_failing_anthropic_primary_falls_back_to_an_openai_compatible_backup_billed_once(
        stack, fake, upstream, model, stream):
    account_id, key = stack.customer("5")
    fake.fail_next(529, "Overloaded")
    upstream.fail_next(faults.usage(prompt=1000, completion=500), path="/chat/completions")
    sdk = client(stack, key)

    answer, told = answered(sdk, stream, model=model, max_tokens=100, messages=HELLO,
                            extra_body={"models": ["deepseek-chat"]})

    assert answer.model == "deepseek-chat" and "Hello" in answer.content[0].text
    assert len(fake.requests) == 1 and upstream.requests[-1].json["model"] == "deepseek-chat"
    assert "models" not in upstream.requests[-1].json
    cost = deepseek_cost(1000, 500)
    assert told == cost == spent(stack, account_id)
    [charge] = charges(stack, account_id)
    assert charge["model"] == "deepseek-chat"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_failing_openai_compatible_primary_falls_back_to_anthropic_natively_billed_once(
        stack, fake, upstream, model, stream):
    account_id, key = stack.customer("5")
    upstream.fail_next(faults.http_error(503), path="/chat/completions")
    fake.reply("From Claude.", thinking="Mulling.")
    sdk = client(stack, key)
    answer, told = answered(sdk, stream, model="deepseek-chat", max_tokens=100, messages=HELLO,
                            extra_body={"models": [model], "top_k": 3})

    assert answer.model == model and [block.type for block in answer.content] == ["thinking", "text"]
    assert len(upstream.requests) == 1
    assert fake.requests[-1].json["top_k"] == 3 and "models" not in fake.requests[-1].json
    cost = claude_cost(USAGE)
    assert told == cost == spent(stack, account_id)
    [charge] = charges(stack, account_id)
    assert charge["model"] == model


def test_anthropics_refusal_passes_through_in_its_envelope_with_its_status_and_costs_nothing(stack, fake, model):
    account_id, key = stack.customer("5")
    fake.fail_next(400, "thinking.budget_tokens: must be less than max_tokens")
    with pytest.raises(anthropic.BadRequestError) as refused:
        client(stack, key).messages.create(model=model, max_tokens=100, messages=HELLO,
                                           thinking={"type": "enabled", "budget_tokens": 2048})
    assert refused.value.status_code == 400
    assert refused.value.body == {"type": "error", "error": {
        "type": "invalid_request_error", "message": "thinking.budget_tokens: must be less than max_tokens"}}
    assert refused.value.response.headers["x-tokenway-cost-usd"] == "0.00"
    assert len(fake.requests) == 1
    assert spent(stack, account_id) == 0 and charges(stack, account_id) == []
    [event] = stack.usage_events(refused.value.response.headers["request-id"])
    assert (event["status"], event["cost_usd"]) == (400, "0.00")

    fake.fail_next(404, "model: claude-nope", type="not_found_error")
    streamed = stack.http.post("/v1/messages", headers={"x-api-key": key},
                               json={"model": model, "max_tokens": 10, "messages": HELLO, "stream": True})
    assert streamed.status_code == 404
    assert streamed.json() == {"type": "error", "error": {"type": "not_found_error", "message": "model: claude-nope"}}


def test_an_upstream_failure_is_the_gateways_own_api_error(stack, fake, model):
    account_id, key = stack.customer("5")
    fake.fail_next(500, "internal")
    with pytest.raises(anthropic.APIStatusError) as failed:
        client(stack, key).messages.create(model=model, max_tokens=10, messages=HELLO)
    assert failed.value.status_code == 502 and failed.value.body["error"]["type"] == "api_error"
    assert spent(stack, account_id) == 0


def test_an_error_event_mid_stream_passes_through_and_what_was_delivered_is_charged(stack, fake, model):
    account_id, key = stack.customer("5")
    fake.reply("one two three four five six", fail_after=2)
    with httpx.Client(timeout=30) as http:
        response = http.post(stack.url + "/v1/messages", headers={"x-api-key": key},
                             json={"model": model, "max_tokens": 1000, "stream": True, "messages": HELLO})
    events = sse_events(response.text)
    assert events[1:-1] == fake.streamed[-1][1:-1]  # between message_start and it, each as Anthropic sent it
    # Anthropic's own error event.
    assert data(events[-1]) == data(fake.streamed[-1][-1]) == {
        "type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert "message_stop" not in response.text
    [event] = stack.usage_events(response.headers["request-id"])
    assert event["status"] == 502
    # The prompt as message_start reported it, and the two words delivered, as estimated.
    delivered = text_tokens("one ") + text_tokens("two ")
    assert (event["prompt_tokens"], event["completion_tokens"]) == (1566, delivered)
    assert spent(stack, account_id) == claude_cost({**USAGE, "output_tokens": delivered}) == Decimal(event["cost_usd"])


def test_a_client_that_hangs_up_mid_stream_is_settled_for_what_was_delivered(stack, fake, model):
    account_id, key = stack.customer("5")
    words = [f"word{index}" for index in range(40)]
    fake.reply(" ".join(words), interval_s=0.15)
    received: list[str] = []
    with httpx.Client(timeout=30) as http, http.stream(
            "POST", stack.url + "/v1/messages", headers={"x-api-key": key},
            json={"model": model, "max_tokens": 500, "stream": True, "messages": HELLO}) as response:
        request_id = response.headers["request-id"]
        for line in response.iter_lines():
            if line.startswith("data:") and data(line)["type"] == "content_block_delta":
                received.append(data(line)["delta"]["text"])
            if len(received) == 2:
                break  # and hang up
    settled(stack, account_id)

    [event] = stack.usage_events(request_id)
    assert (event["status"], event["error_type"], event["stream"]) == (499, "client_closed_request", True)
    # The prompt as message_start reported it; the content delivered, at least what the client read and less
    # than the whole reply.
    assert event["prompt_tokens"] == 1566 and event["cached_tokens"] == 1200
    assert sum(map(text_tokens, received)) <= event["completion_tokens"] < sum(text_tokens(w + " ") for w in words)
    cost = claude_cost({**USAGE, "output_tokens": event["completion_tokens"]})
    assert spent(stack, account_id) == cost == Decimal(event["cost_usd"])
    assert len(charges(stack, account_id)) == 1


def test_a_server_tool_charged_per_use_is_refused_unless_the_model_passes_it_through(stack, claude, fake, model):
    account_id, key = stack.customer("5")
    with pytest.raises(anthropic.BadRequestError) as refused:
        client(stack, key).messages.create(model=model, max_tokens=100, messages=HELLO,
                                           tools=[{"type": "web_search_20250305", "name": "web_search"}])
    assert "web_search_20250305" in refused.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError):
        client(stack, key).messages.create(model=model, max_tokens=100, messages=HELLO,
                                           extra_body={"speed": "fast"})
    assert fake.requests == [] and spent(stack, account_id) == 0

    searching = f"claude-searching-{uuid.uuid4().hex[:6]}"
    stack.admin("POST", "/admin/models", {"name": searching, "channel": claude[2], "upstream_model": UPSTREAM_MODEL,
                                          "input_per_1m": "3", "output_per_1m": "15", "max_output_tokens": 1024,
                                          "pass_through": ["web_search"]})
    searched = client(stack, key).messages.create(model=searching, max_tokens=100, messages=HELLO,
                                                  tools=[{"type": "web_search_20250305", "name": "web_search"}])
    assert searched.model == searching and fake.requests[-1].json["tools"][0]["type"] == "web_search_20250305"


def test_the_keys_limits_hold_the_estimate_give_the_slot_back_and_correct_the_tokens(stack, fake, model):
    _, account_id, key = limited_customer(stack, tpm=100_000, concurrency=1)
    away_from_a_minute_boundary()
    sdk = client(stack, key)
    with sdk.messages.with_streaming_response.create(model=model, max_tokens=100, messages=HELLO,
                                                     stream=True) as streamed:
        first = streamed.headers
        assert "message_stop" in streamed.read().decode()
    estimate = 100_000 - int(first["x-ratelimit-remaining-tokens"])
    assert first["x-ratelimit-limit-tokens"] == "100000" and estimate > 100  # the prompt and the cap held for

    # The slot came back when the stream ended, and the tokens counted are what it used, not its estimate.
    second = sdk.messages.with_raw_response.create(model=model, max_tokens=100, messages=HELLO).headers
    used = 21 + 1200 + 345 + 17
    assert int(second["x-ratelimit-remaining-tokens"]) == 100_000 - used - estimate
    assert spent(stack, account_id) == 2 * claude_cost(USAGE)


def test_what_a_chat_cannot_say_goes_only_where_it_is_taken_natively(stack, fake, upstream, model):
    account_id, key = stack.customer("5")
    document = [{"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "A short note."}},
        {"type": "text", "text": "Summarize it."}]}]
    sdk = client(stack, key)

    with pytest.raises(anthropic.BadRequestError) as refused:
        sdk.messages.create(model="deepseek-chat", max_tokens=100, messages=document)
    assert '"document" is not supported' in refused.value.body["error"]["message"]
    assert upstream.requests == [] and spent(stack, account_id) == 0

    # Named after a model that cannot take it, a model that can answers, billed once.
    answer = sdk.messages.create(model="deepseek-chat", max_tokens=100, messages=document,
                                 extra_body={"models": [model]})
    assert answer.model == model and fake.requests[-1].json["messages"] == document
    assert upstream.requests == [] and spent(stack, account_id) == claude_cost(USAGE)
    assert len(charges(stack, account_id)) == 1


def test_a_buffered_stream_says_its_cost_in_a_header_too(stack, fake, model):
    """Behind API Gateway (the in-process app), a stream is one body, settled once joined."""
    account_id, key = stack.customer("5")
    response = stack.http.post("/v1/messages", headers={"x-api-key": key},
                               json={"model": model, "max_tokens": 100, "stream": True, "messages": HELLO})
    events = sse_events(response.text)
    assert events[1:-2] == fake.streamed[-1][1:-2]  # between message_start and message_delta, as sent
    assert data(events[0])["message"]["model"] == model and data(events[-1]) == {"type": "message_stop"}
    cost = claude_cost(USAGE)
    assert Decimal(response.headers["x-tokenway-cost-usd"]) == cost == Decimal(data(events[-2])["usage"]["cost_usd"])
    assert spent(stack, account_id) == cost


def test_a_stream_whose_first_token_is_late_falls_back_before_its_first_byte(stack, fake, upstream, model):
    # An event every 2.5 s: the first text comes past the 3 s first-token limit of these tests.
    account_id, key = stack.customer("5")
    fake.reply("Too slow.", interval_s=2.5)
    upstream.fail_next(faults.usage(prompt=1000, completion=500), path="/chat/completions")

    answer, told = answered(client(stack, key), True, model=model, max_tokens=100, messages=HELLO,
                            extra_body={"models": ["deepseek-chat"]})

    assert answer.model == "deepseek-chat"
    assert told == deepseek_cost(1000, 500) == spent(stack, account_id)
    [charge] = charges(stack, account_id)
    assert charge["model"] == "deepseek-chat"


def test_a_stream_with_no_first_token_and_no_fallback_is_a_504_in_anthropics_envelope(stack, fake, model):
    account_id, key = stack.customer("5")
    fake.reply("Too slow.", interval_s=2.5)

    response = stack.http.post("/v1/messages", headers={"x-api-key": key}, json={
        "model": model, "max_tokens": 100, "messages": HELLO, "stream": True})

    assert response.status_code == 504, response.text
    assert response.json()["type"] == "error" and "sent no token in 3 s" in response.json()["error"]["message"]
    assert spent(stack, account_id) == 0 and charges(stack, account_id) == []
