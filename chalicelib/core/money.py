"""Money as integers.

Every amount is a whole number of nano-USD (1 unit = 10⁻⁹ USD). Prices are
configured in USD per 1M tokens and kept as units per 1M tokens, so a price
with up to three decimals (for example $0.028 per 1M) is a whole number of
units per token and token costs are exact. A request's cost is rounded up to
the next unit once, after summing all its parts.

Every amount a request names is bounded: 0 to MAX_USD (10^9 USD), at most 9
decimals; a plan's multiplier is more than 0 and at most MAX_MULTIPLIER.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

UNITS_PER_USD = 10**9
TOKENS_PER_PRICE = 1_000_000
# The largest USD amount any request may name (a credit, a quota, a price): 10^18 units,
# which every store and every sum of a few of them holds exactly.
MAX_USD = 1_000_000_000
# A plan may charge up to this many times list price; its multiplier is kept in parts per million.
MAX_MULTIPLIER = 1000
PPM = 1_000_000  # parts per million: a multiplier of 1.2 is 1 200 000
# No amount needs more characters than this; a longer text is refused before it is parsed.
_MAX_TEXT = 64


def usd_to_units(value: str | int | Decimal, *, field: str = "amount") -> int:
    """Parse a USD amount ("12.5", 3) into units: exact, not negative, at most MAX_USD and 9 decimals."""
    if isinstance(value, int):
        # Compared as a number: a huge integer is refused before it is ever formatted.
        if not 0 <= value <= MAX_USD:
            raise ValueError(_out_of_bounds(field))
        return value * UNITS_PER_USD
    text = str(value).strip()
    if len(text) > _MAX_TEXT:
        raise ValueError(_out_of_bounds(field))
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{field} must be a decimal number of USD, got {text!r}") from None
    if not amount.is_finite():
        raise ValueError(f"{field} must be a finite number of USD")
    if amount < 0:
        raise ValueError(f"{field} must not be negative")
    if amount > MAX_USD:
        raise ValueError(_out_of_bounds(field))
    # Exact integer arithmetic on the digits: Decimal's context would round a long
    # amount, or overflow on an exponent such as 1e-999999999.
    _, digits, exponent = amount.as_tuple()
    coefficient = int("".join(map(str, digits)))
    if coefficient == 0:
        return 0
    shift = int(exponent) + 9  # at most 18: the amount is at most 10^9 USD
    if shift >= 0:
        return coefficient * 10**shift
    if -shift > len(digits) or coefficient % 10**-shift:
        raise ValueError(f"{field} has more than 9 decimal places")
    return coefficient // 10**-shift


def _out_of_bounds(field: str) -> str:
    return f"{field} must be a decimal number of USD from 0 to {MAX_USD} with at most 9 decimals"


def parse_multiplier(value: str | int, *, field: str = "multiplier") -> int:
    """Parse a price multiplier ("1.2") into parts per million: more than 0, at most MAX_MULTIPLIER, 6 decimals."""
    if isinstance(value, int):
        value = str(value) if -MAX_MULTIPLIER <= value <= MAX_MULTIPLIER else "-1"
    text = value.strip()
    message = f"{field} must be a decimal greater than 0 and at most {MAX_MULTIPLIER}, with at most 6 decimals"
    try:
        multiplier = Decimal(text) if len(text) <= _MAX_TEXT else Decimal(-1)
    except InvalidOperation:
        raise ValueError(message) from None
    if not multiplier.is_finite() or not 0 < multiplier <= MAX_MULTIPLIER:
        raise ValueError(message)
    ppm = multiplier * PPM  # exact: the multiplier is at most 10^3 with at most 64 digits
    if ppm != ppm.to_integral_value() or ppm == 0:
        raise ValueError(message)
    return int(ppm)


def units_to_usd(units: int) -> str:
    """Format units as a plain decimal USD string with at least two decimals ("5.00", "0.000001234")."""
    text = format(Decimal(units).scaleb(-9), "f")
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0").ljust(2, "0")
    return f"{whole}.{frac}"


def ceil_div(numerator: int, denominator: int) -> int:
    """Integer division rounding up (for non-negative numerators)."""
    return -(-numerator // denominator)


def cents_to_usd(cents: int) -> str:
    """Whole cents (what a payment provider counts) as the USD text customers read: two decimals."""
    return f"{cents // 100}.{cents % 100:02d}"
