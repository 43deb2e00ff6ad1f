"""The wallet on DynamoDB: balances, holds and the ledger, moved together by transactions.

Where things live:
- `accounts` item: `available` (spendable units) and `held` (reserved by requests in flight);
- `holds` table: one item per open hold, key `request_id`;
- `ledger` table: partition `account_id`, sort `entry_id`; one item per credit or charge;
- `keys` item: `spent`, the key's lifetime spend.

A hold's timeline:

    hold()     available -= amount, held += amount, holds[request_id] created
       │
       ├── settle()   holds[request_id] deleted, held -= amount,
       │              available += amount - charged, ledger entry -charged, key spent += charged
       └── release()  holds[request_id] deleted, held -= amount, available += amount
                      (on an upstream failure, or by the sweeper once the hold expired)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.domain import Balance, Hold, LedgerEntry, Settlement
from chalicelib.errors import NotFound, StorageError
from chalicelib.storage.dynamodb_repo import from_item, read_all, storage_errors, to_item
from chalicelib.storage.ports import WalletRepo

_MAX_SETTLE_ATTEMPTS = 6
_MAX_CONFLICT_RETRIES = 4


class _Cancelled(Exception):
    """A transaction was cancelled; `failed` holds the indexes of the items whose condition failed."""

    def __init__(self, failed: set[int]) -> None:
        super().__init__(failed)
        self.failed = failed


class DynamoWalletRepo(WalletRepo):
    def __init__(self, client: Any, *, accounts: str, holds: str, ledger: str, keys: str,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client
        self._sleep = sleep
        self._accounts = accounts
        self._holds = holds
        self._ledger = ledger
        self._keys = keys

    def balance(self, account_id: str) -> Balance:
        with storage_errors("read the balance"):
            reply = self._client.get_item(
                TableName=self._accounts,
                Key=to_item({"account_id": account_id}),
                ConsistentRead=True,
                ProjectionExpression="available, held",
            )
        values = from_item(reply.get("Item", {}))
        return Balance(values.get("available", 0), values.get("held", 0))

    def credit(self, entry: LedgerEntry) -> Balance:
        try:
            self._transact([
                self._move(entry.account_id, available=entry.amount),
                self._put_entry(entry),
            ])
        except _Cancelled as exc:
            if 0 in exc.failed:
                raise NotFound(f"no account {entry.account_id}", param="account_id") from exc
            raise StorageError(f"ledger entry {entry.entry_id} already exists") from exc
        return self.balance(entry.account_id)

    def hold(self, hold: Hold) -> bool:
        try:
            self._transact([
                # Invariant: a balance never goes below zero.
                self._move(hold.account_id, available=-hold.amount, held=hold.amount, need=hold.amount),
                {"Put": {
                    "TableName": self._holds,
                    "Item": to_item(hold.__dict__),
                    "ConditionExpression": "attribute_not_exists(request_id)",
                }},
            ])
        except _Cancelled:
            return False
        return True

    def settle(self, hold: Hold, cost: int, entry: LedgerEntry) -> Settlement:
        held = hold.amount  # becomes 0 if the hold turns out to be closed already
        charged = cost
        charge_key = True
        for _ in range(_MAX_SETTLE_ATTEMPTS):
            shortfall = cost - charged
            items = []
            if held:
                items.append(self._close_hold(hold))
            # Invariant: a balance never goes below zero; what the hold does not
            # cover must be available.
            items.append(self._move(hold.account_id, available=held - charged, held=-held,
                                    need=max(0, charged - held)))
            if charged or shortfall:
                # Invariant: a request is charged once; its entry id is derived from the request.
                items.append(self._put_entry(_fill(entry, charged, shortfall)))
            if charged and charge_key:
                items.append(self._add_key_spend(hold.key_hash, charged))
            try:
                self._transact(items)
                return Settlement(charged=charged, shortfall=shortfall)
            except _Cancelled as exc:
                failed = {items[i]["_role"] for i in exc.failed}
            if "entry" in failed:
                # Settled before: charge nothing more, only give back a hold still open.
                self.release(hold)
                return Settlement(charged=0, shortfall=0)
            if "hold" in failed:
                held = 0  # released meanwhile (expired): charge from what is available
            if "account" in failed:
                charged = min(cost, held + self.balance(hold.account_id).available)
            if "key" in failed:
                charge_key = False  # the key was deleted; its account still pays
        raise StorageError(f"could not settle request {hold.request_id}")

    def release(self, hold: Hold) -> bool:
        try:
            self._transact([
                self._close_hold(hold),
                self._move(hold.account_id, available=hold.amount, held=-hold.amount),
            ])
        except _Cancelled as exc:
            if 0 in exc.failed:
                return False
            raise StorageError(f"could not release request {hold.request_id}") from exc
        return True

    def ledger(self, account_id: str) -> list[LedgerEntry]:
        items = read_all(self._client.query, "read the ledger", TableName=self._ledger,
                         KeyConditionExpression="account_id = :id",
                         ExpressionAttributeValues={":id": {"S": account_id}}, ConsistentRead=True)
        return [LedgerEntry(**item) for item in items]

    def expired_holds(self, now: int) -> list[Hold]:
        items = read_all(self._client.scan, "read the holds", TableName=self._holds,
                         FilterExpression="expires_at <= :now", ExpressionAttributeValues={":now": {"N": str(now)}})
        return [Hold(**item) for item in items]

    # Transaction items. "_role" names each item for reading cancellation
    # reasons; it is stripped before sending.

    def _move(self, account_id: str, *, available: int, held: int = 0, need: int = 0) -> dict[str, Any]:
        condition = "attribute_exists(account_id)"
        values = {":available": {"N": str(available)}, ":held": {"N": str(held)}}
        if need > 0:
            condition += " AND #available >= :need"
            values[":need"] = {"N": str(need)}
        return {"_role": "account", "Update": {
            "TableName": self._accounts,
            "Key": to_item({"account_id": account_id}),
            "UpdateExpression": "SET #available = #available + :available, #held = #held + :held",
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#available": "available", "#held": "held"},
            "ExpressionAttributeValues": values,
        }}

    def _close_hold(self, hold: Hold) -> dict[str, Any]:
        # Invariant: a hold is settled or released exactly once.
        return {"_role": "hold", "Delete": {
            "TableName": self._holds,
            "Key": to_item({"request_id": hold.request_id}),
            "ConditionExpression": "attribute_exists(request_id)",
        }}

    def _put_entry(self, entry: LedgerEntry) -> dict[str, Any]:
        return {"_role": "entry", "Put": {
            "TableName": self._ledger,
            "Item": to_item(entry.__dict__),
            "ConditionExpression": "attribute_not_exists(entry_id)",
        }}

    def _add_key_spend(self, key_hash: str, amount: int) -> dict[str, Any]:
        return {"_role": "key", "Update": {
            "TableName": self._keys,
            "Key": to_item({"key_hash": key_hash}),
            "UpdateExpression": "ADD #spent :amount",
            "ConditionExpression": "attribute_exists(key_hash)",
            "ExpressionAttributeNames": {"#spent": "spent"},
            "ExpressionAttributeValues": {":amount": {"N": str(amount)}},
        }}

    def _transact(self, items: list[dict[str, Any]]) -> None:
        request = [{k: v for k, v in item.items() if k != "_role"} for item in items]
        for attempt in range(_MAX_CONFLICT_RETRIES + 1):
            try:
                self._client.transact_write_items(TransactItems=request)
                return
            except ClientError as exc:
                reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
                failed = {i for i, code in enumerate(reasons) if code == "ConditionalCheckFailed"}
                if failed:
                    raise _Cancelled(failed) from exc
                # Another transaction touched the same item at the same moment: try again.
                if "TransactionConflict" in reasons and attempt < _MAX_CONFLICT_RETRIES:
                    self._sleep(0.01 * 2**attempt)
                    continue
                raise StorageError("storage failed to write the wallet") from exc
            except BotoCoreError as exc:
                raise StorageError("storage is unreachable (wallet)") from exc


def _fill(entry: LedgerEntry, charged: int, shortfall: int) -> LedgerEntry:
    return LedgerEntry(**{**entry.__dict__, "amount": -charged, "shortfall": shortfall})
