"""The demo upstream through the official openai SDK, and the fake upstream's scripted faults through httpx."""

from __future__ import annotations

import base64
import json
import math
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from openai import OpenAI

from devstack.demo_upstream import DemoUpstream, count_tokens, truncate_tokens
from tests.fakes.upstream import (
    FakeUpstream,
    Fault,
    close,
    cut_stream,
    delay,
    http_error,
    images,
    malformed,
    no_usage,
    usage,
    writes,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HELLO = [{"role": "user", "content": "Hello, world!"}]
HELLO_REPLY = "[demo upstream] You said: Hello, world!"
AUTH = {"Authorization": "Bearer sk-test"}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
def upstream(server: FakeUpstream) -> FakeUpstream:
    server.reset()
    return server


@pytest.fixture
def client(upstream: FakeUpstream) -> Iterator[OpenAI]:
    with OpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0, timeout=5) as sdk:
        yield sdk


@pytest.fixture
def http(upstream: FakeUpstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=upstream.base_url, headers=AUTH, timeout=5) as h:
        yield h


def sse_events(response: httpx.Response) -> list[str]:
    return [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]


# ---------------------------------------------------------------------------
# Tokenizer


def test_tokens_are_word_runs_and_single_punctuation_marks():
    assert count_tokens("Hello, world!") == 4
    assert count_tokens("[demo upstream] You said: ") == 7
    assert count_tokens("") == 0
    assert truncate_tokens("[demo upstream] You said: hi", 3) == "[demo upstream"
    assert truncate_tokens("short", 5) == "short"


# ---------------------------------------------------------------------------
# Chat completions through the SDK


def test_a_chat_reply_echoes_the_last_user_message_with_real_usage(client):
    reply = client.chat.completions.create(model="any-model", messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": "First answer"},
        *HELLO,
    ])

    assert reply.object == "chat.completion"
    assert reply.id.startswith("chatcmpl-")
    assert reply.model == "any-model"
    assert reply.system_fingerprint == "demo"
    [choice] = reply.choices
    assert (choice.index, choice.finish_reason, choice.message.role) == (0, "stop", "assistant")
    assert choice.message.content == HELLO_REPLY
    # Be . + First question + First answer + Hello , world ! = 3 + 2 + 2 + 4; the reply is 7 + 4.
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (11, 11, 22)
    assert reply.usage.prompt_tokens_details.cached_tokens == 0


def test_a_list_of_parts_is_answered_from_its_text_parts_and_the_echo_is_cut_at_200_characters(client):
    long_text = "x" * 300
    reply = client.chat.completions.create(model="m", messages=[{"role": "user", "content": [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "text", "text": long_text},
    ]}])

    assert reply.choices[0].message.content == "[demo upstream] You said: " + ("look " + long_text)[:200]
    assert reply.usage.prompt_tokens == 2


@pytest.mark.parametrize("cap", ["max_tokens", "max_completion_tokens"])
def test_a_reply_longer_than_the_cap_is_cut_to_it_with_finish_reason_length(client, cap):
    reply = client.chat.completions.create(model="m", messages=HELLO, **{cap: 3})

    assert reply.choices[0].message.content == "[demo upstream"
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 3


def test_a_cap_the_reply_fits_in_finishes_with_stop(client):
    reply = client.chat.completions.create(model="m", messages=HELLO, max_tokens=11)

    assert (reply.choices[0].message.content, reply.choices[0].finish_reason) == (HELLO_REPLY, "stop")


def test_n_choices_are_indexed_and_all_counted_in_usage(client):
    reply = client.chat.completions.create(model="m", messages=HELLO, n=2)

    assert [c.index for c in reply.choices] == [0, 1]
    assert {c.message.content for c in reply.choices} == {HELLO_REPLY}
    assert (reply.usage.completion_tokens, reply.usage.total_tokens) == (22, 26)


def test_a_stream_reassembles_to_the_plain_reply_and_carries_no_usage_unless_asked(client):
    plain = client.chat.completions.create(model="m", messages=HELLO)
    chunks = list(client.chat.completions.create(model="m", messages=HELLO, stream=True))

    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    content = [c.choices[0].delta.content for c in chunks[1:-1]]
    assert len(content) > 2 and all(content)
    assert "".join(content) == plain.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.object == "chat.completion.chunk" and c.usage is None for c in chunks)
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


def test_a_stream_asked_for_usage_ends_with_a_usage_chunk_without_choices(client):
    plain = client.chat.completions.create(model="m", messages=HELLO)
    chunks = list(client.chat.completions.create(model="m", messages=HELLO, stream=True,
                                                 stream_options={"include_usage": True}))

    *body, last = chunks
    assert last.choices == []
    assert last.usage.model_dump() == plain.usage.model_dump()
    assert all(c.usage is None for c in body)
    assert body[-1].choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].delta.content or "" for c in body) == plain.choices[0].message.content


def test_a_capped_stream_finishes_with_length(client):
    chunks = list(client.chat.completions.create(model="m", messages=HELLO, stream=True, max_tokens=3,
                                                 stream_options={"include_usage": True}))

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "[demo upstream"
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].usage.completion_tokens == 3


def test_a_stream_is_chunked_event_stream_ending_with_done(http):
    with http.stream("POST", "/chat/completions", json={"model": "m", "messages": HELLO, "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/event-stream"
        assert r.headers["transfer-encoding"] == "chunked"
        events = sse_events(r)

    assert events[-1] == "[DONE]"
    assert all("usage" not in json.loads(e) for e in events[:-1])


# ---------------------------------------------------------------------------
# Embeddings, images, models through the SDK


def test_embeddings_come_back_as_deterministic_unit_vectors_one_per_input(client, upstream):
    first = client.embeddings.create(model="embed", input=["alpha beta", "gamma"])
    again = client.embeddings.create(model="embed", input="alpha beta")

    assert upstream.requests[0].json["encoding_format"] == "base64"  # the SDK's default
    assert [d.index for d in first.data] == [0, 1]
    vectors = [d.embedding for d in first.data]
    assert all(len(v) == 16 and all(isinstance(x, float) for x in v) for v in vectors)
    assert all(math.isclose(math.fsum(x * x for x in v), 1.0, rel_tol=1e-5) for v in vectors)
    assert vectors[0] != vectors[1]
    assert again.data[0].embedding == vectors[0]
    assert (first.model, first.usage.prompt_tokens, first.usage.total_tokens) == ("embed", 3, 3)


def test_float_and_base64_embeddings_carry_the_same_numbers(client):
    floats = client.embeddings.create(model="e", input="same", encoding_format="float")
    encoded = client.embeddings.create(model="e", input="same", encoding_format="base64")
    decoded = client.embeddings.create(model="e", input="same")

    raw = base64.b64decode(encoded.data[0].embedding)
    assert len(raw) == 16 * 4
    assert floats.data[0].embedding == decoded.data[0].embedding


def test_embeddings_honour_dimensions_and_accept_token_arrays(client):
    sized = client.embeddings.create(model="e", input="text", dimensions=8)
    tokens = client.embeddings.create(model="e", input=[[1, 2, 3], [4, 5]])
    single = client.embeddings.create(model="e", input=[1, 2, 3])

    assert len(sized.data[0].embedding) == 8
    assert len(tokens.data) == 2 and tokens.usage.prompt_tokens == 5
    assert single.data[0].embedding == tokens.data[0].embedding


def test_an_image_url_serves_a_png(client, http):
    result = client.images.generate(model="img", prompt="a red fox", n=2)

    assert [d.revised_prompt for d in result.data] == ["[demo upstream] a red fox"] * 2
    assert len({d.url for d in result.data}) == 2
    fetched = httpx.get(result.data[0].url, timeout=5)  # no credentials, like a signed blob URL
    assert fetched.status_code == 200
    assert fetched.headers["content-type"] == "image/png"
    assert fetched.content.startswith(PNG_SIGNATURE)


def test_an_image_as_b64_json_is_a_png(client):
    result = client.images.generate(model="img", prompt="a red fox", response_format="b64_json")

    [image] = result.data
    assert image.url is None
    assert base64.b64decode(image.b64_json).startswith(PNG_SIGNATURE)


def test_models_are_listed(client):
    assert {m.id for m in client.models.list()} == {"demo-chat", "demo-embedding", "demo-image"}


def test_the_sdk_raises_its_own_errors_for_the_envelopes(client, upstream):
    upstream.fail_next(http_error(429, "slow down", code="rate_limit_exceeded"))
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="m", messages=HELLO)
    assert caught.value.code == "rate_limit_exceeded"

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="", messages=HELLO)
    assert caught.value.param == "model"


# ---------------------------------------------------------------------------
# Errors of the demo upstream itself


def test_without_a_bearer_key_the_answer_is_401(upstream):
    for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Basic abc"}):
        r = httpx.post(f"{upstream.base_url}/chat/completions", json={"model": "m", "messages": HELLO},
                       headers=headers)
        assert r.status_code == 401
        assert r.json()["error"]["type"] == "invalid_request_error"


def test_malformed_json_missing_model_and_unknown_paths_get_the_error_envelope(http):
    bad = http.post("/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400
    assert bad.json() == {"error": {"message": bad.json()["error"]["message"], "type": "invalid_request_error",
                                    "param": None, "code": None}}

    missing = http.post("/embeddings", json={"input": "x"})
    assert (missing.status_code, missing.json()["error"]["param"]) == (400, "model")

    unknown = http.get("/nowhere")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["type"] == "invalid_request_error"


def test_routes_answer_without_the_v1_prefix_too(upstream):
    root = upstream.base_url.removesuffix("/v1")
    r = httpx.post(f"{root}/chat/completions", json={"model": "m", "messages": HELLO}, headers=AUTH)
    assert r.json()["choices"][0]["message"]["content"] == HELLO_REPLY


# ---------------------------------------------------------------------------
# Scripted faults through httpx


def test_an_http_error_answers_with_its_status_and_envelope_then_the_normal_reply_resumes(upstream, http):
    upstream.fail_next(http_error(503, "overloaded", code="busy", headers={"Retry-After": "1"}), times=2)

    for _ in range(2):
        r = http.post("/embeddings", json={"model": "e", "input": "x"})
        assert r.status_code == 503
        assert r.headers["retry-after"] == "1"
        assert r.json() == {"error": {"message": "overloaded", "type": "server_error", "param": None, "code": "busy"}}
    assert http.post("/embeddings", json={"model": "e", "input": "x"}).status_code == 200


@pytest.mark.parametrize("status, type", [(400, "invalid_request_error"), (404, "invalid_request_error"),
                                          (429, "rate_limit_error"), (500, "server_error")])
def test_http_error_types_default_by_status(upstream, http, status, type):
    upstream.fail_next(Fault.http_error(status, "nope", param="messages"))

    r = http.post("/chat/completions", json={"model": "m", "messages": HELLO})
    assert r.status_code == status
    assert r.json()["error"] == {"message": "nope", "type": type, "param": "messages", "code": None}


def test_a_fault_for_a_path_waits_for_a_request_to_that_path(upstream, http):
    upstream.fail_next(http_error(500), path="/v1/images/generations")

    assert http.post("/chat/completions", json={"model": "m", "messages": HELLO}).status_code == 200
    assert http.post("/images/generations", json={"prompt": "p"}).status_code == 500
    assert upstream.pending_faults == 0


def test_malformed_answers_200_json_that_does_not_parse(upstream, http):
    upstream.fail_next(malformed())

    r = http.post("/chat/completions", json={"model": "m", "messages": HELLO})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        r.json()


def test_a_cut_stream_stops_after_the_content_chunks_without_finish_or_done(upstream, http):
    upstream.fail_next(cut_stream(after_chunks=2))

    events = []
    with pytest.raises(httpx.RemoteProtocolError):
        with http.stream("POST", "/chat/completions", json={"model": "m", "messages": HELLO, "stream": True}) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events.append(line[len("data: "):])

    assert "[DONE]" not in events
    chunks = [json.loads(e) for e in events]
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""}, {"content": "[demo "}, {"content": "upstream] "}]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks)


def test_the_sdk_reads_a_stream_incrementally_up_to_the_cut(upstream, client):
    upstream.fail_next(cut_stream(after_chunks=1))

    received = []
    with pytest.raises(openai.APIConnectionError):  # the SDK wraps the transport error met mid-stream
        for chunk in client.chat.completions.create(model="m", messages=HELLO, stream=True):
            received.append(chunk.choices[0].delta.content)
    assert received == ["", "[demo "]


def test_a_cut_non_stream_request_and_close_drop_the_connection_without_a_response(upstream, http):
    upstream.fail_next(cut_stream(after_chunks=0))
    upstream.fail_next(close())

    with pytest.raises(httpx.TransportError):
        http.post("/chat/completions", json={"model": "m", "messages": HELLO})
    with pytest.raises(httpx.TransportError):
        http.get("/models")
    assert http.get("/models").status_code == 200
    assert len(upstream.requests) == 3


def test_a_delay_holds_the_answer_past_a_client_timeout(upstream, http):
    upstream.fail_next(delay(1.0))
    with pytest.raises(httpx.ReadTimeout):
        http.post("/chat/completions", json={"model": "m", "messages": HELLO}, timeout=0.2)

    upstream.fail_next(delay(0.1))
    started = time.monotonic()
    r = http.post("/chat/completions", json={"model": "m", "messages": HELLO})
    assert r.status_code == 200 and time.monotonic() - started >= 0.1


def test_stop_is_prompt_while_a_handler_is_sleeping():
    upstream = FakeUpstream()
    upstream.start()
    upstream.fail_next(delay(30))
    errors: list[Exception] = []

    def call() -> None:
        try:
            httpx.post(f"{upstream.base_url}/models", headers=AUTH, timeout=10)
        except httpx.TransportError as error:
            errors.append(error)

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 2
    while not upstream.requests and time.monotonic() < deadline:
        time.sleep(0.01)

    started = time.monotonic()
    upstream.stop()
    caller.join(timeout=2)
    assert time.monotonic() - started < 1.5
    assert not caller.is_alive() and len(errors) == 1


def test_usage_reports_the_scripted_numbers_in_replies_and_stream_usage_chunks(upstream, http):
    upstream.fail_next(usage(prompt=100, completion=40, cached=30), times=2)
    plain = http.post("/chat/completions", json={"model": "m", "messages": HELLO})
    with http.stream("POST", "/chat/completions", json={"model": "m", "messages": HELLO, "stream": True,
                                                        "stream_options": {"include_usage": True}}) as r:
        events = sse_events(r)

    expected = {"prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140,
                "prompt_tokens_details": {"cached_tokens": 30}}
    assert plain.json()["usage"] == expected
    assert plain.json()["choices"][0]["message"]["content"] == HELLO_REPLY
    final = json.loads(events[-2])
    assert (final["choices"], final["usage"], events[-1]) == ([], expected, "[DONE]")

    upstream.fail_next(usage(prompt=7))
    embedded = http.post("/embeddings", json={"model": "e", "input": "x"})
    assert embedded.json()["usage"] == {"prompt_tokens": 7, "total_tokens": 7}


def test_no_usage_leaves_usage_out_of_replies_and_streams(upstream, http):
    upstream.fail_next(no_usage(), times=2)
    plain = http.post("/chat/completions", json={"model": "m", "messages": HELLO})
    with http.stream("POST", "/chat/completions", json={"model": "m", "messages": HELLO, "stream": True,
                                                        "stream_options": {"include_usage": True}}) as r:
        events = sse_events(r)

    assert "usage" not in plain.json()
    assert plain.json()["choices"][0]["message"]["content"] == HELLO_REPLY
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all("usage" not in c and c["choices"] for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_writes_reports_its_tokens_unless_capped_in_the_one_field_it_reads(upstream, http):
    upstream.fail_next(writes(20_000, cap_field="max_tokens"), times=3)
    ignored = http.post("/chat/completions", json={"model": "m", "messages": HELLO, "max_completion_tokens": 1})
    capped = http.post("/chat/completions", json={"model": "m", "messages": HELLO, "max_tokens": 3, "n": 2})
    uncapped = http.post("/chat/completions", json={"model": "m", "messages": HELLO})
    assert ignored.json()["usage"]["completion_tokens"] == 20_000
    assert capped.json()["usage"]["completion_tokens"] == 6
    assert uncapped.json()["usage"]["completion_tokens"] == 20_000
    assert ignored.json()["usage"]["prompt_tokens"] == count_tokens("Hello, world!")


def test_images_answers_with_its_count_whatever_n_says(upstream, http):
    upstream.fail_next(images(8))
    answer = http.post("/images/generations", json={"model": "i", "prompt": "a cat", "n": 1})
    assert len(answer.json()["data"]) == 8


def test_the_request_log_records_method_path_headers_and_json_body(upstream, client):
    client.chat.completions.create(model="m", messages=HELLO, temperature=0.5)
    upstream.fail_next(http_error(500))
    httpx.post(f"{upstream.base_url}/embeddings", content=b"not json", headers=AUTH)

    chat, broken = upstream.requests
    assert (chat.method, chat.path) == ("POST", "/v1/chat/completions")
    assert chat.json == {"model": "m", "messages": HELLO, "temperature": 0.5}
    assert chat.headers["Authorization"] == chat.headers["authorization"] == "Bearer sk-test"
    assert (broken.path, broken.json, broken.body) == ("/v1/embeddings", None, b"not json")

    upstream.reset()
    assert upstream.requests == []


def test_faults_are_handed_out_exactly_once_under_concurrent_requests(upstream):
    upstream.fail_next(http_error(500), times=5)

    def call(_: int) -> int:
        return httpx.post(f"{upstream.base_url}/chat/completions", json={"model": "m", "messages": HELLO},
                          headers=AUTH, timeout=5).status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(call, range(12)))

    assert sorted(statuses) == [200] * 7 + [500] * 5
    assert len(upstream.requests) == 12 and upstream.pending_faults == 0


def test_the_demo_upstream_runs_on_its_own_and_stops_cleanly():
    demo = DemoUpstream()
    demo.start()
    try:
        assert demo.base_url.startswith("http://127.0.0.1:") and demo.base_url.endswith("/v1")
        with OpenAI(base_url=demo.base_url, api_key="k", max_retries=0) as sdk:
            assert sdk.chat.completions.create(model="m", messages=HELLO).choices[0].message.content == HELLO_REPLY
    finally:
        demo.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{demo.base_url}/models", headers=AUTH, timeout=1)
