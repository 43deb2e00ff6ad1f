"""What a request may cost before it runs, and what it did cost after.

Before the call the gateway estimates the prompt without a tokenizer: one
token per 3 ASCII characters and one per other character (CJK text runs
about one token per character), plus 4 tokens of framing per message and
765 per image part. The estimate errs high, so the hold usually covers the
bill; when it does not, settlement charges the rest from the wallet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chalicelib.core.domain import PPM, Prices
from chalicelib.core.money import TOKENS_PER_PRICE, ceil_div

TOKENS_PER_MESSAGE = 4
TOKENS_PER_IMAGE_PART = 765


@dataclass(frozen=True)
class Usage:
    """Billable quantities of one request."""

    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    images: int = 0


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
    """Estimated tokens of an embeddings `input`: text, texts, or token arrays."""
    if isinstance(value, str):
        return text_tokens(value)
    if isinstance(value, list):
        return sum(1 if isinstance(item, int) else embedding_input_tokens(item) for item in value)
    return 0


def token_charge(prices: Prices, usage: Usage) -> int:
    """The exact charge of the usage, in units × 1M (not yet rounded)."""
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    return (
        (usage.prompt_tokens - cached) * prices.input_per_1m
        + cached * prices.cached_rate
        + usage.completion_tokens * prices.output_per_1m
    )


def cost(prices: Prices, usage: Usage, multiplier_ppm: int = PPM) -> int:
    """What the usage costs in units at a plan's multiplier, rounded up once."""
    exact = token_charge(prices, usage) + usage.images * prices.per_image * TOKENS_PER_PRICE
    return ceil_div(exact * multiplier_ppm, TOKENS_PER_PRICE * PPM)


def usage_from_openai(usage: Any) -> Usage | None:
    """Read an OpenAI-format `usage` object (with the DeepSeek and OpenAI cache fields)."""
    if not isinstance(usage, dict):
        return None
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens"))
    details = usage.get("prompt_tokens_details")
    cached = _count(details.get("cached_tokens")) if isinstance(details, dict) else 0
    cached = cached or _count(usage.get("prompt_cache_hit_tokens"))
    return Usage(prompt_tokens=prompt, cached_tokens=cached, completion_tokens=completion)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
