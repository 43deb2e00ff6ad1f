"""Account storage: DynamoDB (table `accounts`) and in-memory."""

from __future__ import annotations

from typing import Any

from chalicelib.domain import Account
from chalicelib.errors import Conflict
from chalicelib.storage.dynamodb_repo import fields_of, from_item, put_new, storage_errors, to_item
from chalicelib.storage.memory_repo import InMemoryWalletRepo
from chalicelib.storage.ports import AccountRepo


class InMemoryAccountRepo(AccountRepo):
    def __init__(self, wallets: InMemoryWalletRepo | None = None) -> None:
        self._accounts: dict[str, Account] = {}
        self._wallets = wallets

    def create(self, account: Account) -> None:
        if account.account_id in self._accounts:
            raise Conflict(f"account {account.account_id} already exists")
        self._accounts[account.account_id] = account
        if self._wallets is not None:
            self._wallets.open(account.account_id)

    def get(self, account_id: str) -> Account | None:
        return self._accounts.get(account_id)


class DynamoAccountRepo(AccountRepo):
    """Table `accounts`, key `account_id`. The wallet's counters live on the same item."""

    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def create(self, account: Account) -> None:
        put_new(self._client, self._table, {**account.__dict__, "available": 0, "held": 0}, "account_id",
                f"account {account.account_id} already exists")

    def get(self, account_id: str) -> Account | None:
        with storage_errors("read the account"):
            reply = self._client.get_item(TableName=self._table, Key=to_item({"account_id": account_id}))
        item = reply.get("Item")
        return fields_of(Account, from_item(item)) if item else None
