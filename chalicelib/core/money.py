"""Money as integers.

Every amount is a whole number of nano-USD (1 unit = 10⁻⁹ USD). Prices are
configured in USD per 1M tokens and kept as units per 1M tokens, so a price
with up to three decimals (for example $0.028 per 1M) is a whole number of
units per token and token costs are exact. A request's cost is rounded up to
the next unit once, after summing all its parts.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

UNITS_PER_USD = 10**9
TOKENS_PER_PRICE = 1_000_000


def usd_to_units(value: str | int | Decimal, *, field: str = "amount") -> int:
    """Parse a USD amount ("12.5", 3) into units, refusing what is not exact or negative."""
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{field} must be a decimal number of USD, got {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"{field} must be a finite number of USD")
    if amount < 0:
        raise ValueError(f"{field} must not be negative")
    units = amount * UNITS_PER_USD
    if units != units.to_integral_value():
        raise ValueError(f"{field} has more than 9 decimal places")
    return int(units)


def units_to_usd(units: int) -> str:
    """Format units as a plain decimal USD string with at least two decimals ("5.00", "0.000001234")."""
    text = format(Decimal(units).scaleb(-9), "f")
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0").ljust(2, "0")
    return f"{whole}.{frac}"


def ceil_div(numerator: int, denominator: int) -> int:
    """Integer division rounding up (for non-negative numerators)."""
    return -(-numerator // denominator)
