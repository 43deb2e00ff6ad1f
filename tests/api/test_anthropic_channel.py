"""A model served by Anthropic channels, driven with the OpenAI SDK through the gateway: the Messages
API upstream (a fake on loopback) answers, the client reads OpenAI answers, and the wallet is charged
for cache reads and writes at their own prices."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal

import pytest
from openai import OpenAI

from tests.api.conftest import ADMIN_TOKEN, Stack
from tests.conftest import ROOT
from tests.fakes.anthropic_upstream import FakeAnthropic

MODEL = "claude-fake"
UPSTREAM_MODEL = "claude-sonnet-4-5"
# USD per 1M tokens, as claude-sonnet's list prices.
INPUT, CACHE_READ, CACHE_WRITE, OUTPUT = Decimal("3.00"), Decimal("0.30"), Decimal("3.75"), Decimal("15.00")
USAGE = {"input_tokens": 21, "cache_read_input_tokens": 1200, "cache_creation_input_tokens": 345,
         "output_tokens": 17}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@pytest.fixture(scope="module")
def anthropic(stack: Stack) -> Iterator[FakeAnthropic]:
    """The fake behind two channels of the model: `claude-a` first, `claude-b` its fallback."""
    fake = FakeAnthropic()
    fake.start()
    cli(stack, "channel", "add", "claude-a", "--kind", "anthropic", "--base-url", fake.base_url,
        "--api-key", "sk-ant-a")
    stack.admin("POST", "/admin/channels", {"name": "claude-b", "kind": "anthropic", "base_url": fake.base_url,
                                            "api_key": "sk-ant-b"})
    cli(stack, "model", "add", MODEL, "--channel", "claude-a", "--upstream-model", UPSTREAM_MODEL,
        "--input-per-1m", str(INPUT), "--cached-input-per-1m", str(CACHE_READ),
        "--cache-write-per-1m", str(CACHE_WRITE), "--output-per-1m", str(OUTPUT), "--max-output-tokens", "1024")
    stack.admin("POST", "/admin/models", {"name": MODEL, "channel": "claude-b", "upstream_model": UPSTREAM_MODEL})
    yield fake
    fake.stop()


@pytest.fixture
def fake(anthropic: FakeAnthropic) -> Iterator[FakeAnthropic]:
    anthropic.reset()
    anthropic.usage = dict(USAGE)
    yield anthropic
    anthropic.reset()


def cli(stack: Stack, *args: str) -> dict:
    """The operator CLI of this checkout, in a process of its own."""
    env = {**os.environ, "TOKENWAY_URL": stack.url, "TOKENWAY_ADMIN_TOKEN": ADMIN_TOKEN, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "tokenway_cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def expected_cost(usage: dict[str, int]) -> Decimal:
    return (usage["input_tokens"] * INPUT + usage["cache_read_input_tokens"] * CACHE_READ
            + usage["cache_creation_input_tokens"] * CACHE_WRITE + usage["output_tokens"] * OUTPUT) / 10**6


def spent(stack: Stack, account_id: str, funded: str) -> Decimal:
    wallet = stack.wallet(account_id)
    assert wallet["held_usd"] == "0.00"
    return Decimal(funded) - Decimal(wallet["balance_usd"])


def client(stack: Stack, key: str) -> OpenAI:
    return OpenAI(base_url=stack.url + "/v1", api_key=key, max_retries=0)


def test_a_chat_is_answered_through_the_messages_api_and_charged_for_cache_reads_and_writes(stack, fake):
    account_id, key = stack.customer("1")

    raw = client(stack, key).chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
        max_tokens=200)
    reply = raw.parse()

    assert reply.model == MODEL and reply.object == "chat.completion"
    assert reply.choices[0].message.content == "Echo: Hello"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.prompt_tokens == 21 + 1200 + 345 and reply.usage.completion_tokens == 17
    assert reply.usage.prompt_tokens_details.cached_tokens == 1200
    cost = expected_cost(USAGE)  # the cache write at $3.75, not the input's $3
    assert Decimal(raw.headers["x-tokenway-cost-usd"]) == cost
    assert Decimal(reply.usage.model_extra["cost_usd"]) == cost
    assert spent(stack, account_id, "1") == cost
    sent = fake.requests[-1]
    assert sent.path == "/v1/messages" and sent.headers["x-api-key"] == "sk-ant-a"
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.json["model"] == UPSTREAM_MODEL and sent.json["max_tokens"] == 200
    assert sent.json["system"] == "Be brief."
    assert sent.json["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}]


def test_a_streamed_chat_arrives_as_openai_chunks_and_is_charged_exactly(stack, fake):
    account_id, key = stack.customer("1")

    chunks = list(client(stack, key).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Tell me something"}], stream=True,
        stream_options={"include_usage": True}))

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: Tell me something"
    assert all(c.model == MODEL for c in chunks)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    usage = chunks[-1].usage
    assert chunks[-1].choices == []
    assert usage.prompt_tokens == 1566 and usage.completion_tokens == 17
    cost = expected_cost(USAGE)
    assert Decimal(usage.model_extra["cost_usd"]) == cost == spent(stack, account_id, "1")
    assert fake.requests[-1].json["stream"] is True
    assert "stream_options" not in fake.requests[-1].json  # the Messages API has no such field


def test_a_stream_without_usage_asked_still_charges_it(stack, fake):
    account_id, key = stack.customer("1")
    chunks = list(client(stack, key).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], stream=True))
    assert all(c.usage is None for c in chunks) and all(c.choices for c in chunks)
    assert spent(stack, account_id, "1") == expected_cost(USAGE)


def test_tool_calls_go_up_as_tools_and_come_back_as_openai_tool_calls(stack, fake):
    account_id, key = stack.customer("1")
    fake.reply_with_tool("get_weather", {"city": "Paris"}, tool_id="toolu_42")

    reply = client(stack, key).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER],
        tool_choice="required")

    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.id == "toolu_42" and call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    sent = fake.requests[-1].json
    assert sent["tools"] == [{"name": "get_weather", "description": "The weather in a city",
                              "input_schema": WEATHER["function"]["parameters"]}]
    assert sent["tool_choice"] == {"type": "any"}
    assert spent(stack, account_id, "1") == expected_cost(USAGE)

    # The result goes back as a tool_result block in a user turn.
    client(stack, key).chat.completions.create(model=MODEL, tools=[WEATHER], messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "toolu_42", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_42", "content": "Sunny, 21 C"}])
    assert fake.requests[-1].json["messages"][1:] == [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_42", "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_42", "content": "Sunny, 21 C"}]},
    ]


def test_a_streamed_tool_call_arrives_as_deltas(stack, fake):
    _, key = stack.customer("1")
    fake.reply_with_tool("get_weather", {"city": "Rome"})
    chunks = list(client(stack, key).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Weather in Rome?"}], tools=[WEATHER], stream=True))
    calls = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
    assert calls[0].function.name == "get_weather" and calls[0].id == "toolu_01"
    assert json.loads("".join(call.function.arguments or "" for call in calls)) == {"city": "Rome"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_an_overloaded_channel_falls_back_to_the_next_one(stack, fake, stream):
    account_id, key = stack.customer("1")
    fake.fail_next(529, "Overloaded")

    answer = client(stack, key).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello"}], stream=stream)

    text = ("".join(c.choices[0].delta.content or "" for c in answer if c.choices) if stream
            else answer.choices[0].message.content)
    assert text == "Echo: Hello"
    assert [request.headers["x-api-key"] for request in fake.requests] == ["sk-ant-a", "sk-ant-b"]
    assert spent(stack, account_id, "1") == expected_cost(USAGE)


def test_anthropics_refusal_reaches_the_client_and_costs_nothing(stack, fake):
    import openai

    account_id, key = stack.customer("1")
    fake.fail_next(400, "messages.0.content: text content blocks must be non-empty")
    with pytest.raises(openai.BadRequestError) as raised:
        client(stack, key).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    assert "text content blocks must be non-empty" in raised.value.message
    assert len(fake.requests) == 1  # a refusal is not tried on another channel
    assert spent(stack, account_id, "1") == 0


def test_the_anthropic_sdk_reaches_an_anthropic_channel_through_v1_messages(stack, fake):
    """Anthropic in, Anthropic upstream: the official SDK's answer carries the upstream's text, and the wallet is
    charged the cache-priced cost the answer says."""
    import anthropic as anthropic_sdk

    account_id, key = stack.customer("5")
    client = anthropic_sdk.Anthropic(base_url=stack.url, api_key=key, max_retries=0)
    before = Decimal(stack.wallet(account_id)["balance_usd"])
    message = client.messages.with_raw_response.create(
        model=MODEL, max_tokens=64, system="Be brief.", messages=[{"role": "user", "content": "Hello"}])
    parsed = message.parse()
    assert parsed.content[0].type == "text" and parsed.content[0].text
    sent = fake.requests[-1].json
    assert sent["system"] == "Be brief." and sent["model"] == UPSTREAM_MODEL
    charged = before - Decimal(stack.wallet(account_id)["balance_usd"])
    assert charged == Decimal(message.headers["x-tokenway-cost-usd"]) == expected_cost(USAGE).quantize(
        Decimal("0.000000001"), rounding="ROUND_CEILING")
