"""API keys on DynamoDB: table `keys`, key `key_hash` (the relay's one lookup), with
indexes `account-index` (account_id, created_at) and `key-id-index` (key_id)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.core.domain import ApiKey
from chalicelib.core.errors import Conflict, NotFound, StorageError
from chalicelib.storage.dynamodb.common import (
    fields_of,
    from_item,
    is_condition_failure,
    put_new,
    read_all,
    storage_errors,
    to_item,
)
from chalicelib.storage.ports import KeyRepo

_SETTINGS = ("name", "group", "status", "expires_at", "quota", "models", "cidrs")
_SAVE_ATTEMPTS = 5


def key_item(key: ApiKey) -> dict[str, Any]:
    return {**key.__dict__, "models": list(key.models), "cidrs": list(key.cidrs)}


def key_from_item(values: dict[str, Any]) -> ApiKey:
    return fields_of(ApiKey, {**values, "models": tuple(values.get("models", ())),
                              "cidrs": tuple(values.get("cidrs", ()))})


class DynamoKeyRepo(KeyRepo):
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def create(self, key: ApiKey) -> None:
        put_new(self._client, self._table, key_item(key), "key_hash", "key already exists")

    def get_by_hash(self, key_hash: str, *, consistent: bool = False) -> ApiKey | None:
        with storage_errors("read the key"):
            reply = self._client.get_item(TableName=self._table, Key=to_item({"key_hash": key_hash}),
                                          ConsistentRead=consistent)
        item = reply.get("Item")
        return key_from_item(from_item(item)) if item else None

    def get_by_id(self, key_id: str) -> ApiKey | None:
        items = read_all(self._client.query, "read the key", TableName=self._table, IndexName="key-id-index",
                         KeyConditionExpression="key_id = :id", ExpressionAttributeValues={":id": {"S": key_id}})
        return key_from_item(items[0]) if items else None

    def list_for_account(self, account_id: str) -> list[ApiKey]:
        items = read_all(self._client.query, "list the keys", TableName=self._table, IndexName="account-index",
                         KeyConditionExpression="account_id = :id",
                         ExpressionAttributeValues={":id": {"S": account_id}})
        return [key_from_item(item) for item in items]

    def save_settings(self, key: ApiKey) -> ApiKey:
        for _ in range(_SAVE_ATTEMPTS):
            current = self.get_by_hash(key.key_hash, consistent=True)
            if current is None:
                raise NotFound(f"No key `{key.key_id}`.", param="key_id")
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
            names = {f"#{name}": name for name in [*sets, *removes, *unchanged]}
            values = {f":{name}": list(v) if isinstance(v, tuple) else v for name, v in sets.items()}
            values.update({f":was_{name}": v for name, v in unchanged.items()})
            condition = " AND ".join(["attribute_exists(key_hash)", *(f"#{n} = :was_{n}" for n in unchanged)])
            expression = "SET " + ", ".join(f"#{name} = :{name}" for name in sets)
            if removes:
                expression += " REMOVE " + ", ".join(f"#{name}" for name in removes)
            try:
                reply = self._client.update_item(
                    TableName=self._table, Key=to_item({"key_hash": key.key_hash}), UpdateExpression=expression,
                    ConditionExpression=condition, ExpressionAttributeNames=names,
                    ExpressionAttributeValues=to_item(values), ReturnValues="ALL_NEW")
                return key_from_item(from_item(reply["Attributes"]))
            except ClientError as exc:
                if not is_condition_failure(exc):
                    raise StorageError("storage failed to save the key") from exc
            except BotoCoreError as exc:
                raise StorageError("storage is unreachable (key)") from exc
        raise Conflict("The key is in use; try again.")

    def replace_hash(self, key: ApiKey, key_hash: str, hint: str) -> ApiKey:
        current = self.get_by_hash(key.key_hash, consistent=True)
        if current is None:
            raise NotFound(f"No key `{key.key_id}`.", param="key_id")
        moved = ApiKey(**{**current.__dict__, "key_hash": key_hash, "hint": hint})
        try:
            self._client.transact_write_items(TransactItems=[
                {"Put": {"TableName": self._table, "Item": to_item(key_item(moved)),
                         "ConditionExpression": "attribute_not_exists(key_hash)"}},
                {"Delete": {"TableName": self._table, "Key": to_item({"key_hash": current.key_hash}),
                            "ConditionExpression": "attribute_exists(key_hash)"}},
            ])
        except ClientError as exc:
            raise StorageError("storage failed to regenerate the key") from exc
        except BotoCoreError as exc:
            raise StorageError("storage is unreachable (key)") from exc
        return moved
