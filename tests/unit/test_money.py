from decimal import Decimal

import pytest

from chalicelib.billing.pricing import (
    Usage,
    charge,
    embedding_input_tokens,
    prompt_tokens,
    read_usage,
    text_tokens,
)
from chalicelib.core.domain import Prices
from chalicelib.core.money import units_to_usd, usd_to_units


@pytest.mark.parametrize("usd, units", [("1", 10**9), ("0.028", 28_000_000), (3, 3 * 10**9),
                                        ("0.000000001", 1), (Decimal("12.5"), 12_500_000_000), ("0", 0)])
def test_usd_parses_to_exact_units(usd, units):
    assert usd_to_units(usd) == units


@pytest.mark.parametrize("bad", ["-1", "0.0000000001", "abc", "NaN", "Infinity", ""])
def test_inexact_negative_or_non_numeric_usd_is_refused(bad):
    with pytest.raises(ValueError):
        usd_to_units(bad)


@pytest.mark.parametrize("units, text", [(0, "0.00"), (10**9, "1.00"), (1, "0.000000001"),
                                         (1_234_500_000, "1.2345"), (57_500_000_000, "57.50")])
def test_units_format_as_plain_decimal_usd(units, text):
    assert units_to_usd(units) == text


def test_token_costs_are_exact_and_rounded_up_once_per_request():
    prices = Prices(input_per_1m=usd_to_units("0.28"), cached_input_per_1m=usd_to_units("0.028"),
                    output_per_1m=usd_to_units("0.42"))
    usage = Usage(prompt_tokens=1000, cached_tokens=400, completion_tokens=333)
    assert charge(prices, usage) == 600 * 280 + 400 * 28 + 333 * 420
    # A price finer than a unit per token: 7 tokens × 0.1 unit = 0.7 → 1 unit, rounded once.
    fine = Prices(input_per_1m=100_000)
    assert charge(fine, Usage(prompt_tokens=7)) == 1
    assert charge(fine, Usage(prompt_tokens=10)) == 1


def test_cache_writes_cost_their_own_price_and_the_input_price_without_one():
    # claude-sonnet's list prices: $3 input, $0.30 cache read, $3.75 cache write, $15 output per 1M.
    prices = Prices(input_per_1m=usd_to_units("3"), cached_input_per_1m=usd_to_units("0.30"),
                    cache_write_per_1m=usd_to_units("3.75"), output_per_1m=usd_to_units("15"))
    usage = Usage(prompt_tokens=1520, cached_tokens=1000, cache_write_tokens=500, completion_tokens=9)
    assert charge(prices, usage) == 20 * 3000 + 1000 * 300 + 500 * 3750 + 9 * 15000
    # One written token at 1.5 units: rounded up once, to 2.
    assert charge(Prices(cache_write_per_1m=1_500_000), Usage(prompt_tokens=1, cache_write_tokens=1)) == 2
    without = Prices(input_per_1m=usd_to_units("3"), cached_input_per_1m=usd_to_units("0.30"))
    assert charge(without, usage) == 520 * 3000 + 1000 * 300
    # Reported counts that do not add up are bounded by the prompt: never charged twice.
    assert charge(prices, Usage(prompt_tokens=10, cached_tokens=8, cache_write_tokens=8)) == 8 * 300 + 2 * 3750


def test_images_cost_their_unit_price():
    assert charge(Prices(per_image=usd_to_units("0.04")), Usage(images=3)) == 120_000_000


def test_usage_reads_openai_and_deepseek_cache_fields():
    assert read_usage({"prompt_tokens": 9, "completion_tokens": 2,
                       "prompt_tokens_details": {"cached_tokens": 4}}) == Usage(9, 4, 2)
    assert read_usage({"prompt_tokens": 9, "completion_tokens": 2, "prompt_cache_hit_tokens": 5,
                       "prompt_cache_miss_tokens": 4}) == Usage(9, 5, 2)
    assert read_usage(None) is None


@pytest.mark.parametrize("usage, read", [
    # OpenAI Responses and image models: input includes its cached part.
    ({"input_tokens": 9, "output_tokens": 2, "input_tokens_details": {"cached_tokens": 4}}, Usage(9, 4, 2)),
    # Anthropic: input is what was not read from (or written to) the cache.
    ({"input_tokens": 5, "cache_read_input_tokens": 4, "output_tokens": 2}, Usage(9, 4, 2)),
    ({"input_tokens": 5, "cache_creation_input_tokens": 3, "cache_read_input_tokens": 4, "output_tokens": 2},
     Usage(12, 4, 2, cache_write_tokens=3)),
    # Kimi: cached tokens at the top level.
    ({"prompt_tokens": 9, "completion_tokens": 2, "cached_tokens": 4}, Usage(9, 4, 2)),
    ({"prompt_tokens": 9, "total_tokens": 9}, Usage(9, 0, 0)),  # embeddings
])
def test_usage_reads_every_shape_a_supported_provider_sends(usage, read):
    assert read_usage(usage) == read


@pytest.mark.parametrize("usage", [{}, {"total_tokens": 12}, {"prompt_tokens": "9", "completion_tokens": -1},
                                   {"input_tokens": None}, [], "12"])
def test_a_usage_without_any_token_count_is_no_usage(usage):
    assert read_usage(usage) is None


def test_estimates_count_ascii_by_three_and_other_characters_one_each():
    assert text_tokens("abcdef") == 2
    assert text_tokens("你好世界") == 4
    assert prompt_tokens([{"role": "user", "content": "abc"}]) == 4 + 1 + 1
    image = {"type": "image_url", "image_url": {"url": "data:..."}}
    parts = [{"type": "text", "text": "abc"}, image]
    assert prompt_tokens([{"role": "user", "content": parts}]) == 4 + 1 + (2 + 1) + 765  # "text", "abc", image
    assert embedding_input_tokens(["abc", "abcdef"]) == 3
    assert embedding_input_tokens([[1, 2, 3], [4]]) == 4
