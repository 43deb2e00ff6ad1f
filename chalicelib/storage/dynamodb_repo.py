"""The operator's catalog on DynamoDB, and what every DynamoDB repository shares.

Each takes a low-level boto3 DynamoDB client and its table name; botocore
errors are mapped to StorageError (or a domain error) at this boundary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, TypeVar

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.domain import Channel, Group, ModelEntry, ModelKind, Prices, Route
from chalicelib.errors import Conflict, StorageError
from chalicelib.storage.ports import CatalogRepo

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()
T = TypeVar("T")


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    """A plain dict as a DynamoDB item, leaving out None values."""
    return {name: _serializer.serialize(value) for name, value in values.items() if value is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB item as a plain dict, with whole numbers as int."""
    return {name: _plain(_deserializer.deserialize(value)) for name, value in item.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def is_condition_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


@contextmanager
def storage_errors(action: str) -> Iterator[None]:
    """Map botocore failures to StorageError, keeping the cause."""
    try:
        yield
    except ClientError as exc:
        raise StorageError(f"storage failed to {action}") from exc
    except BotoCoreError as exc:
        raise StorageError(f"storage is unreachable ({action})") from exc


def read_all(call: Callable[..., dict[str, Any]], action: str, **request: Any) -> list[dict[str, Any]]:
    """Every item of a paginated Query or Scan, as plain dicts."""
    items: list[dict[str, Any]] = []
    with storage_errors(action):
        while True:
            reply = call(**request)
            items.extend(from_item(item) for item in reply.get("Items", []))
            if "LastEvaluatedKey" not in reply:
                return items
            request["ExclusiveStartKey"] = reply["LastEvaluatedKey"]


def put_new(client: Any, table: str, values: dict[str, Any], key_name: str, conflict: str) -> None:
    """Put an item that must not exist yet; Conflict if it does."""
    try:
        client.put_item(TableName=table, Item=to_item(values), ConditionExpression=f"attribute_not_exists({key_name})")
    except ClientError as exc:
        if is_condition_failure(exc):
            raise Conflict(conflict) from exc
        raise StorageError(f"storage failed to write to {table}") from exc
    except BotoCoreError as exc:
        raise StorageError("storage is unreachable") from exc


def fields_of(cls: type[T], values: dict[str, Any]) -> T:
    """A dataclass from an item's values, ignoring attributes it has no field for."""
    names = cls.__dataclass_fields__  # type: ignore[attr-defined]
    return cls(**{name: values[name] for name in names if name in values})


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
            "prices": {k: v for k, v in model.prices.__dict__.items() if v is not None},
            "routes": [route.__dict__ for route in model.routes],
            "context_window": model.context_window,
            "max_output_tokens": model.max_output_tokens,
            "use_case": model.use_case,
            "timeout_s": Decimal(str(model.timeout_s)) if model.timeout_s is not None else None,
            "owned_by": model.owned_by,
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
                prices=Prices(**v["prices"]),
                routes=tuple(Route(**route) for route in v.get("routes", [])),
                context_window=v.get("context_window"),
                max_output_tokens=v.get("max_output_tokens"),
                use_case=v.get("use_case", ""),
                timeout_s=float(v["timeout_s"]) if "timeout_s" in v else None,
                owned_by=v.get("owned_by", "tokenway"),
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
