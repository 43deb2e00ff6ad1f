"""Every USD amount and multiplier a request may name is bounded, whoever parses it."""

from __future__ import annotations

import pytest

from chalicelib.core.money import MAX_MULTIPLIER, MAX_USD, parse_multiplier, usd_to_units


@pytest.mark.parametrize("usd, units", [
    (MAX_USD, 10**18), (str(MAX_USD), 10**18), ("1e9", 10**18), ("999999999.999999999", 10**18 - 1),
    ("1.500000000000000000000000000", 1_500_000_000), ("10e-10", 1), ("0e999999999", 0), ("-0", 0),
])
def test_amounts_up_to_the_bound_parse_exactly(usd, units):
    assert usd_to_units(usd) == units


@pytest.mark.parametrize("usd", [
    MAX_USD + 1, 10**25, 10**400, "1e30", "1e309", "1" * 25, "1000000000.000000001", "1e-999999999",
    "1.0000000000000000000000000001", "0." + "0" * 80 + "1", "inf", "nan", "-1", "1e999999999",
])
def test_amounts_beyond_the_bounds_or_finer_than_a_nano_usd_are_refused(usd):
    with pytest.raises(ValueError, match="quota_usd"):
        usd_to_units(usd, field="quota_usd")


@pytest.mark.parametrize("value, ppm", [("1", 10**6), ("1.2", 1_200_000), (2, 2_000_000), ("0.000001", 1),
                                        (str(MAX_MULTIPLIER), MAX_MULTIPLIER * 10**6)])
def test_multipliers_parse_to_parts_per_million(value, ppm):
    assert parse_multiplier(value) == ppm


@pytest.mark.parametrize("value", ["0", 0, "-1", "1e300", 10**25, "1000.000001", "0.0000001", "NaN", "x", "",
                                   "1" * 100])
def test_multipliers_out_of_bounds_are_refused(value):
    with pytest.raises(ValueError, match="multiplier"):
        parse_multiplier(value)
