"""What a top-up credits: the operator's tiers, and the bonus rate a custom amount gets.

A tier says "pay P, get C". An amount A gets the rate of the highest tier at or below it,
C × A / P, rounded down to a unit (exact for the tiers themselves); below the lowest tier
there is no bonus. The customer is shown that credit, and the order keeps it.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from chalicelib.core.errors import InvalidRequest
from chalicelib.core.money import MAX_USD, UNITS_PER_USD, units_to_usd
from chalicelib.core.money import cents_to_usd as usd
from chalicelib.core.payments import CENT_UNITS, TopupSettings, TopupTier

# The manual's Top-Up Guide.
DEFAULT_SETTINGS = TopupSettings(
    tiers=tuple(TopupTier(pay * 100, credit * UNITS_PER_USD // 100) for pay, credit in (
        (10, 1000), (20, 2200), (50, 5750), (100, 12000), (200, 24000), (500, 60000))),
    min_cents=500,
    max_cents=1_000_000,
)
# Stripe takes at least $0.50 and at most $999,999.99 in one payment.
PROVIDER_MIN_CENTS = 50
PROVIDER_MAX_CENTS = 99_999_999
MAX_TIERS = 20
_MAX_TEXT = 32


def credit_for(settings: TopupSettings, pay_cents: int) -> int:
    """The credit, in units, of paying `pay_cents`: at the rate of the highest tier at or below it."""
    tier = next((tier for tier in reversed(settings.tiers) if tier.pay_cents <= pay_cents), None)
    if tier is None:
        return pay_cents * CENT_UNITS
    return pay_cents * tier.credit_units // tier.pay_cents


def parse_cents(value: object, field: str) -> int:
    """A USD amount of whole cents ("20", "57.50", 20) as cents; InvalidRequest naming `field`."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidRequest(f"{field} must be a decimal number of USD, such as \"20\" or \"57.50\".",
                             param=field, code="invalid_value")
    text = (repr(value) if isinstance(value, float) else str(value)).strip()
    try:
        amount = Decimal(text) if len(text) <= _MAX_TEXT else None
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite() or not -MAX_USD <= amount <= MAX_USD:
        raise InvalidRequest(f"{field} must be a decimal number of USD, such as \"20\" or \"57.50\".",
                             param=field, code="invalid_value")
    cents = amount * 100
    if cents != cents.to_integral_value():
        raise InvalidRequest(f"{field} must have at most two decimals (whole cents).", param=field,
                             code="invalid_value")
    return int(cents)


def check_amount(settings: TopupSettings, pay_cents: int, field: str = "amount_usd") -> None:
    """InvalidRequest naming `field` unless the amount is within the operator's range."""
    if pay_cents < settings.min_cents:
        raise InvalidRequest(f"{field} must be at least {usd(settings.min_cents)} USD.", param=field,
                             code="amount_too_small")
    if pay_cents > settings.max_cents:
        raise InvalidRequest(f"{field} must be at most {usd(settings.max_cents)} USD.", param=field,
                             code="amount_too_large")


class TierInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pay_usd: StrictStr | StrictInt
    credit_usd: StrictStr | StrictInt


class TopupSettingsInput(BaseModel):
    """The operator's tiers and range, as the admin API takes them."""

    model_config = ConfigDict(extra="forbid")

    tiers: list[TierInput] = Field(max_length=MAX_TIERS)
    min_usd: StrictStr | StrictInt = "5"
    max_usd: StrictStr | StrictInt = "10000"

    def settings(self) -> TopupSettings:
        """The settings, checked: tiers by rising pay amount, none crediting less than it costs,
        within a range the provider accepts."""
        tiers = []
        for index, tier in enumerate(self.tiers):
            pay = parse_cents(tier.pay_usd, f"tiers[{index}].pay_usd")
            credit = parse_cents(tier.credit_usd, f"tiers[{index}].credit_usd")
            if pay <= 0 or credit < pay:
                raise InvalidRequest(f"tiers[{index}] must pay more than 0 and credit at least what it pays.",
                                     param="tiers", code="invalid_value")
            tiers.append(TopupTier(pay, credit * CENT_UNITS))
        if [tier.pay_cents for tier in tiers] != sorted({tier.pay_cents for tier in tiers}):
            raise InvalidRequest("tiers must be listed by rising pay_usd, each amount once.", param="tiers",
                                 code="invalid_value")
        low, high = parse_cents(self.min_usd, "min_usd"), parse_cents(self.max_usd, "max_usd")
        if not PROVIDER_MIN_CENTS <= low <= high <= PROVIDER_MAX_CENTS:
            raise InvalidRequest(f"min_usd and max_usd must satisfy {usd(PROVIDER_MIN_CENTS)} <= min_usd <= "
                                 f"max_usd <= {usd(PROVIDER_MAX_CENTS)}.", param="min_usd", code="invalid_value")
        outside = [tier for tier in tiers if not low <= tier.pay_cents <= high]
        if outside:
            raise InvalidRequest(f"The tier of {usd(outside[0].pay_cents)} USD is outside min_usd..max_usd.",
                                 param="tiers", code="invalid_value")
        return TopupSettings(tuple(tiers), low, high)


def tier_json(tier: TopupTier) -> dict[str, str]:
    return {"pay_usd": usd(tier.pay_cents), "credit_usd": units_to_usd(tier.credit_units),
            "bonus_usd": units_to_usd(tier.bonus_units),
            "bonus_percent": _percent(tier.bonus_units, tier.pay_cents * CENT_UNITS)}


def _percent(part: int, whole: int) -> str:
    value = Decimal(part * 100) / Decimal(whole)
    return f"{value.quantize(Decimal('0.01')).normalize():f}"

