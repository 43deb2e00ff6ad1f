"""Console session storage on DynamoDB: table `sessions`."""

from __future__ import annotations

import dataclasses
from typing import Any

from chalicelib.core.domain import ConsoleSession
from chalicelib.storage.dynamodb.common import fields_of, from_item, put_new, storage_errors, to_item
from chalicelib.storage.ports import SessionRepo


class DynamoSessionRepo(SessionRepo):
    """Table `sessions`, key `session_hash`; DynamoDB's TTL removes an item some time after
    `expires_at_s` (epoch seconds), so expiry itself is checked by the reader."""

    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def create(self, session: ConsoleSession) -> None:
        values = {**dataclasses.asdict(session), "expires_at_s": -(-session.expires_at // 1000)}
        put_new(self._client, self._table, values, "session_hash", "session already exists")

    def get(self, session_hash: str) -> ConsoleSession | None:
        # Consistent: a session is used right after login, and a logout ends it at once.
        with storage_errors("read the session"):
            reply = self._client.get_item(TableName=self._table, Key=to_item({"session_hash": session_hash}),
                                          ConsistentRead=True)
        item = reply.get("Item")
        return fields_of(ConsoleSession, from_item(item)) if item else None

    def delete(self, session_hash: str) -> None:
        with storage_errors("delete the session"):
            self._client.delete_item(TableName=self._table, Key=to_item({"session_hash": session_hash}))
