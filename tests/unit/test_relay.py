"""The relay service over SQLite storage, with the upstream as an httpx handler."""

from __future__ import annotations

import contextlib
import json

import httpx
import pytest

from chalicelib.billing.pricing import prompt_tokens
from chalicelib.core.domain import Channel, Group, ModelEntry, Route
from chalicelib.core.errors import (
    InsufficientQuota,
    InvalidApiKey,
    InvalidRequest,
    ModelNotFound,
    PermissionDenied,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from chalicelib.core.validation import parse
from chalicelib.relay.schemas import ChatRequest
from tests.unit.conftest import CHAT, World, chat_reply, chunk, sse
from tests.unit.relay_requests import HELLO, chat, embed, images


def test_a_completed_chat_is_charged_its_reported_usage_at_the_model_prices(world):
    world.fund("1")
    world.handler = lambda request: httpx.Response(200, json=chat_reply(prompt=10, completion=5, cached=4))

    result = chat(world)

    # 6 uncached × 1000 + 4 cached × 500 + 5 output × 2000 units
    assert result.cost_units == 18_000
    assert result.body["usage"]["cost_usd"] == "0.000018"
    assert world.balance().available == 10**9 - 18_000
    assert world.balance().held == 0
    [credit, charge] = world.ledger()
    assert (charge.kind, charge.amount, charge.request_id, charge.model) == ("charge", -18_000, "req_1", "test-chat")
    assert world.keys.get_by_hash("hash_1").spent == 18_000


def test_the_upstream_gets_its_model_id_and_unknown_fields_and_the_client_gets_the_public_name(world):
    world.fund("1")
    result = chat(world, temperature=0.2, seed=7, vendor_extension={"x": 1})

    sent = world.sent_json()
    assert sent["model"] == "upstream-chat"
    assert (sent["temperature"], sent["seed"], sent["vendor_extension"]) == (0.2, 7, {"x": 1})
    assert sent["max_tokens"] == 1000  # the model's maximum output, held for and always sent
    assert world.sent[-1].headers["authorization"] == "Bearer upstream-secret"
    assert result.body["model"] == "test-chat"


def test_a_wallet_short_of_the_full_output_cap_lowers_max_tokens_to_what_it_affords(world):
    prompt_cost = prompt_tokens(HELLO) * 1000
    world.fund("0.000" + str(prompt_cost + 100 * 2000).rjust(6, "0"))  # prompt + 100 output tokens

    chat(world, max_tokens=500)

    assert world.sent_json()["max_tokens"] == 100


def test_a_cap_goes_in_the_field_the_provider_reads_whichever_field_the_client_used(world):
    world.fund("1")
    chat(world, max_completion_tokens=500)
    sent = world.sent_json()
    assert sent["max_tokens"] == 500 and "max_completion_tokens" not in sent  # test-chat reads max_tokens

    world.catalog_repo.put_model(ModelEntry(**{**CHAT.__dict__, "cap_field": "max_completion_tokens"}))
    chat(world, "req_2", max_tokens=300)
    sent = world.sent_json()
    assert sent["max_completion_tokens"] == 300 and "max_tokens" not in sent


def test_a_lowered_cap_goes_in_the_field_the_provider_reads(world):
    world.fund("0.0003")
    chat(world, max_completion_tokens=500)
    sent = world.sent_json()
    assert sent["max_tokens"] < 500 and "max_completion_tokens" not in sent


def test_a_wallet_that_cannot_afford_one_output_token_is_refused_before_the_upstream_is_called(world):
    with pytest.raises(InsufficientQuota):
        chat(world)
    assert world.sent == []
    assert world.balance().held == 0 and world.ledger() == []


@pytest.mark.parametrize("answer, error", [
    (lambda r: httpx.Response(400, json={"error": {"message": "bad temperature", "type": "invalid_request_error",
                                                   "param": "temperature", "code": None}}), UpstreamRejected),
    (lambda r: httpx.Response(500, json={"error": {"message": "boom"}}), UpstreamUnavailable),
    (lambda r: httpx.Response(401, json={"error": {"message": "bad key"}}), UpstreamUnavailable),
    (lambda r: httpx.Response(200, content=b"<html>not json"), UpstreamUnavailable),
    (lambda r: httpx.Response(200, json=["not", "an", "object"]), UpstreamUnavailable),
])
def test_a_failed_upstream_call_costs_nothing(world, answer, error):
    world.fund("1")
    world.handler = answer
    with pytest.raises(error):
        chat(world)
    assert world.balance().available == 10**9 and world.balance().held == 0
    assert [entry.kind for entry in world.ledger()] == ["credit"]
    [event] = world.usage.events
    assert event.cost_units == 0
    assert event.status == (400 if error is UpstreamRejected else error.status)


def test_an_upstream_4xx_is_passed_on_with_its_status_and_message(world):
    world.fund("1")
    world.handler = lambda r: httpx.Response(
        422, json={"error": {"message": "bad temperature", "type": "invalid_request_error", "param": "temperature",
                             "code": "invalid_value"}})
    with pytest.raises(UpstreamRejected) as caught:
        chat(world)
    assert caught.value.status == 422
    assert caught.value.envelope() == {"error": {"message": "bad temperature", "type": "invalid_request_error",
                                                 "param": "temperature", "code": "invalid_value"}}


@pytest.mark.parametrize("exc, error", [(httpx.ReadTimeout, UpstreamTimeout),
                                        (httpx.ConnectError, UpstreamUnavailable)])
def test_timeouts_and_refused_connections_cost_nothing(world, exc, error):
    world.fund("1")

    def fail(request):
        raise exc("no answer", request=request)

    world.handler = fail
    with pytest.raises(error):
        chat(world)
    assert world.balance().available == 10**9 and world.balance().held == 0


def test_a_failing_channel_falls_back_to_the_next_and_the_request_is_charged_once(world):
    world.fund("1")
    world.catalog_repo.put_channel(Channel("backup", "http://backup.test/v1", "backup-secret"))
    world.catalog_repo.put_model(ModelEntry(**{**CHAT.__dict__, "routes": (
        Route("primary", "upstream-chat", priority=1), Route("backup", "backup-chat"))}))
    world.handler = lambda r: (httpx.Response(503, json={"error": {"message": "overloaded"}})
                               if r.url.host == "primary.test" else httpx.Response(200, json=chat_reply()))

    result = chat(world)

    assert [r.url.host for r in world.sent] == ["primary.test", "backup.test"]
    assert world.sent_json()["model"] == "backup-chat"
    assert [e.kind for e in world.ledger()] == ["credit", "charge"]
    assert world.usage.events[-1].channel == "backup"
    assert result.cost_units == 10 * 1000 + 5 * 2000


def test_a_4xx_does_not_fall_back(world):
    world.fund("1")
    world.catalog_repo.put_channel(Channel("backup", "http://backup.test/v1", "k"))
    world.catalog_repo.put_model(ModelEntry(**{**CHAT.__dict__, "routes": (
        Route("primary", "a"), Route("backup", "b"))}))
    world.handler = lambda r: httpx.Response(400, json={"error": {"message": "bad"}})
    with pytest.raises(UpstreamRejected):
        chat(world)
    assert len(world.sent) == 1


def test_usage_beyond_the_hold_is_charged_up_to_the_balance_and_the_shortfall_recorded(world):
    world.fund("0.00003")  # 30 000 units
    world.handler = lambda r: httpx.Response(200, json=chat_reply(prompt=10, completion=1000))

    result = chat(world, max_tokens=1)

    # The client is told what left its wallet; the rest is the recorded shortfall.
    assert result.cost_units == 30_000 and result.body["usage"]["cost_usd"] == "0.00003"
    assert world.balance().available == 0 and world.balance().held == 0
    charge = world.ledger()[-1]
    assert charge.amount == -30_000 and charge.shortfall == 10 * 1000 + 1000 * 2000 - 30_000
    event = world.usage.events[-1]
    assert (event.cost_units, event.shortfall_units) == (30_000, charge.shortfall)


def test_an_answer_without_usage_is_charged_the_estimate(world):
    world.fund("1")
    reply = chat_reply(content="abcdef")
    del reply["usage"]
    world.handler = lambda r: httpx.Response(200, json=reply)

    result = chat(world)

    assert result.cost_units == prompt_tokens(HELLO) * 1000 + 2 * 2000  # "abcdef" ≈ 2 tokens


def test_the_model_must_exist_be_routable_and_fit_the_endpoint(world):
    world.fund("1")
    with pytest.raises(ModelNotFound):
        chat(world, model="nope")
    world.catalog_repo.put_model(ModelEntry(**{**CHAT.__dict__, "name": "orphan", "routes": (Route("gone", "x"),)}))
    with pytest.raises(ModelNotFound):
        chat(world, model="orphan")
    with pytest.raises(InvalidRequest) as caught:
        chat(world, model="test-embed")
    assert caught.value.param == "model"
    assert world.sent == [] and world.balance().held == 0


@pytest.mark.parametrize("body, param", [
    ({"messages": HELLO}, "model"),
    ({"model": "test-chat"}, "messages"),
    ({"model": "test-chat", "messages": "hi"}, "messages"),
    ({"model": "test-chat", "messages": []}, "messages"),
    ({"model": 3, "messages": HELLO}, "model"),
    ({"model": "test-chat", "messages": HELLO, "stream": "yes"}, "stream"),
    ({"model": "test-chat", "messages": HELLO, "max_tokens": -1}, "max_tokens"),
    ({"model": "test-chat", "messages": HELLO, "max_tokens": 1.5}, "max_tokens"),
])
def test_a_malformed_body_names_the_bad_parameter(world, body, param):
    with pytest.raises(InvalidRequest) as caught:
        parse(ChatRequest, body)
    assert caught.value.param == param
    assert world.sent == []


def test_a_usage_sink_failure_does_not_fail_or_recharge_the_request(world):
    world.fund("1")

    class Broken:
        def put(self, event):
            raise RuntimeError("firehose down")

    world.relay._usage_sink = Broken()
    result = chat(world)
    assert result.cost_units == 20_000
    assert [e.kind for e in world.ledger()] == ["credit", "charge"]


def test_embeddings_are_charged_their_prompt_tokens(world):
    world.fund("1")
    world.handler = lambda r: httpx.Response(200, json={
        "object": "list", "model": "upstream-embed", "usage": {"prompt_tokens": 1000, "total_tokens": 1000},
        "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}]})

    result = embed(world, input=["Hello world"])

    assert result.cost_units == 1000 * 20  # $0.02 per 1M → 20 units per token
    assert result.body["model"] == "test-embed"
    assert world.sent_json()["model"] == "upstream-embed"


def test_images_are_charged_per_image_returned(world):
    world.fund("1")
    world.handler = lambda r: httpx.Response(200, json={"created": 1, "data": [{"url": "u1"}, {"url": "u2"}]})

    result = images(world, n=2)

    assert result.cost_units == 2 * 40_000_000
    assert world.balance().available == 10**9 - 80_000_000


def test_an_image_request_the_wallet_cannot_afford_is_refused(world):
    world.fund("0.05")
    with pytest.raises(InsufficientQuota):
        images(world, n=2)
    assert world.sent == []


def streamed(world: World, body: bytes, **request) -> tuple[list[str], object]:
    world.handler = lambda r: httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})
    result = chat(world, stream=True, **request)
    events = list(result.events)
    return events, result


USAGE = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}


def test_a_stream_is_relayed_and_charged_its_usage_which_the_client_did_not_ask_to_see(world):
    world.fund("1")
    events, result = streamed(world, sse(chunk("Hel"), chunk("lo"), chunk(finish="stop"),
                                         chunk(usage=USAGE, choices=False)))

    assert world.sent_json()["stream_options"] == {"include_usage": True}
    payloads = [json.loads(e[6:]) for e in events[:-1]]
    assert [p["choices"][0]["delta"].get("content") for p in payloads] == ["Hel", "lo", None]
    assert all("usage" not in p and p["model"] == "test-chat" for p in payloads)
    assert events[-1] == "data: [DONE]\n\n"
    assert result.cost_units == 10 * 1000 + 2 * 2000
    assert world.ledger()[-1].amount == -result.cost_units
    assert world.usage.events[-1].ttft_ms is not None


def test_a_stream_shows_usage_with_its_cost_when_the_client_asks(world):
    world.fund("1")
    events, result = streamed(world, sse(chunk("Hi"), chunk(finish="stop"), chunk(usage=USAGE, choices=False)),
                              stream_options={"include_usage": True})
    last = json.loads(events[-2][6:])
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == 2
    assert last["usage"]["cost_usd"] == "0.000014"


def test_a_stream_cut_after_content_ends_with_an_error_event_and_charges_what_was_delivered(world):
    world.fund("1")
    events, result = streamed(world, sse(chunk("abc"), chunk("def"), done=False))

    error = json.loads(events[-1][6:])
    assert error["error"]["code"] == "upstream_unavailable"
    assert "[DONE]" not in "".join(events)
    # The prompt estimate and the 2 tokens delivered ("abcdef"), no more than was held.
    assert result.cost_units == prompt_tokens(HELLO) * 1000 + 2 * 2000
    assert world.balance().held == 0
    assert world.usage.events[-1].status == 502


def test_a_stream_cut_before_any_content_fails_before_its_first_byte_and_costs_nothing(world):
    # Nothing reached the client: the failure is the answer's status, and another channel could have served.
    world.fund("1")
    world.handler = lambda r: httpx.Response(200, content=sse(chunk(""), done=False),
                                             headers={"content-type": "text/event-stream"})
    with pytest.raises(UpstreamUnavailable, match="ended the stream early"):
        chat(world, stream=True)
    assert world.balance().available == 10**9 and world.balance().held == 0
    assert world.usage.events[-1].status == 502


def test_a_stream_the_client_abandons_is_settled_for_what_it_received(world):
    world.fund("1")
    world.handler = lambda r: httpx.Response(200, content=sse(chunk("abc"), chunk("def"), chunk(finish="stop")))
    result = chat(world, stream=True)
    first = next(result.events)
    assert "abc" in first
    result.events.close()
    assert world.balance().held == 0
    assert result.cost_units == prompt_tokens(HELLO) * 1000 + 1 * 2000
    assert world.usage.events[-1].status == 499


def test_a_stream_closed_before_its_first_event_is_released_at_once(world):
    # A server that was handed the stream but never served it (its client gone, or an error first).
    world.fund("1")
    world.handler = lambda r: httpx.Response(200, content=sse(chunk("abc"), chunk(finish="stop")))
    result = chat(world, stream=True)
    result.events.close()
    assert world.balance().held == 0 and world.balance().available == 10**9
    assert result.cost_units == 0
    assert world.usage.events[-1].status == 499


def test_a_stream_that_fails_to_start_costs_nothing(world):
    world.fund("1")
    world.handler = lambda r: httpx.Response(500, json={"error": {"message": "down"}})
    with pytest.raises(UpstreamUnavailable):
        chat(world, stream=True)
    assert world.balance().available == 10**9 and world.balance().held == 0


def test_the_ledger_sums_to_the_balance_after_mixed_outcomes(world):
    world.fund("0.01")
    answers = iter([
        httpx.Response(200, json=chat_reply(prompt=30, completion=7)),
        httpx.Response(500, json={}),
        httpx.Response(200, json=chat_reply(prompt=3, completion=2000)),
    ])
    world.handler = lambda r: next(answers)
    for n in range(3):
        with contextlib.suppress(UpstreamUnavailable):
            chat(world, f"req_{n}")
    balance = world.balance()
    assert balance.held == 0
    assert sum(entry.amount for entry in world.ledger()) == balance.total


def test_a_cap_above_the_model_maximum_holds_and_asks_for_only_the_maximum(world):
    world.fund("0.0021")  # affords the model's 1000-token maximum (2 000 000 units) and the prompt
    chat(world, max_tokens=50_000)
    assert world.sent_json()["max_tokens"] == 1000


# Key and plan limits.

def limited(world: World, **changes) -> None:
    world.change_key(**changes)


@pytest.mark.parametrize("changes, code", [
    ({"models": ("other-model",)}, "model_not_allowed"),
    ({"cidrs": ("10.0.0.0/8",)}, "ip_not_allowed"),
    ({"group": "gone"}, "group_not_found"),
])
def test_a_key_outside_its_allowlists_is_refused_before_anything_is_held(world, changes, code):
    world.fund("1")
    limited(world, **changes)
    with pytest.raises(PermissionDenied) as caught:
        world.relay.chat(world.key, parse(ChatRequest, {"model": "test-chat", "messages": HELLO}), "r",
                         client_ip="192.168.0.9")
    assert caught.value.code == code and caught.value.status == 403
    assert world.sent == [] and world.balance().held == 0


def test_an_allowed_address_and_model_pass(world):
    world.fund("1")
    limited(world, models=("test-chat",), cidrs=("192.168.0.0/16",))
    world.relay.chat(world.key, parse(ChatRequest, {"model": "test-chat", "messages": HELLO}), "r",
                         client_ip="192.168.0.9")
    assert len(world.sent) == 1


def test_a_plan_prices_with_its_multiplier_and_limits_its_models(world):
    world.fund("1")
    world.catalog_repo.put_group(Group("pro", multiplier_ppm=1_500_000, models=("test-chat",)))
    world.accounts.set_groups("acct_1", ("pro",))
    limited(world, group="pro")
    result = chat(world)
    assert result.cost_units == 30_000  # 20 000 at list price × 1.5
    assert world.ledger()[-1].amount == -30_000
    with pytest.raises(PermissionDenied) as caught:
        embed(world, "r2", input="x")
    assert caught.value.code == "model_not_allowed"


def test_a_key_quota_caps_what_it_may_hold_and_spend(world):
    world.fund("1")
    limited(world, quota=25_000)
    chat(world, "r1")  # costs 20 000
    key = world.keys.get_by_hash("hash_1")
    assert (key.spent, key.reserved, key.quota_left, key.requests) == (20_000, 0, 5_000, 1)
    world.key = key
    with pytest.raises(PermissionDenied) as caught:
        chat(world, "r2")  # its prompt alone (7 tokens, 7 000 units) is more than the 5 000 left
    assert caught.value.code == "key_quota_exceeded"
    assert len(world.sent) == 1 and world.balance().held == 0


def test_a_key_quota_lowers_the_output_cap_like_the_wallet_does(world):
    world.fund("1")
    limited(world, quota=7_000 + 50 * 2_000)  # the prompt and 50 output tokens
    chat(world, max_tokens=500)
    assert world.sent_json()["max_tokens"] == 50


@pytest.mark.parametrize("changes, error, code", [
    ({"status": "disabled"}, PermissionDenied, "api_key_disabled"),
    ({"status": "revoked"}, InvalidApiKey, "api_key_revoked"),
    ({"expires_at": 1}, InvalidApiKey, "api_key_expired"),
])
def test_a_key_changed_after_it_was_read_is_refused_when_held(world, changes, error, code):
    world.fund("1")
    stale = world.key
    world.change_key(**changes)
    with pytest.raises(error) as caught:
        world.relay.chat(stale, parse(ChatRequest, {"model": "test-chat", "messages": HELLO}), "r")
    assert caught.value.code == code
    assert world.sent == [] and world.balance().held == 0


def test_a_disabled_account_is_refused_when_held(world):
    world.fund("1")
    world.accounts.set_status("acct_1", "disabled")
    with pytest.raises(PermissionDenied) as caught:
        chat(world)
    assert caught.value.code == "account_disabled"
