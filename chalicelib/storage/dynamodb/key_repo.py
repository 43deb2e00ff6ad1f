"""API keys on DynamoDB: table `keys`, key `key_hash` (the relay's one lookup), with
indexes `account-index` (account_id, created_at) and `key-id-index` (key_id), which hold keys only
(the counters every request updates are not copied to them): a key found through one is read from
the table.

Two kinds of item share the table:
- a key: its settings and counters, and `revision`, moved on by every write to the item
  (settings here, holds and settlements in the wallet), so that a copy of it can be made
  on condition that nothing changed since it was read;
- a forwarding item `{key_hash, moved_to}`, left at the old hash when a key is
  regenerated. It has no `key_id`, `status` or `account_id`, so it is in neither index,
  no secret authenticates with it and no hold can be placed on it; it lets a request in
  flight during the regeneration settle or release on the key's current item.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from chalicelib.core.domain import ApiKey
from chalicelib.core.errors import Conflict, NotFound, StorageError
from chalicelib.storage.dynamodb.common import (
    ConditionFailed,
    TransactionCancelled,
    TransactItem,
    fields_of,
    from_item,
    put_new,
    read_all,
    storage_errors,
    to_item,
    transact,
)
from chalicelib.storage.ports import KeyRepo

_SETTINGS = ("name", "group", "status", "expires_at", "quota", "models", "cidrs", "rpm_limit", "tpm_limit",
             "concurrency_limit")
_SAVE_ATTEMPTS = 8
_BATCH_GET = 100  # BatchGetItem's limit
_BATCH_ATTEMPTS = 6
# A key regenerated more often than this while one request was in flight loses that
# request's counts on the key (its account still pays).
MAX_FORWARDS = 16


def key_item(key: ApiKey) -> dict[str, Any]:
    return {**key.__dict__, "models": list(key.models), "cidrs": list(key.cidrs)}


def key_from_item(values: dict[str, Any]) -> ApiKey:
    return fields_of(ApiKey, {**values, "models": tuple(values.get("models", ())),
                              "cidrs": tuple(values.get("cidrs", ()))})


def is_forward(values: dict[str, Any]) -> bool:
    """Whether a keys item is the forwarding item a regenerated key left at its old hash."""
    return "moved_to" in values


class DynamoKeyRepo(KeyRepo):
    def __init__(self, client: Any, table: str, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client
        self._table = table
        self._sleep = sleep

    def create(self, key: ApiKey) -> None:
        put_new(self._client, self._table, {**key_item(key), "revision": 0}, "key_hash", "key already exists")

    def get_by_hash(self, key_hash: str, *, consistent: bool = False) -> ApiKey | None:
        values = self._read(key_hash, consistent=consistent)
        return None if values is None or is_forward(values) else key_from_item(values)

    def get_by_id(self, key_id: str) -> ApiKey | None:
        found = read_all(self._client.query, "read the key", TableName=self._table, IndexName="key-id-index",
                         KeyConditionExpression="key_id = :id", ExpressionAttributeValues={":id": {"S": key_id}})
        values = self._read(found[0]["key_hash"], consistent=False) if found else None
        # The index lags the table: a key regenerated a moment ago may still be found at its old hash.
        return None if values is None or is_forward(values) else key_from_item(values)

    def list_for_account(self, account_id: str) -> list[ApiKey]:
        found = read_all(self._client.query, "list the keys", TableName=self._table, IndexName="account-index",
                         KeyConditionExpression="account_id = :id",
                         ExpressionAttributeValues={":id": {"S": account_id}})
        items = self._read_many([item["key_hash"] for item in found])
        return [key_from_item(values) for values in items if not is_forward(values)]

    def _read_many(self, key_hashes: list[str]) -> list[dict[str, Any]]:
        """The items at these hashes (those that exist), in the order given: BatchGetItem, 100 at a
        time, the keys DynamoDB left unprocessed asked again."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(key_hashes), _BATCH_GET):
            pending = [to_item({"key_hash": key_hash}) for key_hash in key_hashes[start:start + _BATCH_GET]]
            for attempt in range(_BATCH_ATTEMPTS):
                with storage_errors("list the keys"):
                    reply = self._client.batch_get_item(RequestItems={self._table: {"Keys": pending}})
                for item in reply.get("Responses", {}).get(self._table, []):
                    values = from_item(item)
                    found[values["key_hash"]] = values
                pending = reply.get("UnprocessedKeys", {}).get(self._table, {}).get("Keys", [])
                if not pending:
                    break
                self._sleep(0.01 * 2**attempt)
            else:
                raise StorageError("could not list the keys: DynamoDB kept keys unprocessed")
        return [found[key_hash] for key_hash in key_hashes if key_hash in found]

    def save_settings(self, key: ApiKey) -> ApiKey:
        for attempt in range(_SAVE_ATTEMPTS):
            current = key_from_item(self._current(key))
            sets: dict[str, Any] = {name: getattr(key, name) for name in _SETTINGS if getattr(key, name) is not None}
            removes = [name for name in _SETTINGS if getattr(key, name) is None]
            unchanged: dict[str, int] = {}
            if key.quota is None:
                removes.append("quota_left")
            elif key.quota != current.quota:
                # Restart the quota from what the key has spent and holds now; the
                # condition makes sure no request moved either in between.
                sets["quota_left"] = key.quota - current.spent - current.reserved
                unchanged = {"spent": current.spent, "reserved": current.reserved}
            names = {f"#{name}": name for name in [*sets, *removes, *unchanged, "key_id", "revision"]}
            values = {f":{name}": list(v) if isinstance(v, tuple) else v for name, v in sets.items()}
            values.update({f":was_{name}": v for name, v in unchanged.items()})
            values[":one"] = 1
            # Invariant: settings are written to a key, never to the forwarding item
            # of a regenerated one (which has no key_id): the retry follows it.
            condition = " AND ".join(["attribute_exists(#key_id)", *(f"#{n} = :was_{n}" for n in unchanged)])
            expression = "SET " + ", ".join(f"#{name} = :{name}" for name in sets)
            if removes:
                expression += " REMOVE " + ", ".join(f"#{name}" for name in removes)
            expression += " ADD #revision :one"
            try:
                with storage_errors("save the key"):
                    reply = self._client.update_item(
                        TableName=self._table, Key=to_item({"key_hash": current.key_hash}),
                        UpdateExpression=expression, ConditionExpression=condition, ExpressionAttributeNames=names,
                        ExpressionAttributeValues=to_item(values), ReturnValues="ALL_NEW")
                return key_from_item(from_item(reply["Attributes"]))
            except ConditionFailed:
                self._sleep(0.005 * 2**attempt)
        raise Conflict("The key is in use; try again.")

    def replace_hash(self, key: ApiKey, key_hash: str, hint: str) -> ApiKey:
        for attempt in range(_SAVE_ATTEMPTS):
            item = self._current(key)
            revision = item.get("revision")
            moved = {**item, "key_hash": key_hash, "hint": hint, "revision": (revision or 0) + 1}
            unchanged = {"ConditionExpression": "attribute_exists(#key_id) AND attribute_not_exists(#revision)"}
            if revision is not None:
                unchanged = {"ConditionExpression": "attribute_exists(#key_id) AND #revision = :revision",
                             "ExpressionAttributeValues": {":revision": {"N": str(revision)}}}
            try:
                transact(self._client, [
                    TransactItem("new", {"Put": {
                        "TableName": self._table, "Item": to_item(moved),
                        # Invariant: a hash names one key.
                        "ConditionExpression": "attribute_not_exists(key_hash)"}}),
                    TransactItem("current", {"Put": {
                        "TableName": self._table,
                        "Item": to_item({"key_hash": item["key_hash"], "moved_to": key_hash}),
                        # Invariant: a key's counters and settings are exact across a
                        # regeneration: the copy is of the item as it is now (no hold,
                        # settlement or settings change since it was read).
                        **unchanged,
                        "ExpressionAttributeNames": {"#key_id": "key_id", "#revision": "revision"}}}),
                ], action="regenerate the key", sleep=self._sleep)
                return key_from_item(moved)
            except TransactionCancelled as exc:
                if "new" in exc:
                    raise Conflict("key already exists") from exc
                self._sleep(0.005 * 2**attempt)
        raise Conflict("The key is in use; try again.")

    def _read(self, key_hash: str, *, consistent: bool) -> dict[str, Any] | None:
        with storage_errors("read the key"):
            reply = self._client.get_item(TableName=self._table, Key=to_item({"key_hash": key_hash}),
                                          ConsistentRead=consistent)
        item = reply.get("Item")
        return from_item(item) if item else None

    def _current(self, key: ApiKey) -> dict[str, Any]:
        """The key's item as it is now, following it if it was regenerated since `key` was read."""
        key_hash = key.key_hash
        for _ in range(MAX_FORWARDS):
            values = self._read(key_hash, consistent=True)
            if values is None:
                break
            if not is_forward(values):
                return values
            key_hash = values["moved_to"]
        raise NotFound(f"No key `{key.key_id}`.", param="key_id")
