"""Relay requests as the API parses them, and an upstream that bills like a real provider."""

from __future__ import annotations

import json
from typing import Any

import httpx

from chalicelib.core.validation import parse
from chalicelib.relay.relay import RelayResult
from chalicelib.relay.schemas import ChatRequest, EmbeddingsRequest, ImagesRequest
from tests.unit.conftest import World, chat_reply

HELLO = [{"role": "user", "content": "Hello"}]


def chat(world: World, request_id: str = "req_1", **body: Any) -> RelayResult:
    """A chat request to `test-chat` saying Hello, with `body` on top."""
    command = parse(ChatRequest, {"model": "test-chat", "messages": HELLO, **body})
    return world.relay.chat(world.key, command, request_id)


def embed(world: World, request_id: str = "req_1", **body: Any) -> RelayResult:
    command = parse(EmbeddingsRequest, {"model": "test-embed", **body})
    return world.relay.embeddings(world.key, command, request_id)


def images(world: World, request_id: str = "req_1", **body: Any) -> RelayResult:
    command = parse(ImagesRequest, {"model": "test-image", "prompt": "a cat", **body})
    return world.relay.images(world.key, command, request_id)


# Chat fields that are not prompt: the model, the output caps, and delivery.
_NOT_PROMPT = {"model", "messages", "max_tokens", "max_completion_tokens", "n", "stream", "stream_options"}


def provider_tokens(value: Any) -> int:
    """A tokenizer's count: a token per 4 characters of every string, keys included."""
    if isinstance(value, str):
        return -(-len(value) // 4)
    if isinstance(value, list):
        return sum(provider_tokens(item) for item in value)
    if isinstance(value, dict):
        return sum(provider_tokens(k) + provider_tokens(v) for k, v in value.items())
    return 0


def billing_upstream(cap_field: str = "max_tokens", writes: int = 20_000):
    """A chat upstream like the red team's: it bills every prompt field (3 tokens per message
    and every string it is sent) and reads the output cap only from `cap_field`; without
    one it writes `writes` tokens per choice."""

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        prompt = sum(3 + provider_tokens(message) for message in body["messages"])
        prompt += sum(provider_tokens(value) for name, value in body.items() if name not in _NOT_PROMPT)
        cap = body.get(cap_field)
        completion = (min(cap, writes) if isinstance(cap, int) else writes) * body.get("n", 1)
        return httpx.Response(200, json=chat_reply("x", prompt=prompt, completion=completion))

    return answer
