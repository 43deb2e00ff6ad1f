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

from chalicelib.core.errors import Conflict, StorageError

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
