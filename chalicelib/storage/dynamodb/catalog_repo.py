"""The operator's catalog on DynamoDB: table `catalog`.

A channel's API key is stored sealed (storage/secrets), in base64: `api_key_sealed`
(the AES-256-GCM ciphertext), `api_key_data_key` (its data key, wrapped by KMS or
the local key file), and `api_key_wrapped_by` (`kms` or `local`). A channel item written
before keys were sealed carries `api_key` in plain text: it is still read, and
sealed in place the first time it is. A channel's `extra_headers` (a list of [name, value]) are
not secrets and are stored as they are; `state` is the operator's forced breaker state.
"""

from __future__ import annotations

import base64
import binascii
import logging
from decimal import Decimal
from typing import Any

from chalicelib.core.domain import (
    Channel,
    Group,
    ImagePrice,
    Limits,
    ModelEntry,
    ModelKind,
    Prices,
    Route,
    model_limits_from,
)
from chalicelib.core.errors import StorageError
from chalicelib.storage.dynamodb.common import ConditionFailed, read_all, storage_errors, to_item
from chalicelib.storage.ports import CatalogRepo
from chalicelib.storage.secrets.channels import ChannelKeys
from chalicelib.storage.secrets.envelope import Sealed, SecretSealer

log = logging.getLogger(__name__)


class DynamoCatalogRepo(CatalogRepo):
    """Table `catalog`: partition `kind` ("channel", "model" or "group"), sort key `name`."""

    def __init__(self, client: Any, table: str, *, sealer: SecretSealer) -> None:
        self._client = client
        self._table = table
        self._keys = ChannelKeys(sealer)

    def put_channel(self, channel: Channel) -> None:
        sealed = self._keys.seal(channel.name, channel.api_key)
        with storage_errors("save the channel"):
            # The whole item is replaced, so a key once stored in plain text goes with it.
            self._client.put_item(TableName=self._table, Item=to_item({
                "kind": "channel", "name": channel.name, "base_url": channel.base_url,
                "channel_kind": channel.kind, **_sealed_values(sealed),
                "extra_headers": [list(header) for header in channel.extra_headers], "state": channel.state,
            }))

    def set_channel_state(self, name: str, state: str) -> bool:
        try:
            with storage_errors("save the channel's state"):
                self._client.update_item(
                    TableName=self._table, Key=to_item({"kind": "channel", "name": name}),
                    UpdateExpression="SET #state = :state",
                    ExpressionAttributeNames={"#state": "state", "#name": "name"},
                    # Only a stored channel has a state to force: no item is created for another name.
                    ConditionExpression="attribute_exists(#name)",
                    ExpressionAttributeValues=to_item({":state": state}),
                )
        except ConditionFailed:
            return False
        return True

    def put_model(self, model: ModelEntry) -> None:
        values = {
            "kind": "model",
            "name": model.name,
            "model_kind": model.kind.value,
            "prices": _prices_item(model.prices),
            "routes": [route.__dict__ for route in model.routes],
            "context_window": model.context_window,
            "max_output_tokens": model.max_output_tokens,
            "use_case": model.use_case,
            "timeout_s": Decimal(str(model.timeout_s)) if model.timeout_s is not None else None,
            "owned_by": model.owned_by,
            "cap_field": model.cap_field,
            "pass_through": list(model.pass_through),
            "fallbacks": list(model.fallbacks),
        }
        with storage_errors("save the model"):
            self._client.put_item(TableName=self._table, Item=to_item(values))

    def put_group(self, group: Group) -> None:
        with storage_errors("save the group"):
            self._client.put_item(TableName=self._table, Item=to_item({
                "kind": "group", "name": group.name, "multiplier_ppm": group.multiplier_ppm,
                "models": list(group.models), "description": group.description,
                "model_limits": group.model_limits_dict(),
                **{name: value for name, value in group.limits.as_dict().items() if value is not None},
            }))

    def load(self) -> tuple[list[Channel], list[ModelEntry], list[Group]]:
        # The catalog is small: one scan reads channels and models together.
        items = self._scan()
        channels = [channel for channel in map(self._channel, items["channel"]) if channel is not None]
        models = [
            ModelEntry(
                name=v["name"],
                kind=ModelKind(v["model_kind"]),
                prices=_prices(v["prices"]),
                routes=tuple(Route(**route) for route in v.get("routes", [])),
                context_window=v.get("context_window"),
                max_output_tokens=v.get("max_output_tokens"),
                use_case=v.get("use_case", ""),
                timeout_s=float(v["timeout_s"]) if "timeout_s" in v else None,
                owned_by=v.get("owned_by", "tokenway"),
                cap_field=v.get("cap_field", "max_tokens"),
                pass_through=tuple(v.get("pass_through", ())),
                fallbacks=tuple(v.get("fallbacks", ())),
            )
            for v in items["model"]
        ]
        groups = [
            Group(name=v["name"], multiplier_ppm=v["multiplier_ppm"], models=tuple(v.get("models", ())),
                  description=v.get("description", ""),
                  limits=Limits(*(None if v.get(name) is None else int(v[name])
                                  for name in ("rpm", "tpm", "concurrency"))),
                  model_limits=model_limits_from(v.get("model_limits")))
            for v in items["group"]
        ]
        return channels, models, groups

    def _channel(self, values: dict[str, Any]) -> Channel | None:
        """The channel with its key opened; None if the key does not open (reported by ChannelKeys)."""
        name = values["name"]
        if "api_key_sealed" in values:
            api_key = self._keys.open(name, _sealed(values))
            if api_key is None:
                return None
        else:
            api_key = values["api_key"]
            self._seal_in_place(name, api_key)
        return Channel(name=name, base_url=values["base_url"], api_key=api_key,
                       kind=values.get("channel_kind", "openai"),
                       extra_headers=tuple((header, value) for header, value in values.get("extra_headers", ())),
                       state=values.get("state", "auto"))

    def _seal_in_place(self, name: str, api_key: str) -> None:
        """Replace a key stored in plain text with its sealed form. Best effort: on failure the
        channel is still served, and the next load tries again."""
        try:
            sealed = self._keys.seal(name, api_key)
            values = to_item({":plain": api_key, **{f":{k}": v for k, v in _sealed_values(sealed).items()}})
            with storage_errors("seal the channel's key"):
                self._client.update_item(
                    TableName=self._table, Key=to_item({"kind": "channel", "name": name}),
                    UpdateExpression="SET api_key_sealed = :api_key_sealed, api_key_data_key = :api_key_data_key, "
                                     "api_key_wrapped_by = :api_key_wrapped_by REMOVE api_key",
                    # A channel the operator re-added since this read keeps its new key: only the
                    # plain-text item read here is replaced.
                    ConditionExpression="api_key = :plain",
                    ExpressionAttributeValues=values,
                )
            log.info("channel `%s`: its API key, stored in plain text, is now sealed", name)
        except ConditionFailed:
            pass  # re-added meanwhile, sealed
        except StorageError as exc:
            log.warning("channel `%s`: its API key is stored in plain text and could not be sealed (%s)",
                        name, exc.message)

    def _scan(self) -> dict[str, list[dict[str, Any]]]:
        by_kind: dict[str, list[dict[str, Any]]] = {"channel": [], "model": [], "group": []}
        for values in read_all(self._client.scan, "read the catalog", TableName=self._table, ConsistentRead=True):
            by_kind.setdefault(values["kind"], []).append(values)
        return by_kind


def _prices_item(prices: Prices) -> dict[str, Any]:
    values: dict[str, Any] = {
        "input_per_1m": prices.input_per_1m,
        "output_per_1m": prices.output_per_1m,
        "cached_input_per_1m": prices.cached_input_per_1m,
        "cache_write_per_1m": prices.cache_write_per_1m,
        "per_image": prices.per_image,
        "image_prices": [{"quality": e.quality, "size": e.size, "price": e.price} for e in prices.image_prices],
    }
    return {name: value for name, value in values.items() if value is not None}


def _prices(values: dict[str, Any]) -> Prices:
    return Prices(
        input_per_1m=values.get("input_per_1m", 0),
        output_per_1m=values.get("output_per_1m", 0),
        cached_input_per_1m=values.get("cached_input_per_1m"),
        cache_write_per_1m=values.get("cache_write_per_1m"),
        per_image=values.get("per_image", 0),
        image_prices=tuple(ImagePrice(**entry) for entry in values.get("image_prices", ())),
    )


# Base64 text rather than binary attributes: items stay plain JSON for exports and tools.
def _sealed_values(sealed: Sealed) -> dict[str, Any]:
    return {"api_key_sealed": base64.b64encode(sealed.ciphertext).decode(),
            "api_key_data_key": base64.b64encode(sealed.wrapped_key).decode(),
            "api_key_wrapped_by": sealed.wrapped_by}


def _sealed(values: dict[str, Any]) -> Sealed:
    try:
        ciphertext = base64.b64decode(values["api_key_sealed"], validate=True)
        wrapped_key = base64.b64decode(values["api_key_data_key"], validate=True)
    except (KeyError, TypeError, binascii.Error):
        ciphertext = wrapped_key = b""  # does not open; reported as unreadable
    return Sealed(ciphertext, wrapped_key, str(values.get("api_key_wrapped_by", "")))
