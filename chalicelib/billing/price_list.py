"""The price list a customer reads: for each plan the account may use, the models it can call now and
what they cost at that plan's multiplier, by the same rule that charges a request (`pricing.charge`).
A listed price is what a million tokens (or one image) is charged, rounded up as a request's charge is."""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.billing.pricing import Usage, charge
from chalicelib.core.domain import Group, ModelEntry, Prices

_MILLION = 1_000_000


@dataclass(frozen=True)
class PlanPrices:
    """A model's prices in units at one plan: per 1M tokens, or per image of the default size."""

    input_per_1m: int
    cached_input_per_1m: int
    output_per_1m: int
    per_image: int


@dataclass(frozen=True)
class PlanModel:
    model: ModelEntry
    prices: PlanPrices


@dataclass(frozen=True)
class PlanPriceList:
    group: Group
    models: tuple[PlanModel, ...]


def at_plan(prices: Prices, multiplier_ppm: int) -> PlanPrices:
    """The list prices as a plan charges them."""
    return PlanPrices(
        input_per_1m=charge(prices, Usage(prompt_tokens=_MILLION), multiplier_ppm),
        cached_input_per_1m=charge(prices, Usage(prompt_tokens=_MILLION, cached_tokens=_MILLION), multiplier_ppm),
        output_per_1m=charge(prices, Usage(completion_tokens=_MILLION), multiplier_ppm),
        per_image=charge(prices, Usage(images=1), multiplier_ppm),
    )


def price_list(groups: list[Group], models: list[ModelEntry]) -> list[PlanPriceList]:
    """Each plan with the routable models it allows, by name, at its prices."""
    ordered = sorted(models, key=lambda m: m.name)
    return [PlanPriceList(group, tuple(PlanModel(model, at_plan(model.prices, group.multiplier_ppm))
                                       for model in ordered if group.allows(model.name)))
            for group in groups]
