"""Account storage on DynamoDB: tables `accounts` and `emails`.

Email uniqueness: DynamoDB has no unique secondary index, so each account also
owns one item in the small `emails` table, keyed by its email in lower case.
The account item and that claim are written by one transaction, each on
condition that its key is new, so two sign-ups with one email cannot both
succeed and a refused one leaves nothing behind. The claims live in a table of
their own rather than as extra items of `accounts` because the wallet updates
account items by id and listings scan that table: a claim item there would look
like an account to both.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from chalicelib.core.domain import Account
from chalicelib.core.errors import Conflict, EmailTaken, NotFound
from chalicelib.storage.dynamodb.common import (
    ConditionFailed,
    TransactionCancelled,
    TransactItem,
    fields_of,
    from_item,
    read_all,
    storage_errors,
    to_item,
    transact,
)
from chalicelib.storage.ports import AccountRepo, matches_search, oldest_first

# No account has this id (ids start with `acct_`).
_NO_ACCOUNT = "-"


class DynamoAccountRepo(AccountRepo):
    """Table `accounts`, key `account_id`; the wallet's counters (`available`, `held`) live on
    the same item, so every update here sets only the attributes it owns. Table `emails`,
    key `email`: one claim per account."""

    def __init__(self, client: Any, table: str, *, emails: str,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client
        self._table = table
        self._emails = emails
        self._sleep = sleep

    def create(self, account: Account) -> None:
        values = {**dataclasses.asdict(account), "groups": list(account.groups), "available": 0, "held": 0}
        try:
            # Another sign-up with the same email at the same moment collides
            # (TransactionConflict): `transact` tries again, and the retry finds
            # that one's claim (or succeeds if it failed).
            transact(self._client, [
                TransactItem("account", {"Put": {
                    "TableName": self._table, "Item": to_item(values),
                    # Invariant: an account is created once; its wallet starts empty.
                    "ConditionExpression": "attribute_not_exists(account_id)"}}),
                TransactItem("email", {"Put": {
                    "TableName": self._emails,
                    "Item": to_item({"email": account.email.lower(), "account_id": account.account_id}),
                    # Invariant: one account per email.
                    "ConditionExpression": "attribute_not_exists(email)"}}),
            ], action="create the account", sleep=self._sleep)
        except TransactionCancelled as exc:
            if "email" in exc:
                raise EmailTaken(f"Another account has the email {account.email}.", param="email") from exc
            raise Conflict(f"account {account.account_id} already exists") from exc

    def get(self, account_id: str) -> Account | None:
        # Consistent: a password change must end every session at once, so the
        # epoch read on each console request must be the latest.
        with storage_errors("read the account"):
            reply = self._client.get_item(TableName=self._table, Key=to_item({"account_id": account_id}),
                                          ConsistentRead=True)
        item = reply.get("Item")
        return _account(from_item(item)) if item else None

    def get_by_email(self, email: str) -> Account | None:
        with storage_errors("read the email"):
            reply = self._client.get_item(TableName=self._emails, Key=to_item({"email": email.lower()}),
                                          ConsistentRead=True)
        account_id = from_item(reply["Item"])["account_id"] if "Item" in reply else None
        # An unknown email costs the same two reads as a known one, so the time a
        # login takes does not tell which emails have accounts.
        account = self.get(account_id or _NO_ACCOUNT)
        return account if account_id else None

    def list(self, search: str | None = None) -> list[Account]:
        # An operator's listing: a scan of the whole table is acceptable at this scale.
        items = read_all(self._client.scan, "list the accounts", TableName=self._table, ConsistentRead=True)
        return oldest_first([a for a in map(_account, items) if matches_search(a, search)])

    def set_password(self, account_id: str, password_hash: str) -> Account:
        return self._update(account_id, "SET #hash = :hash ADD #epoch :one",
                            {"#hash": "password_hash", "#epoch": "session_epoch"}, {":hash": password_hash, ":one": 1})

    def set_status(self, account_id: str, status: str) -> Account:
        return self._update(account_id, "SET #status = :status", {"#status": "status"}, {":status": status})

    def set_groups(self, account_id: str, groups: tuple[str, ...]) -> Account:
        return self._update(account_id, "SET #groups = :groups", {"#groups": "groups"}, {":groups": list(groups)})

    def set_default_plan(self, account_id: str, default_plan: bool) -> Account:
        return self._update(account_id, "SET #default_plan = :default_plan", {"#default_plan": "default_plan"},
                            {":default_plan": default_plan})

    def set_role(self, account_id: str, role: str) -> Account:
        return self._update(account_id, "SET #role = :role", {"#role": "role"}, {":role": role})

    def _update(self, account_id: str, expression: str, names: dict[str, str], values: dict[str, Any]) -> Account:
        try:
            with storage_errors("update the account"):
                reply = self._client.update_item(
                    TableName=self._table,
                    Key=to_item({"account_id": account_id}),
                    UpdateExpression=expression,
                    # Only an existing account is changed: an update must not create one.
                    ConditionExpression="attribute_exists(account_id)",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=to_item(values),
                    ReturnValues="ALL_NEW",
                )
        except ConditionFailed as exc:
            raise NotFound(f"No account `{account_id}`.", param="account_id") from exc
        return _account(from_item(reply["Attributes"]))


def _account(values: dict[str, Any]) -> Account:
    return fields_of(Account, {**values, "groups": tuple(values.get("groups", ()))})
