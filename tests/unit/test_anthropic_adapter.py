"""The Anthropic adapter against a fake Messages API on loopback: what it sends, what it answers."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from chalicelib.billing import pricing
from chalicelib.catalog.catalog import BUILTIN_MODELS
from chalicelib.core.domain import Channel
from chalicelib.core.errors import UpstreamRejected, UpstreamTimeout, UpstreamUnavailable
from chalicelib.core.money import usd_to_units
from chalicelib.providers.anthropic import AnthropicAdapter
from chalicelib.providers.port import Operation
from tests.fakes.anthropic_upstream import FakeAnthropic

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(server: FakeAnthropic) -> Iterator[FakeAnthropic]:
    server.reset()
    yield server
    server.reset()


@pytest.fixture
def adapter() -> Iterator[AnthropicAdapter]:
    with httpx.Client() as http:
        yield AnthropicAdapter(http)


def channel(fake: FakeAnthropic) -> Channel:
    return Channel("claude", fake.base_url, "sk-ant-test", kind="anthropic")


def chat(**fields) -> dict:
    return {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "Hello there"}],
            "max_tokens": 100, **fields}


def test_a_chat_is_sent_to_the_messages_api_with_anthropics_headers(fake, adapter):
    adapter.call(channel(fake), Operation.CHAT, chat(temperature=0.2, top_p=0.9, stop="END", user="u-1",
                                                     stream_options={"include_usage": True}), timeout_s=5)

    sent = fake.requests[-1]
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == "sk-ant-test"
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["content-type"] == "application/json"
    assert "authorization" not in sent.headers
    assert sent.json == {"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": False,
                         "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello there"}]}],
                         "temperature": 0.2, "top_p": 0.9, "stop_sequences": ["END"],
                         "metadata": {"user_id": "u-1"}}


def test_the_output_cap_is_sent_as_max_tokens_whichever_field_carried_it(fake, adapter):
    body = chat()
    del body["max_tokens"]
    adapter.call(channel(fake), Operation.CHAT, {**body, "max_completion_tokens": 321}, timeout_s=5)
    assert fake.requests[-1].json["max_tokens"] == 321
    assert "max_completion_tokens" not in fake.requests[-1].json


def test_system_messages_are_joined_and_same_role_turns_merged(fake, adapter):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
        {"role": "user", "content": "One"},
        {"role": "user", "content": [{"type": "text", "text": "Two"}]},
        {"role": "assistant", "content": "Un, deux"},
        {"role": "user", "content": "Three"},
    ]
    adapter.call(channel(fake), Operation.CHAT, chat(messages=messages, stop=["a", "b"]), timeout_s=5)

    sent = fake.requests[-1].json
    assert sent["system"] == "Be brief.\n\nAnswer in French."
    assert sent["stop_sequences"] == ["a", "b"]
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "One"}, {"type": "text", "text": "Two"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Un, deux"}]},
        {"role": "user", "content": [{"type": "text", "text": "Three"}]},
    ]


def test_cache_breakpoints_are_kept_on_parts_messages_and_tools(fake, adapter):
    ephemeral = {"type": "ephemeral"}
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "A long manual", "cache_control": ephemeral}]},
        {"role": "user", "content": "First question", "cache_control": ephemeral},
        {"role": "assistant", "content": "First answer"},
        {"role": "user", "content": "Second question"},
    ]
    tools = [{**WEATHER, "cache_control": ephemeral}]
    adapter.call(channel(fake), Operation.CHAT, chat(messages=messages, tools=tools), timeout_s=5)

    sent = fake.requests[-1].json
    assert sent["system"] == [{"type": "text", "text": "A long manual", "cache_control": ephemeral}]
    assert sent["messages"][0] == {"role": "user", "content": [
        {"type": "text", "text": "First question", "cache_control": ephemeral}]}
    assert "cache_control" not in sent["messages"][2]["content"][0]
    assert sent["tools"][0]["cache_control"] == ephemeral


def test_image_parts_become_base64_or_url_sources(fake, adapter):
    content = [{"type": "text", "text": "What is this?"},
               {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
               {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}}]
    adapter.call(channel(fake), Operation.CHAT, chat(messages=[{"role": "user", "content": content}]), timeout_s=5)

    assert fake.requests[-1].json["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


@pytest.mark.parametrize(("choice", "expected"), [
    ("auto", {"type": "auto"}),
    ("none", {"type": "none"}),
    ("required", {"type": "any"}),
    ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
])
def test_tools_and_tool_choice_are_translated(fake, adapter, choice, expected):
    adapter.call(channel(fake), Operation.CHAT, chat(tools=[WEATHER], tool_choice=choice), timeout_s=5)

    sent = fake.requests[-1].json
    assert sent["tools"] == [{"name": "get_weather", "description": "The weather in a city",
                              "input_schema": WEATHER["function"]["parameters"]}]
    assert sent["tool_choice"] == expected


def test_parallel_tool_calls_off_disables_parallel_tool_use(fake, adapter):
    adapter.call(channel(fake), Operation.CHAT, chat(tools=[WEATHER], parallel_tool_calls=False), timeout_s=5)
    assert fake.requests[-1].json["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_a_tool_round_trip_becomes_tool_use_and_tool_result_blocks(fake, adapter):
    messages = [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "Rain"}]},
    ]
    adapter.call(channel(fake), Operation.CHAT, chat(messages=messages, tools=[WEATHER]), timeout_s=5)

    assert fake.requests[-1].json["messages"][1:] == [
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Rome"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "Sunny"},
            {"type": "tool_result", "tool_use_id": "call_2", "content": "Rain"}]},
    ]


def test_the_answer_is_a_chat_completion_with_usage_as_openai_counts_it(fake, adapter):
    fake.usage = {"input_tokens": 20, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 500,
                  "output_tokens": 9}
    answer = adapter.call(channel(fake), Operation.CHAT, chat(), timeout_s=5)

    assert answer["id"] == "msg_fake01" and answer["object"] == "chat.completion"
    assert answer["model"] == "claude-sonnet-4-5" and isinstance(answer["created"], int)
    assert answer["choices"] == [{"index": 0, "logprobs": None, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": "Echo: Hello there"}}]
    assert answer["usage"] == {"prompt_tokens": 1520, "completion_tokens": 9, "total_tokens": 1529,
                               "prompt_tokens_details": {"cached_tokens": 1000},
                               "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 500}


def test_the_usage_it_answers_prices_cache_reads_and_writes_at_their_own_rates(fake, adapter):
    fake.usage = {"input_tokens": 20, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 500,
                  "output_tokens": 9}
    answer = adapter.call(channel(fake), Operation.CHAT, chat(), timeout_s=5)

    usage = pricing.read_usage(answer["usage"])
    assert usage == pricing.Usage(prompt_tokens=1520, cached_tokens=1000, completion_tokens=9,
                                  cache_write_tokens=500)
    # claude-sonnet: $3 input, $0.30 cache read, $3.75 cache write, $15 output per 1M
    expected = 20 * usd_to_units("3") + 1000 * usd_to_units("0.30") + 500 * usd_to_units("3.75") \
        + 9 * usd_to_units("15")
    assert pricing.charge(BUILTIN_MODELS["claude-sonnet"].prices, usage) * 10**6 == expected


@pytest.mark.parametrize(("stop_reason", "finish_reason"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
])
def test_stop_reasons_become_finish_reasons(fake, adapter, stop_reason, finish_reason):
    fake.reply("Some text", stop_reason=stop_reason)
    answer = adapter.call(channel(fake), Operation.CHAT, chat(), timeout_s=5)
    assert answer["choices"][0]["finish_reason"] == finish_reason


def test_tool_use_blocks_become_tool_calls_with_json_arguments(fake, adapter):
    fake.reply_with_tool("get_weather", {"city": "Paris"}, text="Let me check.", tool_id="toolu_7")
    answer = adapter.call(channel(fake), Operation.CHAT, chat(tools=[WEATHER]), timeout_s=5)

    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me check."
    assert choice["message"]["tool_calls"] == [
        {"id": "toolu_7", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]


def test_a_stream_arrives_as_openai_chunks_ending_with_usage(fake, adapter):
    fake.usage = {"input_tokens": 20, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 50,
                  "output_tokens": 4}
    chunks = list(adapter.stream(channel(fake), Operation.CHAT, chat(stream=True), timeout_s=5))

    assert fake.requests[-1].json["stream"] is True
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "msg_fake01" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Echo: Hello there"
    assert chunks[-2]["choices"] == [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 170, "completion_tokens": 4, "total_tokens": 174,
                                   "prompt_tokens_details": {"cached_tokens": 100},
                                   "cache_read_input_tokens": 100, "cache_creation_input_tokens": 50}
    assert all("usage" not in c for c in chunks[:-1])


def test_a_streamed_tool_call_arrives_as_indexed_deltas(fake, adapter):
    fake.reply_with_tool("get_weather", {"city": "Paris"}, tool_id="toolu_9")
    chunks = list(adapter.stream(channel(fake), Operation.CHAT, chat(tools=[WEATHER], stream=True), timeout_s=5))

    deltas = [call for c in chunks if c["choices"] for call in c["choices"][0]["delta"].get("tool_calls") or []]
    assert deltas[0] == {"index": 0, "id": "toolu_9", "type": "function",
                         "function": {"name": "get_weather", "arguments": ""}}
    assert all(d["index"] == 0 for d in deltas)
    assert json.loads("".join(d["function"]["arguments"] for d in deltas)) == {"city": "Paris"}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_4xx_is_passed_on_with_anthropics_message(fake, adapter, stream):
    fake.fail_next(400, "messages: text content blocks must be non-empty")
    with pytest.raises(UpstreamRejected) as raised:
        if stream:
            adapter.stream(channel(fake), Operation.CHAT, chat(stream=True), timeout_s=5)
        else:
            adapter.call(channel(fake), Operation.CHAT, chat(), timeout_s=5)
    assert raised.value.status == 400 and not raised.value.retryable
    assert raised.value.message == "messages: text content blocks must be non-empty"
    assert raised.value.type == "invalid_request_error"


@pytest.mark.parametrize("stream", [False, True])
def test_rate_limits_and_overloads_may_fall_back(fake, adapter, stream):
    fake.fail_next(429, "Number of request tokens has exceeded your per-minute rate limit")
    fake.fail_next(529, "Overloaded")
    start = adapter.stream if stream else adapter.call
    with pytest.raises(UpstreamRejected) as limited:
        start(channel(fake), Operation.CHAT, chat(stream=stream), timeout_s=5)
    with pytest.raises(UpstreamUnavailable) as overloaded:
        start(channel(fake), Operation.CHAT, chat(stream=stream), timeout_s=5)
    assert limited.value.status == 429 and limited.value.retryable and limited.value.type == "rate_limit_error"
    assert overloaded.value.retryable and "Overloaded" in overloaded.value.message


def test_other_operations_are_refused(fake, adapter):
    with pytest.raises(UpstreamRejected) as raised:
        adapter.call(channel(fake), Operation.EMBEDDINGS, {"model": "x", "input": "hi"}, timeout_s=5)
    assert raised.value.status == 400 and "not supported by Anthropic channels" in raised.value.message
    assert fake.requests == []


def test_more_than_one_choice_is_refused_before_the_call(fake, adapter):
    with pytest.raises(UpstreamRejected) as raised:
        adapter.call(channel(fake), Operation.CHAT, chat(n=2), timeout_s=5)
    assert raised.value.param == "n" and fake.requests == []


# Transport failures, through handlers of httpx's mock transport.

def mocked(handler) -> AnthropicAdapter:
    return AnthropicAdapter(httpx.Client(transport=httpx.MockTransport(handler)))


CHANNEL = Channel("claude", "https://anthropic.test/v1", "sk-ant-test", kind="anthropic")


def sse(*events: dict) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


START = {"type": "message_start", "message": {"id": "msg_1", "model": "m", "content": [],
                                              "usage": {"input_tokens": 3, "output_tokens": 1}}}
TEXT = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}


def test_an_error_event_mid_stream_breaks_the_stream_as_unavailable():
    adapter = mocked(lambda request: httpx.Response(200, content=sse(
        START, TEXT, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})))
    chunks = adapter.stream(CHANNEL, Operation.CHAT, chat(stream=True), timeout_s=5)
    assert next(chunks)["choices"][0]["delta"]["role"] == "assistant"
    assert next(chunks)["choices"][0]["delta"]["content"] == "Hi"
    with pytest.raises(UpstreamUnavailable, match="Overloaded"):
        next(chunks)


def test_a_stream_ending_without_message_stop_ended_early():
    adapter = mocked(lambda request: httpx.Response(200, content=sse(START, TEXT)))
    with pytest.raises(UpstreamUnavailable, match="ended the stream early"):
        list(adapter.stream(CHANNEL, Operation.CHAT, chat(stream=True), timeout_s=5))


def test_a_malformed_answer_is_unavailable():
    adapter = mocked(lambda request: httpx.Response(200, content=b'{"id": "msg_1", "content": ['))
    with pytest.raises(UpstreamUnavailable, match="malformed"):
        adapter.call(CHANNEL, Operation.CHAT, chat(), timeout_s=5)


def test_a_timeout_is_an_upstream_timeout():
    def handler(request):
        raise httpx.ReadTimeout("slow", request=request)
    with pytest.raises(UpstreamTimeout):
        mocked(handler).call(CHANNEL, Operation.CHAT, chat(), timeout_s=5)


def test_refused_credentials_are_the_gateways_problem_not_the_callers():
    adapter = mocked(lambda request: httpx.Response(401, json={
        "type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}))
    with pytest.raises(UpstreamUnavailable, match="credentials"):
        adapter.call(CHANNEL, Operation.CHAT, chat(), timeout_s=5)


# Natively: the Messages body as it is, the answer as Anthropic sent it.

NATIVE = {"model": "claude-sonnet-4-5", "max_tokens": 64, "top_k": 5,
          "thinking": {"type": "enabled", "budget_tokens": 32},
          "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
          "messages": [{"role": "user", "content": [{"type": "document", "source": {
              "type": "text", "media_type": "text/plain", "data": "A note."}}, {"type": "text", "text": "Hi"}]}]}


def test_a_native_message_is_sent_as_it_is_and_answered_as_anthropic_sent_it(fake, adapter):
    fake.reply("Hello.", thinking="Greet.")
    message = adapter.messages(channel(fake), NATIVE, timeout_s=5)
    sent = fake.requests[-1]
    assert json.loads(sent.raw) == NATIVE and sent.headers["x-api-key"] == "sk-ant-test"
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert [block["type"] for block in message["content"]] == ["thinking", "text"]
    assert message["model"] == "claude-sonnet-4-5" and message["usage"]["input_tokens"] == 12


def test_a_native_stream_yields_each_event_with_its_own_text(fake, adapter):
    fake.reply("Hello there.", thinking="Greet.")
    events = list(adapter.messages_stream(channel(fake), {**NATIVE, "stream": True}, timeout_s=5))
    assert [event.raw for event in events] == fake.streamed[-1]
    assert [event.type for event in events][0] == "message_start" and events[-1].type == "message_stop"
    assert {event.data["delta"]["type"] for event in events if event.type == "content_block_delta"} == {
        "thinking_delta", "signature_delta", "text_delta"}


def test_a_native_refusal_carries_anthropics_envelope(fake, adapter):
    fake.fail_next(400, "top_k: unsupported")
    with pytest.raises(UpstreamRejected) as raised:
        adapter.messages(channel(fake), NATIVE, timeout_s=5)
    assert raised.value.status == 400 and not raised.value.retryable
    assert raised.value.upstream_envelope == {"type": "error", "error": {"type": "invalid_request_error",
                                                                         "message": "top_k: unsupported"}}
    fake.fail_next(529, "Overloaded")
    with pytest.raises(UpstreamUnavailable):  # another channel may have room
        adapter.messages_stream(channel(fake), {**NATIVE, "stream": True}, timeout_s=5)


def test_a_native_stream_breaks_on_an_error_event_with_it_and_on_an_early_end():
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    adapter = mocked(lambda request: httpx.Response(200, content=sse(START, TEXT, overloaded)))
    events = adapter.messages_stream(CHANNEL, {**NATIVE, "stream": True}, timeout_s=5)
    assert [next(events).type, next(events).type] == ["message_start", "content_block_delta"]
    with pytest.raises(UpstreamUnavailable) as raised:
        next(events)
    assert raised.value.upstream_envelope == overloaded

    adapter = mocked(lambda request: httpx.Response(200, content=sse(START, TEXT)))
    with pytest.raises(UpstreamUnavailable, match="ended the stream early"):
        list(adapter.messages_stream(CHANNEL, {**NATIVE, "stream": True}, timeout_s=5))


def test_a_last_event_without_its_blank_line_still_counts():
    stop = b'event: message_stop\ndata: {"type": "message_stop"}'
    adapter = mocked(lambda request: httpx.Response(200, content=sse(START, TEXT) + stop))
    events = list(adapter.messages_stream(CHANNEL, {**NATIVE, "stream": True}, timeout_s=5))
    assert [event.type for event in events] == ["message_start", "content_block_delta", "message_stop"]
    assert events[-1].raw == stop.decode() + "\n\n"
