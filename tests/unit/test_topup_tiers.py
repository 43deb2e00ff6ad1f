"""What a top-up credits: the manual's tiers, custom amounts at the rate of the tier below, and the
amounts and settings refused."""

from __future__ import annotations

import pytest

from chalicelib.core.errors import InvalidRequest
from chalicelib.core.money import usd_to_units
from chalicelib.core.payments import TopupSettings, TopupTier
from chalicelib.payments.tiers import (
    DEFAULT_SETTINGS,
    TopupSettingsInput,
    check_amount,
    credit_for,
    parse_cents,
    tier_json,
)


@pytest.mark.parametrize(("pay", "credit"), [
    ("10", "10"), ("20", "22"), ("50", "57.50"), ("100", "120"), ("200", "240"), ("500", "600"),
])
def test_each_tier_of_the_manual_credits_what_its_table_says(pay, credit):
    assert credit_for(DEFAULT_SETTINGS, parse_cents(pay, "amount_usd")) == usd_to_units(credit)


@pytest.mark.parametrize(("pay", "credit"), [
    ("5", "5"),  # below the lowest tier: no bonus
    ("19.99", "19.99"),  # the $10 tier's rate is 0%
    ("75", "86.25"),  # the $50 tier's 15%
    ("33.33", "36.663"),  # the $20 tier's 10%, to the unit
    ("10000", "12000"),  # the $500 tier's 20%
])
def test_a_custom_amount_gets_the_rate_of_the_highest_tier_at_or_below_it(pay, credit):
    assert credit_for(DEFAULT_SETTINGS, parse_cents(pay, "amount_usd")) == usd_to_units(credit)


def test_a_rate_that_does_not_divide_evenly_rounds_down_to_the_unit():
    settings = TopupSettings((TopupTier(300, usd_to_units("3.10")),))
    assert credit_for(settings, 100_000) == 1_033_333_333_333  # 1000 × 3.10 / 3, rounded down


@pytest.mark.parametrize("value", ["20.001", "abc", "", "1e400", "NaN", "Infinity", True, None, [], "9" * 40])
def test_an_amount_that_is_not_whole_cents_of_usd_is_refused_naming_the_field(value):
    with pytest.raises(InvalidRequest) as refused:
        parse_cents(value, "amount_usd")
    assert refused.value.param == "amount_usd"


def test_numbers_and_strings_of_whole_cents_are_read_exactly():
    assert [parse_cents(v, "amount_usd") for v in ("20", "57.50", 20, 57.5, "0.1", " 7 ")] == \
        [2000, 5750, 2000, 5750, 10, 700]


@pytest.mark.parametrize(("cents", "code"), [(499, "amount_too_small"), (1_000_001, "amount_too_large")])
def test_an_amount_outside_the_range_is_refused_naming_the_field(cents, code):
    with pytest.raises(InvalidRequest) as refused:
        check_amount(DEFAULT_SETTINGS, cents)
    assert (refused.value.param, refused.value.code) == ("amount_usd", code)
    check_amount(DEFAULT_SETTINGS, 500)
    check_amount(DEFAULT_SETTINGS, 1_000_000)


def test_a_tier_is_shown_with_its_bonus():
    assert tier_json(DEFAULT_SETTINGS.tiers[2]) == {"pay_usd": "50.00", "credit_usd": "57.50", "bonus_usd": "7.50",
                                                    "bonus_percent": "15"}


def test_operator_settings_are_checked():
    good = TopupSettingsInput(tiers=[{"pay_usd": "10", "credit_usd": "11"}, {"pay_usd": "30", "credit_usd": "36"}],
                              min_usd="1", max_usd="100").settings()
    assert good == TopupSettings((TopupTier(1000, usd_to_units("11")), TopupTier(3000, usd_to_units("36"))), 100,
                                 10_000)
    for tiers, low, high in (
        ([{"pay_usd": "30", "credit_usd": "36"}, {"pay_usd": "10", "credit_usd": "11"}], "1", "100"),  # order
        ([{"pay_usd": "10", "credit_usd": "9"}], "1", "100"),  # credits less than it costs
        ([{"pay_usd": "10", "credit_usd": "10"}], "20", "100"),  # a tier below the minimum
        ([], "0.10", "100"),  # below what the provider accepts
        ([], "50", "10"),  # min above max
    ):
        with pytest.raises(InvalidRequest):
            TopupSettingsInput(tiers=tiers, min_usd=low, max_usd=high).settings()
