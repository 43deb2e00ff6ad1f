"""Anthropic's Messages format to a chat body and back, plain and streamed."""

from __future__ import annotations

import json

import pytest

from chalicelib.core.errors import InvalidRequest
from chalicelib.core.validation import parse
from chalicelib.relay.anthropic_inbound import to_anthropic_message, to_openai_chat
from chalicelib.relay.anthropic_stream import AnthropicStream
from chalicelib.relay.schemas import ChatRequest

WEATHER = {"name": "get_weather", "description": "The weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def test_a_request_with_system_images_tools_and_tool_results_becomes_a_chat_the_relay_accepts():
    chat = to_openai_chat({
        "model": "deepseek-chat", "max_tokens": 100, "system": [{"type": "text", "text": "Be brief."},
                                                                {"type": "text", "text": "Be kind."}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "What is this, and the weather?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "Sunny"}]},
                {"type": "text", "text": "Thanks"}]},
        ],
        "tools": [WEATHER], "tool_choice": {"type": "tool", "name": "get_weather"},
        "stop_sequences": ["END"], "temperature": 0.5, "top_p": 0.9, "top_k": 40, "metadata": {"user_id": "u"},
    })
    assert chat == {
        "model": "deepseek-chat", "max_tokens": 100, "temperature": 0.5, "top_p": 0.9, "stop": ["END"],
        "messages": [
            {"role": "system", "content": "Be brief.\n\nBe kind."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this, and the weather?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}}]},
            {"role": "assistant", "content": "Let me look.", "tool_calls": [
                {"id": "toolu_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "Sunny"},
            {"role": "user", "content": "Thanks"},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER["input_schema"],
                                                    "description": "The weather in a city"}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    }
    request = parse(ChatRequest, chat)
    assert request.output_cap == 100 and not request.stream


@pytest.mark.parametrize(("choice", "expected"), [
    ({"type": "auto"}, {"tool_choice": "auto"}),
    ({"type": "any"}, {"tool_choice": "required"}),
    ({"type": "none"}, {"tool_choice": "none"}),
    ({"type": "auto", "disable_parallel_tool_use": True}, {"tool_choice": "auto", "parallel_tool_calls": False}),
])
def test_tool_choices(choice, expected):
    chat = to_openai_chat({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}],
                           "tools": [WEATHER], "tool_choice": choice})
    assert {k: chat[k] for k in expected} == expected


def test_a_stream_asks_for_usage_and_an_error_tool_result_says_so():
    chat = to_openai_chat({"model": "m", "max_tokens": 5, "stream": True, "system": "S", "messages": [
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "boom",
                                      "is_error": True}]}]})
    assert chat["stream"] is True and chat["stream_options"] == {"include_usage": True}
    assert chat["messages"] == [{"role": "system", "content": "S"},
                                {"role": "tool", "tool_call_id": "t", "content": "Error: boom"}]
    assert parse(ChatRequest, chat).wants_usage


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "m", "messages": [{"role": "user", "content": "Hi"}]}, "max_tokens"),
    ({"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "Hi"}]}, "max_tokens"),
    ({"model": "m", "max_tokens": 5, "messages": []}, "messages"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "Hi"}]}, "messages"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {}}]}]}, "messages"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}],
      "tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}],
      "tool_choice": {"type": "sometimes"}}, "tool_choice"),
])
def test_what_cannot_be_said_as_a_chat_is_refused_naming_the_field(body, param):
    with pytest.raises(InvalidRequest) as refused:
        to_openai_chat(body)
    assert refused.value.param == param and refused.value.status == 400


def completion(message, finish, **choice):
    return {"id": "chatcmpl-1", "object": "chat.completion", "model": "deepseek-chat",
            "choices": [{"index": 0, "message": message, "finish_reason": finish, **choice}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39,
                      "prompt_tokens_details": {"cached_tokens": 10}, "cost_usd": "0.0000123"}}


def test_a_completion_with_text_and_a_tool_call_becomes_a_message():
    message = to_anthropic_message(completion(
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]},
        "tool_calls"), message_id="msg_1")
    assert message == {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "deepseek-chat",
        "content": [{"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Oslo"}}],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 20, "output_tokens": 9, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 10, "cost_usd": "0.0000123"},
    }


@pytest.mark.parametrize(("finish", "choice", "stops", "expected"), [
    ("stop", {}, None, ("end_turn", None)),
    ("length", {}, None, ("max_tokens", None)),
    ("tool_calls", {}, None, ("tool_use", None)),
    ("content_filter", {}, None, ("refusal", None)),
    ("stop", {"stop_reason": "END"}, ["END"], ("stop_sequence", "END")),
    ("stop", {"matched_stop": "###"}, ["END", "###"], ("stop_sequence", "###")),
    ("stop", {"stop_reason": 2}, ["END"], ("end_turn", None)),
])
def test_stop_reasons(finish, choice, stops, expected):
    message = to_anthropic_message(completion({"role": "assistant", "content": "x"}, finish, **choice),
                                   message_id="msg_1", stop_sequences=stops)
    assert (message["stop_reason"], message["stop_sequence"]) == expected


def test_malformed_tool_arguments_are_kept_not_lost():
    message = to_anthropic_message(completion({"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}, "tool_calls"),
        message_id="m")
    assert message["content"] == [{"type": "tool_use", "id": "c", "name": "f", "input": {"arguments": "{not json"}}]


def sse(chunk):
    return f"data: {json.dumps(chunk)}\n\n"


def chunk(delta=None, finish=None, usage=None):
    return sse({"id": "c", "object": "chat.completion.chunk", "model": "deepseek-chat",
                "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}],
                **({"usage": usage} if usage else {})})


USAGE = {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15, "cost_usd": "0.00000476"}


def events_of(stream):
    parsed = []
    for event in stream:
        head, data = event.split("\n", 1)
        assert event.endswith("\n\n")
        payload = json.loads(data.removeprefix("data: "))
        assert head == f"event: {payload['type']}"
        parsed.append(payload)
    return parsed


def test_a_streamed_text_answer_becomes_anthropic_events_in_order():
    relay = iter([chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}), chunk({"content": "lo"}),
                  chunk({}, "stop"), chunk(usage=USAGE), "data: [DONE]\n\n"])
    events = events_of(AnthropicStream(relay, message_id="msg_9", model="deepseek-chat"))
    assert [e["type"] for e in events] == ["message_start", "content_block_start", "content_block_delta",
                                           "content_block_delta", "content_block_stop", "message_delta",
                                           "message_stop"]
    assert events[0]["message"]["id"] == "msg_9" and events[0]["message"]["model"] == "deepseek-chat"
    assert events[0]["message"]["usage"]["output_tokens"] == 0
    assert events[1] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    assert [e["delta"] for e in events[2:4]] == [{"type": "text_delta", "text": "Hel"},
                                                 {"type": "text_delta", "text": "lo"}]
    assert events[5]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert events[5]["usage"] == {"input_tokens": 11, "output_tokens": 4, "cache_creation_input_tokens": 0,
                                  "cache_read_input_tokens": 0, "cost_usd": "0.00000476"}


def test_a_streamed_tool_call_after_text_is_its_own_block_with_json_deltas():
    relay = iter([
        chunk({"role": "assistant", "content": "Checking."}),
        chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                               "function": {"name": "get_weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "call_2", "function": {"name": "now", "arguments": "{}"}}]}),
        chunk({}, "tool_calls"), chunk(usage=USAGE), "data: [DONE]\n\n"])
    events = events_of(AnthropicStream(relay, message_id="m", model="deepseek-chat"))
    assert [(e["type"], e.get("index")) for e in events] == [
        ("message_start", None), ("content_block_start", 0), ("content_block_delta", 0), ("content_block_stop", 0),
        ("content_block_start", 1), ("content_block_delta", 1), ("content_block_delta", 1),
        ("content_block_stop", 1), ("content_block_start", 2), ("content_block_delta", 2),
        ("content_block_stop", 2), ("message_delta", None), ("message_stop", None)]
    assert events[4]["content_block"] == {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {}}
    assert "".join(e["delta"]["partial_json"] for e in events[5:7]) == '{"city":"Oslo"}'
    assert events[8]["content_block"]["name"] == "now"
    assert events[11]["delta"]["stop_reason"] == "tool_use"


def test_an_upstream_failure_mid_stream_ends_with_an_error_event_and_closing_closes_the_relay():
    closed = []

    def relay():
        try:
            yield chunk({"content": "Hi"})
            yield sse({"error": {"message": "upstream went away", "type": "upstream_error", "code": None}})
        finally:
            closed.append(True)

    events = events_of(AnthropicStream(relay(), message_id="m", model="x"))
    assert events[-1] == {"type": "error", "error": {"type": "api_error", "message": "upstream went away"}}

    stream = AnthropicStream(relay(), message_id="m", model="x")
    next(stream)
    stream.close()
    assert closed == [True, True]
