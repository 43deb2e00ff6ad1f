"""Login attempt counters and guess locks on DynamoDB: table `login-attempts`."""

from __future__ import annotations

from typing import Any

from chalicelib.storage.dynamodb.common import ConditionFailed, from_item, storage_errors, to_item
from chalicelib.storage.ports import LoginAttemptRepo


class DynamoLoginAttemptRepo(LoginAttemptRepo):
    """Table `login-attempts`, key `counter_id`; TTL on `expires_at_s`. A counter item holds
    `attempts`; a lock item holds `not_before_s`, the time until which it is taken."""

    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def add(self, counter_id: str, amount: int, expires_at_s: int) -> int:
        # ADD is atomic and returns the new count: concurrent attempts each see their own.
        with storage_errors("count the login attempt"):
            reply = self._client.update_item(
                TableName=self._table,
                Key=to_item({"counter_id": counter_id}),
                UpdateExpression="ADD #attempts :amount SET #expires_at_s = :expires_at_s",
                ExpressionAttributeNames={"#attempts": "attempts", "#expires_at_s": "expires_at_s"},
                ExpressionAttributeValues=to_item({":amount": amount, ":expires_at_s": expires_at_s}),
                ReturnValues="UPDATED_NEW",
            )
        return from_item(reply["Attributes"])["attempts"]

    def count(self, counter_id: str, now_s: int) -> int:
        with storage_errors("read the login counter"):
            reply = self._client.get_item(TableName=self._table, Key=to_item({"counter_id": counter_id}),
                                          ConsistentRead=True)
        item = from_item(reply.get("Item") or {})
        # TTL removes an expired item some time later; until then it must read as gone.
        if item.get("expires_at_s", 0) <= now_s:
            return 0
        return item.get("attempts", 0)

    def clear(self, counter_id: str) -> None:
        with storage_errors("clear the login attempts"):
            self._client.delete_item(TableName=self._table, Key=to_item({"counter_id": counter_id}))

    def claim(self, lock_id: str, now_s: int, until_s: int) -> int:
        try:
            with storage_errors("lock the login"):
                self._client.update_item(
                    TableName=self._table,
                    Key=to_item({"counter_id": lock_id}),
                    UpdateExpression="SET #not_before_s = :until, #expires_at_s = :until",
                    # Invariant: past the per-account ceiling, one guess at a time per delay.
                    # Of concurrent claims only the first finds the lock free.
                    ConditionExpression="attribute_not_exists(#not_before_s) OR #not_before_s <= :now",
                    ExpressionAttributeNames={"#not_before_s": "not_before_s", "#expires_at_s": "expires_at_s"},
                    ExpressionAttributeValues=to_item({":until": until_s, ":now": now_s}),
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
        except ConditionFailed as exc:
            return exc.item.get("not_before_s", until_s)
        return 0
