"""The wallet on DynamoDB: balances, holds, the ledger and key counters, moved together by transactions.

Where things live:
- `accounts` item: `available` (spendable units) and `held` (reserved by requests in flight);
- `holds` table: one item per open hold, key `request_id`;
- `ledger` table: partition `account_id`, sort `entry_id`; one item per credit or charge;
- `keys` item: `reserved` (held by its requests in flight), `spent`, `quota_left` (while a
  quota is set), request and token counters, `last_used_at`.

A hold's timeline:

    hold()     account: available -= amount, held += amount      (active, and available >= amount)
               key: reserved += amount, quota_left -= amount     (active, unexpired, within quota)
               holds[request_id] created
       │
       ├── settle()   holds[request_id] deleted; account: held -= amount, available += amount - charged;
       │              ledger entry -charged; key: reserved -= amount, spent += charged,
       │              quota_left += amount - charged, requests and tokens counted
       └── release()  holds[request_id] deleted; account: held -= amount, available += amount;
                      key: reserved -= amount, quota_left += amount
                      (on an upstream failure, or by the sweeper once the hold expired)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.core.domain import Balance, Hold, HoldResult, LedgerEntry, Settlement
from chalicelib.core.errors import NotFound, StorageError
from chalicelib.storage.dynamodb.common import from_item, read_all, storage_errors, to_item
from chalicelib.storage.ports import WalletRepo

_MAX_SETTLE_ATTEMPTS = 6
_MAX_CONFLICT_RETRIES = 4


class _Cancelled(Exception):
    """A transaction was cancelled; `failed` holds the roles of the items whose condition failed."""

    def __init__(self, failed: set[str]) -> None:
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
                ProjectionExpression="available, held, #status",
                ExpressionAttributeNames={"#status": "status"},
            )
        values = from_item(reply.get("Item", {}))
        return Balance(values.get("available", 0), values.get("held", 0), values.get("status", "missing"))

    def credit(self, entry: LedgerEntry) -> Balance:
        try:
            self._transact([
                self._move(entry.account_id, available=entry.amount),
                self._put_entry(entry),
            ])
        except _Cancelled as exc:
            if "account" in exc.failed:
                raise NotFound(f"no account {entry.account_id}", param="account_id") from exc
            raise StorageError(f"ledger entry {entry.entry_id} already exists") from exc
        return self.balance(entry.account_id)

    def hold(self, hold: Hold) -> HoldResult:
        try:
            self._transact([
                # Invariant: a balance never goes below zero. Only an active account holds.
                self._move(hold.account_id, available=-hold.amount, held=hold.amount, need=hold.amount,
                           active=True),
                {"_role": "hold", "Put": {
                    "TableName": self._holds,
                    "Item": to_item(hold.__dict__),
                    "ConditionExpression": "attribute_not_exists(request_id)",
                }},
                self._reserve_on_key(hold),
            ])
        except _Cancelled as exc:
            return HoldResult.KEY_REFUSED if "key" in exc.failed else HoldResult.WALLET_SHORT
        return HoldResult.HELD

    def settle(self, hold: Hold, cost: int, entry: LedgerEntry) -> Settlement:
        held = hold.amount  # becomes 0 if the hold turns out to be closed already
        charged = cost
        count_on_key = True
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
            if count_on_key:
                items.append(self._settle_on_key(hold, held=held, charged=charged, entry=entry))
            try:
                self._transact(items)
                return Settlement(charged=charged, shortfall=shortfall)
            except _Cancelled as exc:
                failed = exc.failed
            if "entry" in failed:
                # Settled before: charge nothing more, only give back a hold still open.
                self.release(hold)
                return Settlement(charged=0, shortfall=0)
            if "hold" in failed:
                held = 0  # released meanwhile (expired): charge from what is available
            if "account" in failed:
                charged = min(cost, held + self.balance(hold.account_id).available)
            if "key" in failed:
                count_on_key = False  # the key was deleted or regenerated; its account still pays
        raise StorageError(f"could not settle request {hold.request_id}")

    def release(self, hold: Hold) -> bool:
        items = [
            self._close_hold(hold),
            self._move(hold.account_id, available=hold.amount, held=-hold.amount),
            self._settle_on_key(hold, held=hold.amount, charged=0, entry=None),
        ]
        for _ in range(2):
            try:
                self._transact(items)
                return True
            except _Cancelled as exc:
                if "hold" in exc.failed:
                    return False
                if "key" not in exc.failed:
                    raise StorageError(f"could not release request {hold.request_id}") from exc
            items = items[:2]  # the key is gone: release the wallet's part alone
        raise StorageError(f"could not release request {hold.request_id}")

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

    def _move(self, account_id: str, *, available: int, held: int = 0, need: int = 0,
              active: bool = False) -> dict[str, Any]:
        condition = "attribute_exists(account_id)"
        names = {"#available": "available", "#held": "held"}
        values = {":available": {"N": str(available)}, ":held": {"N": str(held)}}
        if need > 0:
            condition += " AND #available >= :need"
            values[":need"] = {"N": str(need)}
        if active:
            condition += " AND #status = :active"
            names["#status"] = "status"
            values[":active"] = {"S": "active"}
        return {"_role": "account", "Update": {
            "TableName": self._accounts,
            "Key": to_item({"account_id": account_id}),
            "UpdateExpression": "SET #available = #available + :available, #held = #held + :held",
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
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

    def _reserve_on_key(self, hold: Hold) -> dict[str, Any]:
        """The key's part of a hold: it must be active and unexpired, and within its quota."""
        names = {"#status": "status", "#expires_at": "expires_at", "#reserved": "reserved",
                 "#last_used_at": "last_used_at"}
        values = {":active": {"S": "active"}, ":now": {"N": str(hold.created_at)},
                  ":amount": {"N": str(hold.amount)}}
        condition = "#status = :active AND (attribute_not_exists(#expires_at) OR #expires_at > :now)"
        add = "#reserved :amount"
        if hold.key_quota:
            # Invariant: a key never holds past its quota.
            names["#quota_left"] = "quota_left"
            values[":spend"] = {"N": str(-hold.amount)}
            condition += " AND #quota_left >= :amount"
            add += ", #quota_left :spend"
        else:
            # A quota set since the key was read: the caller reads it again.
            names["#quota"] = "quota"
            condition += " AND attribute_not_exists(#quota)"
        return {"_role": "key", "Update": {
            "TableName": self._keys,
            "Key": to_item({"key_hash": hold.key_hash}),
            "UpdateExpression": f"SET #last_used_at = :now ADD {add}",
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }}

    def _settle_on_key(self, hold: Hold, *, held: int, charged: int, entry: LedgerEntry | None) -> dict[str, Any]:
        """The key's part of closing a hold: what it reserved goes, what was charged is spent."""
        counters = {"reserved": -held, "spent": charged}
        if entry is not None:
            counters.update(requests=1, prompt_tokens=entry.prompt_tokens, completion_tokens=entry.completion_tokens)
        if hold.key_quota:
            counters["quota_left"] = held - charged
        return {"_role": "key", "Update": {
            "TableName": self._keys,
            "Key": to_item({"key_hash": hold.key_hash}),
            "UpdateExpression": "ADD " + ", ".join(f"#{name} :{name}" for name in counters),
            "ConditionExpression": "attribute_exists(key_hash)",
            "ExpressionAttributeNames": {f"#{name}": name for name in counters},
            "ExpressionAttributeValues": {f":{name}": {"N": str(value)} for name, value in counters.items()},
        }}

    def _transact(self, items: list[dict[str, Any]]) -> None:
        request = [{k: v for k, v in item.items() if k != "_role"} for item in items]
        for attempt in range(_MAX_CONFLICT_RETRIES + 1):
            try:
                self._client.transact_write_items(TransactItems=request)
                return
            except ClientError as exc:
                reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
                failed = {items[i]["_role"] for i, code in enumerate(reasons) if code == "ConditionalCheckFailed"}
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
