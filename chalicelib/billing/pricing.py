"""What a request may cost before it runs, and what it did cost after.

`charge` is the one rule that turns prices, usage and a plan's multiplier into
units: the exact sum of every part, rounded up to the next unit once. The hold
(a Quote of the most a request may use) and the settlement (the usage the
upstream reported) both go through it.

Before the call the gateway estimates the prompt without a tokenizer: one
token per 3 ASCII characters and one per other character (CJK text runs
about one token per character), plus 4 tokens of framing per message and
765 per image part. Every other field sent upstream that a provider may turn
into prompt (tools, functions, response_format, …) is counted by its JSON
text. The estimate errs high, so the hold usually covers the bill; when it
does not, settlement charges the rest from the wallet and records the shortfall.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib.core.domain import CAP_FIELDS, PPM, Prices
from chalicelib.core.errors import InvalidRequest
from chalicelib.core.money import TOKENS_PER_PRICE, ceil_div

TOKENS_PER_MESSAGE = 4
TOKENS_PER_IMAGE_PART = 765

# Chat fields that never reach the model as prompt: the model's name, the output
# cap (held for separately) and how the answer is delivered.
_NOT_PROMPT = frozenset({"model", *CAP_FIELDS, "n", "stream", "stream_options"})


@dataclass(frozen=True)
class Usage:
    """Billable quantities of one request."""

    prompt_tokens: int = 0  # all of the prompt: uncached input, cache reads and cache writes
    cached_tokens: int = 0  # of which read from the provider's cache
    completion_tokens: int = 0
    images: int = 0
    cache_write_tokens: int = 0  # of which written to the provider's cache


def charge(prices: Prices, usage: Usage, multiplier_ppm: int = PPM) -> int:
    """What the usage costs in units at a plan's multiplier: summed exactly, rounded up once.

    The prompt is uncached input + cache reads + cache writes, each at its own rate."""
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    written = min(usage.cache_write_tokens, usage.prompt_tokens - cached)
    exact = (  # in units × 1M
        (usage.prompt_tokens - cached - written) * prices.input_per_1m
        + cached * prices.cached_rate
        + written * prices.cache_write_rate
        + usage.completion_tokens * prices.output_per_1m
        + usage.images * prices.per_image * TOKENS_PER_PRICE
    )
    return ceil_div(exact * multiplier_ppm, TOKENS_PER_PRICE * PPM)


def text_tokens(text: str) -> int:
    """Estimated tokens of a text."""
    ascii_chars = sum(1 for ch in text if ch < "\x80")
    return ceil_div(ascii_chars, 3) + (len(text) - ascii_chars)


def prompt_tokens(messages: list[Any]) -> int:
    """Estimated prompt tokens of chat messages (already validated as a list)."""
    total = 0
    for message in messages:
        total += TOKENS_PER_MESSAGE
        if isinstance(message, dict):
            for key, value in message.items():
                total += _value_tokens(value) if key != "role" else 1
    return total


def chat_prompt_tokens(body: Mapping[str, Any]) -> int:
    """Estimated prompt tokens of a whole chat body: its messages, and every other field
    sent upstream except the model, the output cap and the delivery options."""
    total = 0
    for name, value in body.items():
        if name in _NOT_PROMPT or value is None or isinstance(value, bool | int | float):
            continue  # numbers and flags tune sampling; they are not prompt text
        try:
            if name == "messages":
                total += prompt_tokens(value)
            else:
                total += text_tokens(value if isinstance(value, str) else
                                     json.dumps(value, ensure_ascii=False, separators=(",", ":")))
        except RecursionError:
            raise InvalidRequest(f"'{name}' is nested too deeply.", param=name, code="invalid_value") from None
    return total


def _value_tokens(value: Any) -> int:
    if isinstance(value, str):
        return text_tokens(value)
    if isinstance(value, list):
        return sum(_part_tokens(part) for part in value)
    if isinstance(value, dict):
        return sum(_value_tokens(v) for v in value.values())
    return 0


def _part_tokens(part: Any) -> int:
    if isinstance(part, dict) and part.get("type") in ("image_url", "input_image", "image"):
        return TOKENS_PER_IMAGE_PART
    return _value_tokens(part)


def embedding_input_tokens(value: Any) -> int:
    """Estimated tokens of a validated embeddings `input`: text, texts, or token arrays."""
    if isinstance(value, str):
        return text_tokens(value)
    if isinstance(value, list):
        return sum(1 if isinstance(item, int) else embedding_input_tokens(item) for item in value)
    return 0


def read_usage(usage: Any) -> Usage | None:
    """Read an upstream's `usage` object in any shape a supported provider sends; None if it
    carries no token count at all (then the gateway's estimate is charged).

    - OpenAI chat and embeddings, Qwen, Doubao, GLM: `prompt_tokens`, `completion_tokens`,
      `prompt_tokens_details.cached_tokens`;
    - DeepSeek: `prompt_cache_hit_tokens`; Kimi: a top-level `cached_tokens`;
    - OpenAI Responses and image models: `input_tokens`, `output_tokens`,
      `input_tokens_details.cached_tokens` (input includes the cached part);
    - Anthropic: `input_tokens` without the cache, `cache_read_input_tokens` and
      `cache_creation_input_tokens` beside it, `output_tokens` (or, as the Anthropic adapter
      answers, OpenAI's fields with the two cache counts kept beside them). Cache writes
      are counted apart, to be priced at the model's cache-write price.
    """
    if not isinstance(usage, dict):
        return None
    if not any(_is_count(usage.get(name)) for name in ("prompt_tokens", "completion_tokens", "input_tokens",
                                                       "output_tokens")):
        return None
    cache_read = _count(usage.get("cache_read_input_tokens"))
    cache_write = _count(usage.get("cache_creation_input_tokens"))
    prompt = _count(usage.get("prompt_tokens")) or (_count(usage.get("input_tokens")) + cache_read + cache_write)
    completion = _count(usage.get("completion_tokens")) or _count(usage.get("output_tokens"))
    cached = (_detail(usage, "prompt_tokens_details") or _detail(usage, "input_tokens_details")
              or _count(usage.get("prompt_cache_hit_tokens")) or _count(usage.get("cached_tokens")) or cache_read)
    cached = min(cached, prompt)
    return Usage(prompt_tokens=prompt, cached_tokens=cached, completion_tokens=completion,
                 cache_write_tokens=min(cache_write, prompt - cached))


def _detail(usage: dict[str, Any], name: str) -> int:
    details = usage.get(name)
    return _count(details.get("cached_tokens")) if isinstance(details, dict) else 0


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _count(value: Any) -> int:
    return value if _is_count(value) else 0
