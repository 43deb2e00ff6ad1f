"""Anthropic's Messages API at /v1/messages and /messages, driven with the official `anthropic` SDK."""

from __future__ import annotations

import json
from decimal import Decimal

import anthropic
import httpx
import pytest

from tests.api.conftest import Stack
from tests.api.test_relay_charges import charges
from tests.fakes import upstream as faults

HELLO = [{"role": "user", "content": "Hello"}]
WEATHER = {"name": "get_weather", "description": "The weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def client(stack: Stack, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stack.url, api_key=key, max_retries=0)


def spent(stack: Stack, account_id: str, funded: str) -> Decimal:
    wallet = stack.wallet(account_id)
    assert wallet["held_usd"] == "0.00"
    return Decimal(funded) - Decimal(wallet["balance_usd"])


def price(input_tokens: int, output_tokens: int) -> Decimal:
    # deepseek-chat: $0.28 / 1M input, $0.42 / 1M output
    return (Decimal(input_tokens) * Decimal("0.28") + Decimal(output_tokens) * Decimal("0.42")) / 10**6


def test_a_text_answer_is_a_message_charged_exactly_once(stack, upstream):
    account_id, key = stack.customer("1")
    raw = client(stack, key).messages.with_raw_response.create(
        model="deepseek-chat", max_tokens=50, system="Be brief.", messages=HELLO)
    message = raw.parse()

    assert message.type == "message" and message.role == "assistant" and message.model == "deepseek-chat"
    assert message.id.startswith("msg_") and raw.headers["request-id"] == raw.headers["x-request-id"]
    assert "Hello" in message.content[0].text and message.stop_reason == "end_turn"
    cost = Decimal(raw.headers["x-tokenway-cost-usd"])
    assert cost == price(message.usage.input_tokens, message.usage.output_tokens) > 0
    assert spent(stack, account_id, "1") == cost
    [charge] = charges(stack, account_id)
    assert -charge["amount"] == cost * 10**9
    sent = upstream.requests[-1].json
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["max_tokens"] == 50
    assert "x-api-key" not in upstream.requests[-1].headers


def test_a_streamed_answer_arrives_as_anthropic_events_and_is_charged(stack, upstream):
    account_id, key = stack.customer("1")
    sdk = client(stack, key)
    plain = sdk.messages.create(model="deepseek-chat", max_tokens=50, messages=HELLO)
    with sdk.messages.stream(model="deepseek-chat", max_tokens=50, messages=HELLO) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()

    assert kinds[0] == "message_start" and kinds[-1] == "message_stop" and "text" in kinds
    assert final.content[0].text == plain.content[0].text and final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (plain.usage.input_tokens,
                                                                     plain.usage.output_tokens)
    assert upstream.requests[-1].json["stream_options"] == {"include_usage": True}
    cost = price(plain.usage.input_tokens, plain.usage.output_tokens)
    assert spent(stack, account_id, "1") == 2 * cost
    assert len(charges(stack, account_id)) == 2


def test_the_stream_tells_what_it_cost_in_message_delta(stack, upstream):
    account_id, key = stack.customer("1")
    response = httpx.post(stack.url + "/messages", headers={"x-api-key": key}, timeout=30,
                          json={"model": "deepseek-chat", "max_tokens": 20, "messages": HELLO, "stream": True})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = [event for event in response.text.split("\n\n") if event]
    names = [event.split("\n")[0] for event in events]
    assert names[0] == "event: message_start" and names[-2:] == ["event: message_delta", "event: message_stop"]
    delta = json.loads(events[-2].split("\n")[1].removeprefix("data: "))
    assert Decimal(delta["usage"]["cost_usd"]) == spent(stack, account_id, "1") > 0


def test_a_tool_call_round_trip(stack, upstream):
    account_id, key = stack.customer("1")
    sdk = client(stack, key)
    upstream.fail_next(faults.tool_call("get_weather", {"city": "Paris"}), path="/chat/completions")
    asked = [{"role": "user", "content": "Weather in Paris?"}]
    first = sdk.messages.create(model="deepseek-chat", max_tokens=100, messages=asked, tools=[WEATHER],
                                tool_choice={"type": "any"})
    [call] = first.content
    assert first.stop_reason == "tool_use"
    assert (call.type, call.name, call.input) == ("tool_use", "get_weather", {"city": "Paris"})
    sent = upstream.requests[-1].json
    assert sent["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city", "parameters": WEATHER["input_schema"]}}]
    assert sent["tool_choice"] == "required"

    upstream.fail_next(faults.tool_call("get_weather", {"city": "Paris"}), path="/chat/completions")
    with sdk.messages.stream(model="deepseek-chat", max_tokens=100, messages=asked, tools=[WEATHER]) as stream:
        streamed = stream.get_final_message()
    assert streamed.stop_reason == "tool_use" and streamed.content[0].input == {"city": "Paris"}

    answer = sdk.messages.create(model="deepseek-chat", max_tokens=100, tools=[WEATHER], messages=[
        *asked, {"role": "assistant", "content": first.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 24°C"}]}])
    assert answer.stop_reason == "end_turn" and answer.content[0].type == "text"
    sent = upstream.requests[-1].json["messages"]
    assert sent[1] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": call.id, "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}
    assert sent[2] == {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 24°C"}
    # The tool call's usage (12 prompt, 7 completion tokens) twice, and the answer's.
    assert spent(stack, account_id, "1") == 2 * price(12, 7) + price(answer.usage.input_tokens,
                                                                     answer.usage.output_tokens)
    assert len(charges(stack, account_id)) == 3


@pytest.mark.parametrize("path", ["/v1/messages", "/messages"])
@pytest.mark.parametrize("header", ["x-api-key", "authorization"])
def test_both_paths_and_both_key_headers_are_served(stack, upstream, path, header):
    _, key = stack.customer("1")
    value = key if header == "x-api-key" else f"Bearer {key}"
    response = stack.http.post(path, headers={header: value},
                               json={"model": "deepseek-chat", "max_tokens": 10, "messages": HELLO})
    assert response.status_code == 200, response.text
    assert response.json()["type"] == "message"
    assert response.headers["request-id"].startswith("req_")


def test_a_bad_key_is_an_authentication_error(stack, upstream):
    with pytest.raises(anthropic.AuthenticationError) as refused:
        client(stack, "sk-" + "x" * 48).messages.create(model="deepseek-chat", max_tokens=10, messages=HELLO)
    assert refused.value.status_code == 401
    assert refused.value.body["type"] == "error" and refused.value.body["error"]["type"] == "authentication_error"
    assert refused.value.response.headers["x-tokenway-cost-usd"] == "0.00"
    missing = stack.http.post("/v1/messages", json={"model": "deepseek-chat", "max_tokens": 10, "messages": HELLO})
    assert missing.status_code == 401 and "x-api-key" in missing.json()["error"]["message"]
    assert upstream.requests == []


def test_refusals_are_in_anthropics_envelope(stack, upstream):
    _, key = stack.customer("1")
    sdk = client(stack, key)
    no_cap = stack.http.post("/v1/messages", headers={"x-api-key": key},
                             json={"model": "deepseek-chat", "messages": HELLO})
    assert no_cap.status_code == 400
    assert no_cap.json() == {"type": "error", "error": {"type": "invalid_request_error",
                                                        "message": "max_tokens: Field required"}}
    with pytest.raises(anthropic.NotFoundError) as unknown:
        sdk.messages.create(model="no-such-model", max_tokens=10, messages=HELLO)
    assert unknown.value.body["error"]["type"] == "not_found_error"
    not_json = stack.http.post("/v1/messages", headers={"x-api-key": key}, content=b"{")
    assert not_json.status_code == 400 and not_json.json()["error"]["type"] == "invalid_request_error"
    wrong_method = stack.http.get("/v1/messages", headers={"x-api-key": key})
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert wrong_method.json()["type"] == "error"
    assert upstream.requests == []


def test_a_wallet_too_low_is_a_billing_error_and_costs_nothing(stack, upstream):
    account_id, key = stack.customer("0")
    with pytest.raises(anthropic.APIStatusError) as refused:
        client(stack, key).messages.create(model="deepseek-chat", max_tokens=10, messages=HELLO)
    assert refused.value.status_code == 402
    assert refused.value.body["error"]["type"] == "billing_error"
    assert upstream.requests == [] and charges(stack, account_id) == []


def test_an_upstream_failure_is_an_api_error(stack, upstream):
    account_id, key = stack.customer("1")
    upstream.fail_next(faults.http_error(500, "boom"), times=1)
    with pytest.raises(anthropic.APIStatusError) as failed:
        client(stack, key).messages.create(model="deepseek-chat", max_tokens=10, messages=HELLO)
    assert failed.value.status_code == 502 and failed.value.body["error"]["type"] == "api_error"
    assert spent(stack, account_id, "1") == 0
