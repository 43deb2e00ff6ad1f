"""The manual's SDK snippets, verbatim, against the gateway, with both base URL forms."""

from __future__ import annotations

import base64
import json
from decimal import Decimal

import pytest
from openai import OpenAI

from tests.api.conftest import Stack


@pytest.fixture(params=["", "/v1"], ids=["no-v1", "v1"])
def client_for(request, stack: Stack):
    def make(key: str) -> OpenAI:
        return OpenAI(base_url=stack.url + request.param, api_key=key, max_retries=0)
    return make


def spent(stack: Stack, account_id: str, funded: str) -> Decimal:
    wallet = stack.wallet(account_id)
    assert wallet["held_usd"] == "0.00"
    return Decimal(funded) - Decimal(wallet["balance_usd"])


def test_chat_completion_is_answered_and_charged_exactly(stack, upstream, client_for):
    account_id, key = stack.customer("1")
    client = client_for(key)

    raw = client.chat.completions.with_raw_response.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "Hello"}])
    response = raw.parse()

    assert response.model == "deepseek-chat"
    assert "Hello" in response.choices[0].message.content
    usage = response.usage
    # deepseek-chat: $0.28 / 1M input, $0.42 / 1M output
    expected = Decimal(usage.prompt_tokens) * Decimal("0.28") / 10**6 + \
        Decimal(usage.completion_tokens) * Decimal("0.42") / 10**6
    assert Decimal(raw.headers["x-tokenway-cost-usd"]) == expected
    assert spent(stack, account_id, "1") == expected
    assert upstream.requests[-1].json["model"] == "deepseek-chat"
    assert upstream.requests[-1].headers["authorization"] == "Bearer up-key"


def test_streamed_chat_arrives_as_openai_chunks_and_is_charged(stack, upstream, client_for):
    account_id, key = stack.customer("1")
    client = client_for(key)
    plain = client.chat.completions.create(model="deepseek-chat", messages=[{"role": "user", "content": "Hi you"}])

    chunks = list(client.chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "Hi you"}], stream=True))

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert all(c.model == "deepseek-chat" for c in chunks)
    assert all(c.usage is None for c in chunks)  # the client did not ask for usage
    assert upstream.requests[-1].json["stream_options"] == {"include_usage": True}
    # The stream reported the same usage as the plain call, which the client never saw: same charge.
    plain_cost = Decimal(plain.usage.model_extra["cost_usd"])
    assert plain_cost > 0 and spent(stack, account_id, "1") == 2 * plain_cost


def test_streamed_chat_shows_usage_when_asked(stack, upstream, client_for):
    account_id, key = stack.customer("1")
    chunks = list(client_for(key).chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "Hi"}], stream=True,
        stream_options={"include_usage": True}))
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage.completion_tokens > 0
    cost = Decimal(usage.model_extra["cost_usd"])
    assert cost == spent(stack, account_id, "1")


def test_the_raw_stream_ends_with_done(stack, upstream):
    import httpx

    _, key = stack.customer("1")
    response = httpx.post(stack.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                          json={"model": "deepseek-chat", "messages": [{"role": "user", "content": "Hi"}],
                                "stream": True}, timeout=30)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line for line in response.text.split("\n\n") if line]
    assert events[-1] == "data: [DONE]"
    assert all(event.startswith("data: ") for event in events)
    assert json.loads(events[0][6:])["object"] == "chat.completion.chunk"


def test_embeddings_are_answered_and_charged(stack, upstream, client_for):
    account_id, key = stack.customer("1")
    raw = client_for(key).embeddings.with_raw_response.create(model="text-embedding-3-small",
                                                              input=["Hello world"])
    emb = raw.parse()
    assert emb.model == "text-embedding-3-small"
    assert len(emb.data) == 1 and len(emb.data[0].embedding) > 0
    expected = Decimal(emb.usage.prompt_tokens) * Decimal("0.02") / 10**6
    assert Decimal(raw.headers["x-tokenway-cost-usd"]) == expected == spent(stack, account_id, "1")


def test_images_are_generated_and_charged_per_image(stack, upstream, client_for):
    account_id, key = stack.customer("1")
    client = client_for(key)
    img = client.images.generate(model="dall-e-3", prompt="Chinese landscape painting, digital art")
    assert img.data[0].url
    b64 = client.images.generate(model="dall-e-3", prompt="A lotus", response_format="b64_json")
    assert base64.b64decode(b64.data[0].b64_json).startswith(b"\x89PNG")
    assert spent(stack, account_id, "1") == Decimal("0.08")


def test_models_lists_the_routable_models(stack, client_for):
    _, key = stack.customer("0")
    ids = {model.id for model in client_for(key).models.list()}
    assert {"deepseek-chat", "text-embedding-3-small", "dall-e-3"} <= ids
    assert "claude-sonnet" not in ids  # no channel serves it here


def test_the_manuals_curl_command_works(stack, upstream):
    import subprocess

    account_id, key = stack.customer("1")
    done = subprocess.run(
        ["curl", "-sS", "-i", f"{stack.url}/v1/chat/completions",
         "-H", f"Authorization: Bearer {key}", "-H", "Content-Type: application/json",
         "-d", '{"model": "deepseek-chat", "messages": [{"role": "user", "content": "Hello"}]}'],
        capture_output=True, timeout=60, check=True)
    head, _, body = done.stdout.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 200")
    assert "x-tokenway-cost-usd:" in head.lower()
    assert json.loads(body)["choices"][0]["message"]["content"]
    assert spent(stack, account_id, "1") > 0
