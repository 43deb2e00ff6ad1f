"""The operator's catalog on DynamoDB: table `catalog`."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from chalicelib.core.domain import Channel, Group, ImagePrice, ModelEntry, ModelKind, Prices, Route
from chalicelib.storage.dynamodb.common import read_all, storage_errors, to_item
from chalicelib.storage.ports import CatalogRepo


class DynamoCatalogRepo(CatalogRepo):
    """Table `catalog`: partition `kind` ("channel", "model" or "group"), sort key `name`."""

    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def put_channel(self, channel: Channel) -> None:
        with storage_errors("save the channel"):
            self._client.put_item(TableName=self._table, Item=to_item({
                "kind": "channel", "name": channel.name, "base_url": channel.base_url,
                "api_key": channel.api_key, "channel_kind": channel.kind,
            }))

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
        }
        with storage_errors("save the model"):
            self._client.put_item(TableName=self._table, Item=to_item(values))

    def put_group(self, group: Group) -> None:
        with storage_errors("save the group"):
            self._client.put_item(TableName=self._table, Item=to_item({
                "kind": "group", "name": group.name, "multiplier_ppm": group.multiplier_ppm,
                "models": list(group.models), "description": group.description,
            }))

    def load(self) -> tuple[list[Channel], list[ModelEntry], list[Group]]:
        # The catalog is small: one scan reads channels and models together.
        items = self._scan()
        channels = [
            Channel(name=v["name"], base_url=v["base_url"], api_key=v["api_key"], kind=v.get("channel_kind", "openai"))
            for v in items["channel"]
        ]
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
            )
            for v in items["model"]
        ]
        groups = [
            Group(name=v["name"], multiplier_ppm=v["multiplier_ppm"], models=tuple(v.get("models", ())),
                  description=v.get("description", ""))
            for v in items["group"]
        ]
        return channels, models, groups

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
        "per_image": prices.per_image,
        "image_prices": [{"quality": e.quality, "size": e.size, "price": e.price} for e in prices.image_prices],
    }
    return {name: value for name, value in values.items() if value is not None}


def _prices(values: dict[str, Any]) -> Prices:
    return Prices(
        input_per_1m=values.get("input_per_1m", 0),
        output_per_1m=values.get("output_per_1m", 0),
        cached_input_per_1m=values.get("cached_input_per_1m"),
        per_image=values.get("per_image", 0),
        image_prices=tuple(ImagePrice(**entry) for entry in values.get("image_prices", ())),
    )
