"""What every DynamoDB repository shares: item conversion, and the one place storage errors are mapped.

Each repository takes a low-level boto3 DynamoDB client and its table names.
botocore's errors are caught only here: `storage_errors` wraps single calls
(a failed condition becomes `ConditionFailed`, anything else `StorageError`),
and `transact` runs a TransactWriteItems whose items are tagged with roles, so
that a cancelled transaction is read one way: `TransactionCancelled` names the
roles whose conditions failed, with those items as they were.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.core.errors import Conflict, StorageError

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()
T = TypeVar("T")

# Retries of a transaction that collided with another one on the same item.
CONFLICT_RETRIES = 4
_BACKOFF_S = 0.01


def to_item(values: Mapping[str, Any]) -> dict[str, Any]:
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


class ConditionFailed(Exception):
    """A single write's ConditionExpression did not hold; the repository says what that means.
    `item` is the item as it was, when the write asked for it (ReturnValuesOnConditionCheckFailure)."""

    def __init__(self, action: str, item: dict[str, Any] | None = None) -> None:
        super().__init__(action)
        self.item = from_item(item) if item else {}


@contextmanager
def storage_errors(action: str) -> Iterator[None]:
    """Map botocore failures of one call: a failed condition to ConditionFailed, the rest to
    StorageError, keeping the cause."""
    try:
        yield
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            raise ConditionFailed(action, exc.response.get("Item")) from exc
        raise StorageError(f"storage failed to {action}") from exc
    except BotoCoreError as exc:
        raise StorageError(f"storage is unreachable ({action})") from exc


@dataclass(frozen=True)
class TransactItem:
    """One write of a transaction, named by the role it plays, e.g. "account" or "hold".

    `write` is the item as TransactWriteItems takes it: {"Put" | "Update" | "Delete" |
    "ConditionCheck": {...}}. Roles are unique within a transaction."""

    role: str
    write: dict[str, Any]


class TransactionCancelled(Exception):
    """A transaction was cancelled because conditions failed. `failed` maps the role of each
    item whose condition failed to that item as it was (plain values), or None if it did not
    exist or the write did not ask for it (`ReturnValuesOnConditionCheckFailure`)."""

    def __init__(self, failed: dict[str, dict[str, Any] | None]) -> None:
        super().__init__(sorted(failed))
        self.failed = failed

    def __contains__(self, role: str) -> bool:
        return role in self.failed


def transact(client: Any, items: list[TransactItem], *, action: str,
             sleep: Callable[[float], None] = time.sleep, conflict_retries: int = CONFLICT_RETRIES) -> None:
    """Run the items as one TransactWriteItems. Another transaction on the same items at the same
    moment (TransactionConflict) is retried with backoff; failed conditions raise
    TransactionCancelled naming their roles; anything else is a StorageError."""
    roles = [item.role for item in items]
    assert len(set(roles)) == len(roles), f"roles must be unique: {roles}"
    request = [item.write for item in items]
    for attempt in range(conflict_retries + 1):
        try:
            client.transact_write_items(TransactItems=request)
            return
        except ClientError as exc:
            reasons = exc.response.get("CancellationReasons") or []
            failed = {
                roles[index]: from_item(reason["Item"]) if reason.get("Item") else None
                for index, reason in enumerate(reasons) if reason.get("Code") == "ConditionalCheckFailed"
            }
            if failed:
                raise TransactionCancelled(failed) from exc
            codes = {reason.get("Code") for reason in reasons}
            if "TransactionConflict" in codes and attempt < conflict_retries:
                sleep(_BACKOFF_S * 2**attempt)
                continue
            raise StorageError(f"storage failed to {action}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"storage is unreachable ({action})") from exc
    raise AssertionError("unreachable: the last attempt returns or raises")


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
        with storage_errors(f"write to {table}"):
            client.put_item(TableName=table, Item=to_item(values),
                            ConditionExpression=f"attribute_not_exists({key_name})")
    except ConditionFailed as exc:
        raise Conflict(conflict) from exc


def fields_of(cls: type[T], values: dict[str, Any]) -> T:
    """A dataclass from an item's values, ignoring attributes it has no field for."""
    names = cls.__dataclass_fields__  # type: ignore[attr-defined]
    return cls(**{name: values[name] for name in names if name in values})
