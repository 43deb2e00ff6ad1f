"""Login attempt counters: DynamoDB (table `login-attempts`) and in-memory."""

from __future__ import annotations

from typing import Any

from chalicelib.storage.dynamodb.common import from_item, storage_errors, to_item
from chalicelib.storage.ports import LoginAttemptRepo


class DynamoLoginAttemptRepo(LoginAttemptRepo):
    """Table `login-attempts`, key `counter_id`; TTL on `expires_at_s`."""

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

    def clear(self, counter_id: str) -> None:
        with storage_errors("clear the login attempts"):
            self._client.delete_item(TableName=self._table, Key=to_item({"counter_id": counter_id}))
