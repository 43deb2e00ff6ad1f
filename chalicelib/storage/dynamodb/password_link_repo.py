"""Set-password link storage on DynamoDB: table `password-links`.

    put        the account's item is written whole: an earlier link is replaced, and dies
      │
      ├── consume   deleted on condition that it is this link and has not expired:
      │             the one use; a second or concurrent use finds nothing
      └── TTL       expired: refused from `expires_at` on; DynamoDB removes the item later
"""

from __future__ import annotations

import dataclasses
from typing import Any

from chalicelib.core.domain import PasswordLink
from chalicelib.storage.dynamodb.common import ConditionFailed, fields_of, from_item, storage_errors, to_item
from chalicelib.storage.ports import PasswordLinkRepo


class DynamoPasswordLinkRepo(PasswordLinkRepo):
    """Table `password-links`, key `account_id`: one link per account; TTL on `expires_at_s`."""

    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def put(self, link: PasswordLink) -> None:
        values = {**dataclasses.asdict(link), "expires_at_s": -(-link.expires_at // 1000)}
        with storage_errors("store the password link"):
            self._client.put_item(TableName=self._table, Item=to_item(values))

    def get(self, account_id: str) -> PasswordLink | None:
        with storage_errors("read the password link"):
            reply = self._client.get_item(TableName=self._table, Key=to_item({"account_id": account_id}),
                                          ConsistentRead=True)
        item = reply.get("Item")
        return fields_of(PasswordLink, from_item(item)) if item else None

    def consume(self, account_id: str, link_hash: str, now_ms: int) -> bool:
        try:
            with storage_errors("use the password link"):
                self._client.delete_item(
                    TableName=self._table,
                    Key=to_item({"account_id": account_id}),
                    # Invariant: a link sets a password once, and only before it expires. The
                    # delete is the use: of concurrent uses, one finds the item and the rest none.
                    ConditionExpression="#link_hash = :link_hash AND #expires_at > :now",
                    ExpressionAttributeNames={"#link_hash": "link_hash", "#expires_at": "expires_at"},
                    ExpressionAttributeValues=to_item({":link_hash": link_hash, ":now": now_ms}),
                )
        except ConditionFailed:
            return False
        return True
