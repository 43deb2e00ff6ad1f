"""How stored things look in JSON answers: money as decimal USD strings, times as ISO 8601."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from chalicelib.core.domain import Account, ApiKey, Balance, Channel, Credited, Group, ModelEntry
from chalicelib.core.money import units_to_usd
from chalicelib.relay.health import ChannelHealth

if TYPE_CHECKING:
    from chalicelib.billing.price_list import PlanPriceList


def iso(epoch_ms: int | None) -> str | None:
    """An epoch-ms time as ISO 8601 in UTC, e.g. 2026-11-26T18:00:00Z."""
    if epoch_ms is None:
        return None
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def key_json(key: ApiKey) -> dict[str, Any]:
    """A key as its owner may see it: settings, limits and counters, never the secret."""
    return {
        "id": key.key_id,
        "name": key.name,
        "hint": key.hint,
        "group": key.plan,
        "status": key.status,
        "created_at": iso(key.created_at),
        "last_used_at": iso(key.last_used_at),
        "expires_at": iso(key.expires_at),
        "quota_usd": None if key.quota is None else units_to_usd(key.quota),
        "quota_left_usd": None if key.quota_left is None else units_to_usd(key.quota_left),
        "spent_usd": units_to_usd(key.spent),
        "models": list(key.models),
        "allowed_ips": list(key.cidrs),
        "rpm_limit": key.rpm_limit,
        "tpm_limit": key.tpm_limit,
        "concurrency_limit": key.concurrency_limit,
    }


def key_usage_json(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.key_id,
        "requests": key.requests,
        "prompt_tokens": key.prompt_tokens,
        "completion_tokens": key.completion_tokens,
        "total_tokens": key.prompt_tokens + key.completion_tokens,
        "spent_usd": units_to_usd(key.spent),
        "last_used_at": iso(key.last_used_at),
    }


def account_json(account: Account) -> dict[str, Any]:
    return {
        "account_id": account.account_id,
        "email": account.email,
        "role": account.role,
        "status": account.status,
        "groups": list(account.groups),
        "default_plan": account.default_plan,
        "password_set": account.password_hash is not None,
        "created_at": iso(account.created_at),
    }


def balance_json(balance: Balance) -> dict[str, Any]:
    """A wallet as its owner reads it: never below zero; what it owes is shown beside it."""
    return {
        "balance_usd": units_to_usd(balance.total),
        "available_usd": units_to_usd(balance.available),
        "held_usd": units_to_usd(balance.held),
        "frozen_usd": units_to_usd(balance.frozen),
        "debt_usd": units_to_usd(balance.debt),
        "currency": "USD",
        # Keys are suspended while a payment dispute is open.
        "suspended": balance.disputes > 0,
    }


def wallet_json(account_id: str, balance: Balance) -> dict[str, Any]:
    return {
        "account_id": account_id,
        **balance_json(balance),
        # What settlements could not charge (beyond their holds), in total: the operator's loss.
        "shortfall_usd": units_to_usd(balance.shortfall),
    }


def credit_json(account_id: str, credited: Credited) -> dict[str, Any]:
    """A credit's outcome: the wallet after it, and the credit (the first one, if `applied` is false)."""
    entry = credited.entry
    return {
        **wallet_json(account_id, credited.balance),
        "applied": credited.applied,
        "credit": {"entry_id": entry.entry_id, "kind": entry.kind, "amount_usd": units_to_usd(entry.amount),
                   "reference": entry.reference, "note": entry.note, "created_at": iso(entry.created_at)},
    }


def group_json(group: Group) -> dict[str, Any]:
    return {
        "name": group.name,
        "multiplier": _ppm(group.multiplier_ppm),
        "models": list(group.models),
        "description": group.description,
        **group.limits.as_dict(),
        "model_limits": group.model_limits_dict(),
    }


def price_list_json(plan: PlanPriceList) -> dict[str, Any]:
    """A plan's price list: its limits, and each model with what it is for and its prices at the plan."""
    return {
        "group": group_json(plan.group),
        "models": [{
            "name": entry.model.name, "kind": entry.model.kind.value, "owned_by": entry.model.owned_by,
            "use_case": entry.model.use_case, "context_window": entry.model.context_window,
            "max_output_tokens": entry.model.max_output_tokens,
            "input_per_1m": units_to_usd(entry.prices.input_per_1m),
            "cached_input_per_1m": units_to_usd(entry.prices.cached_input_per_1m),
            "output_per_1m": units_to_usd(entry.prices.output_per_1m),
            "per_image": units_to_usd(entry.prices.per_image),
        } for entry in plan.models],
    }


def model_json(model: ModelEntry) -> dict[str, Any]:
    prices = model.prices
    return {
        "name": model.name,
        "kind": model.kind.value,
        "routes": [{"channel": r.channel, "upstream_model": r.upstream_model, "priority": r.priority,
                    "weight": r.weight} for r in model.routes],
        "fallbacks": list(model.fallbacks),
        "input_per_1m": units_to_usd(prices.input_per_1m),
        "cached_input_per_1m": units_to_usd(prices.cached_rate),
        "cache_write_per_1m": units_to_usd(prices.cache_write_rate),
        "output_per_1m": units_to_usd(prices.output_per_1m),
        "per_image": units_to_usd(prices.per_image),
        "image_prices": [{"quality": entry.quality, "size": entry.size, "per_image": units_to_usd(entry.price)}
                         for entry in prices.image_prices],
        "context_window": model.context_window,
        "max_output_tokens": model.max_output_tokens,
        "cap_field": model.cap_field,
        "pass_through": list(model.pass_through),
        "timeout_s": model.timeout_s,
    }


def channel_json(channel: Channel, health: ChannelHealth) -> dict[str, Any]:
    """A channel and its breaker as this process sees them; never its key nor its header values."""
    return {
        "name": channel.name, "base_url": channel.base_url, "kind": channel.kind,
        "header_names": [name for name, _ in channel.extra_headers],
        "state": health.state, "forced": health.forced, "failures_in_window": health.failures_in_window,
        "calls": health.calls,
        "success_rate": None if health.success_rate is None else round(health.success_rate, 4),
        "mean_latency_ms": None if health.mean_latency_ms is None else round(health.mean_latency_ms, 1),
    }


def _ppm(value: int) -> str:
    whole, frac = divmod(value, 1_000_000)
    return f"{whole}.{frac:06d}".rstrip("0").rstrip(".") if frac else str(whole)
