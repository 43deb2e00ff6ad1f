"""The wallet on DynamoDB: balances, holds, the ledger and key counters, moved together by transactions.

Where things live:
- `accounts` item: `available` (spendable units), `held` (reserved by requests in flight)
  and `shortfall` (running total of what settlements could not charge); `frozen`, `debt`,
  `disputes` and `ledger_seq` once a move wrote them (absent = 0; see wallet_moves.py);
- `holds` table: one item per open hold, key `request_id`;
- `ledger` table: partition `account_id`, sort `entry_id` (the entry's 13-digit time first,
  so an account's entries sort oldest first); one item per credit or charge. A credit's
  claim is an item of the same table in a partition of its own, `account_id` = the
  claim (`credit#<kind>#<sha256 of the reference>`, never an account id) and
  `entry_id` = "claim", so it is unique across accounts and no account's ledger sees it;
- `keys` item: `reserved` (held by its requests in flight), `spent`, `quota_left` (while a
  quota is set: quota - spent - reserved), request and token counters, `last_used_at`,
  `revision`. A regenerated key leaves `{key_hash, moved_to}` at its old hash;
- `usage-rollups` item: one per account × key × model × channel × UTC quarter-hour, its
  counters added to by the transaction that closes each request (see usage_rollup_repo.py);
- `usage-outbox` item: the request's usage event, written by the same transaction, from where
  the table's stream carries it to Firehose (see usage_outbox.py): no call of its own.

A hold's timeline:

    hold()     account: available -= amount, held += amount      (active, available >= amount,
                                                                  no debt, no open dispute)
               key: reserved += amount, quota_left -= amount     (active, unexpired, quota_left >= amount)
               holds[request_id] created
       │
       ├── settle(cost)   charged = min(cost, amount + available, amount + quota_left): beyond the
       │                  hold, only what both the wallet and the key's quota still have
       │                  holds[request_id] deleted; account: held -= amount,
       │                  available += amount - charged, shortfall += cost - charged;
       │                  ledger entry -charged (with its shortfall); key: reserved -= amount,
       │                  spent += charged, quota_left += amount - charged, requests and tokens
       │                  counted; account: ledger_seq += 1 when an entry is written;
       │                  rollup: the request added, its cost = charged;
       │                  usage-outbox: the request's event, with what was charged
       │                                      (available >= charged - amount, quota_left >= charged - amount)
       └── release()      holds[request_id] deleted; account: held -= amount, available += amount;
                          key: reserved -= amount, quota_left += amount;
                          rollup: the request added as an error (given its usage: not by the sweeper);
                          usage-outbox: the request's event (given one)
                          (on an upstream failure, or by the sweeper once the hold expired)

Settle and release write the key's counters on its current item: if the key was
regenerated meanwhile, the condition on the old hash fails, the cancellation returns
the forwarding item, and the retry writes at `moved_to`. Every refusal returns the
refused item as it was (ReturnValuesOnConditionCheckFailure), so a retry needs no reads;
the usual hold and settle are one transaction each.

A credit's timeline (once per claim):

    credit()   account: available += amount, ledger_seq += 1     (the account exists, owing no debt)
               ledger entry +amount                              (its id is new)
               claim created, naming the entry                   (the claim is new)
       ├── the account owes a debt: its refused item tells how much; the retry pays it first,
       │   debt -= pay, available += amount - pay                (debt as it was seen)
       └── the claim exists already: nothing is written; the entry that took it is returned

A credit is a move of one credit entry: `move()` writes any WalletMove the same way (see
wallet_moves.py); `ledger_page()` reads the ledger in pages (see pages.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from chalicelib.core.domain import (
    DEFAULT_GROUP,
    Balance,
    Credited,
    Hold,
    HoldResult,
    LedgerEntry,
    Settlement,
    UsageEvent,
)
from chalicelib.core.errors import NotFound, StorageError
from chalicelib.core.payments import LedgerPage, WalletMove
from chalicelib.core.usage import UsageDelta
from chalicelib.storage.dynamodb.common import (
    TransactionCancelled,
    TransactItem,
    from_item,
    read_all,
    storage_errors,
    to_item,
    transact,
)
from chalicelib.storage.dynamodb.key_repo import MAX_FORWARDS, is_forward
from chalicelib.storage.dynamodb.pages import balance_of, read_ledger_page
from chalicelib.storage.dynamodb.usage_outbox import outbox_item
from chalicelib.storage.dynamodb.usage_rollup_repo import rollup_item
from chalicelib.storage.dynamodb.wallet_moves import MoveItems, check_move
from chalicelib.storage.ports import WalletRepo, account_refusal

# Each retry follows something that changed: the hold closed, the balance or the
# key's quota moved, the key regenerated (at most MAX_FORWARDS times).
_MAX_ATTEMPTS = MAX_FORWARDS + 8
_CLAIM_SORT = "claim"


class DynamoWalletRepo(WalletRepo):
    def __init__(self, client: Any, *, accounts: str, holds: str, ledger: str, keys: str,
                 rollups: str | None = None, outbox: str | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """`rollups` is the usage-rollups table; without one, no usage is rolled up. `outbox` is the
        usage-outbox table; with one, settle and release write each request's usage event to it."""
        self._client = client
        self._rollups = rollups
        self._outbox = outbox
        self.records_events = outbox is not None
        self._sleep = sleep
        self._accounts = accounts
        self._holds = holds
        self._ledger = ledger
        self._keys = keys
        self._items = MoveItems(client, accounts=accounts, ledger=ledger)

    def balance(self, account_id: str) -> Balance:
        with storage_errors("read the balance"):
            reply = self._client.get_item(
                TableName=self._accounts,
                Key=to_item({"account_id": account_id}),
                ConsistentRead=True,
                ProjectionExpression="available, held, shortfall, frozen, debt, disputes, #status",
                ExpressionAttributeNames={"#status": "status"},
            )
        return balance_of(from_item(reply.get("Item", {})))

    def credit(self, entry: LedgerEntry, *, claim: str | None = None) -> Credited:
        return self._apply(WalletMove(entry.account_id, (entry,)), claim)

    def move(self, move: WalletMove, *, claim: str | None = None) -> Credited:
        check_move(move)
        return self._apply(move, claim)

    def ledger_page(self, account_id: str, *, limit: int, cursor: str | None = None) -> LedgerPage:
        return read_ledger_page(self._client, accounts=self._accounts, ledger=self._ledger, account_id=account_id,
                                limit=limit, cursor=cursor)

    def hold(self, hold: Hold) -> HoldResult:
        try:
            self._transact([
                # Invariant: a balance never goes below zero. Only an active account holds,
                # owing no debt and with no dispute open, for a key on a plan the account still has.
                self._move(hold.account_id, available=-hold.amount, held=hold.amount, need=hold.amount,
                           active=True, plan=hold.plan),
                TransactItem("hold", {"Put": {
                    "TableName": self._holds,
                    "Item": to_item(hold.__dict__),
                    # Invariant: a request holds once.
                    "ConditionExpression": "attribute_not_exists(request_id)",
                }}),
                self._reserve_on_key(hold),
            ], "hold")
        except TransactionCancelled as exc:
            if "key" in exc:
                return HoldResult.KEY_REFUSED
            return account_refusal(exc.failed.get("account"), hold.amount)
        return HoldResult.HELD

    def settle(self, hold: Hold, cost: int, entry: LedgerEntry, usage: UsageDelta | None = None,
               event: UsageEvent | None = None) -> Settlement:
        closing = True  # False once the hold turns out to be closed already
        key = _KeyTarget(hold.key_hash, hold.key_quota)
        available: int | None = None  # as last seen, once the account refused
        for _ in range(_MAX_ATTEMPTS):
            limits = [available, key.quota_left if key.quota else None]
            held = hold.amount if closing else 0
            charged = min([cost, *(held + max(0, limit) for limit in limits if limit is not None)])
            shortfall = cost - charged
            if not closing and not (charged or shortfall):
                # Invariant: a request is counted once. Nothing to close and nothing to charge:
                # this request was settled (or released) before.
                return Settlement(charged=0, shortfall=0)
            items = [self._close_hold(hold)] if closing else []
            # Invariant: a balance never goes below zero; what the hold does not
            # cover must be available.
            items.append(self._move(hold.account_id, available=held - charged, held=-held,
                                    need=charged - held, shortfall=shortfall, entry_written=bool(charged or shortfall)))
            if charged or shortfall:
                # Invariant: a request is charged once; its entry id is derived from the request.
                items.append(self._put_entry(_fill(entry, charged, shortfall)))
            if key.key_hash is not None:
                items.append(self._count_on_key(key, held=held, charged=charged, entry=entry))
            if usage is not None and self._rollups is not None:
                # Counted only if the transaction commits, and it commits once per request: either
                # the hold's delete or the charge's put is conditional on being the first.
                items.append(rollup_item(self._rollups, hold.account_id, usage, charged))
            recorded = self._outbox is not None and event is not None
            if recorded:
                # Written once, as the rollup is: with the hold's delete or the charge's put.
                items.append(outbox_item(self._outbox, replace(event, cost_units=charged, shortfall_units=shortfall)))
            try:
                self._transact(items, "settle")
                return Settlement(charged=charged, shortfall=shortfall, recorded=recorded)
            except TransactionCancelled as exc:
                if "entry" in exc:
                    # Settled before: charge nothing more, only give back a hold still open.
                    self.release(hold)
                    return Settlement(charged=0, shortfall=0)
                if "hold" in exc:
                    closing = False  # released meanwhile (expired): charge from what is available
                if "account" in exc:
                    available = _available(exc.failed["account"], hold)
                if "key" in exc:
                    key = key.follow(exc.failed["key"])
        raise StorageError(f"could not settle request {hold.request_id}")

    def release(self, hold: Hold, usage: UsageDelta | None = None, event: UsageEvent | None = None) -> bool:
        key = _KeyTarget(hold.key_hash, hold.key_quota)
        for _ in range(_MAX_ATTEMPTS):
            items = [self._close_hold(hold), self._move(hold.account_id, available=hold.amount, held=-hold.amount)]
            if key.key_hash is not None:
                items.append(self._count_on_key(key, held=hold.amount, charged=0, entry=None))
            if usage is not None and self._rollups is not None:
                # Counted only with the hold's delete, which succeeds once.
                items.append(rollup_item(self._rollups, hold.account_id, usage, 0, error=True))
            if self._outbox is not None and event is not None:
                # Written once: with the hold's delete, which succeeds once.
                items.append(outbox_item(self._outbox, event))
            try:
                self._transact(items, "release")
                return True
            except TransactionCancelled as exc:
                if "hold" in exc:
                    return False
                if "account" in exc:
                    raise StorageError(f"account {hold.account_id} of request {hold.request_id} is missing") from exc
                key = key.follow(exc.failed["key"])
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

    def _entry(self, account_id: str, entry_id: str) -> LedgerEntry:
        with storage_errors("read the ledger"):
            reply = self._client.get_item(TableName=self._ledger, ConsistentRead=True,
                                          Key=to_item({"account_id": account_id, "entry_id": entry_id}))
        if "Item" not in reply:
            raise StorageError(f"ledger entry {entry_id} is missing")
        return LedgerEntry(**from_item(reply["Item"]))

    def _claimed_entry(self, claim: str) -> LedgerEntry:
        """The ledger entry written with a claim (the claim and its entry are written together)."""
        with storage_errors("read the claim"):
            reply = self._client.get_item(TableName=self._ledger, ConsistentRead=True,
                                          Key=to_item({"account_id": claim, "entry_id": _CLAIM_SORT}))
        if "Item" not in reply:
            raise StorageError(f"claim {claim} is missing")
        values = from_item(reply["Item"])
        return self._entry(values["claimed_by"], values["claimed_entry"])

    def _apply(self, move: WalletMove, claim: str | None) -> Credited:
        first = move.entries[0]
        others = []
        if claim is not None:
            others.append(TransactItem("claim", {"Put": {
                "TableName": self._ledger,
                "Item": to_item({"account_id": claim, "entry_id": _CLAIM_SORT, "claimed_by": first.account_id,
                                 "claimed_entry": first.entry_id}),
                # Invariant: a credit's reference credits once, across all accounts.
                "ConditionExpression": "attribute_not_exists(entry_id)",
            }}))
        try:
            self._items.apply(move, others, action="move money in the wallet", sleep=self._sleep)
        except TransactionCancelled as exc:
            if "account" in exc and exc.failed["account"] is None:
                raise NotFound(f"No account `{move.account_id}`.", param="account_id") from exc
            if claim is not None and "claim" in exc:
                first = self._claimed_entry(claim)
            else:
                # Applied before: one of its entries exists, and so does the first.
                first = self._entry(first.account_id, first.entry_id)
            return Credited(first, self.balance(first.account_id), applied=False)
        return Credited(first, self.balance(first.account_id), applied=True)

    # Transaction items, each named by its role for reading cancellations.

    def _move(self, account_id: str, *, available: int, held: int = 0, need: int = 0, active: bool = False,
              shortfall: int = 0, plan: str | None = None, entry_written: bool = False) -> TransactItem:
        extra = None
        if plan is not None:
            # `default` is the account's unless the operator confined it to its listed plans.
            names = {"#groups": "groups"}
            values: dict[str, Any] = {":plan": {"S": plan}}
            condition = "contains(#groups, :plan)"
            if plan == DEFAULT_GROUP:
                names["#default_plan"] = "default_plan"
                values[":yes"] = {"BOOL": True}
                condition = f"(attribute_not_exists(#default_plan) OR #default_plan = :yes OR {condition})"
            extra = (condition, names, values)
        return self._items.account(account_id, adds={"available": available, "held": held}, need=need,
                                   shortfall=shortfall, entry_written=entry_written, active=active,
                                   clear=active,  # only a hold asks for an active account
                                   extra=extra)

    def _close_hold(self, hold: Hold) -> TransactItem:
        return TransactItem("hold", {"Delete": {
            "TableName": self._holds,
            "Key": to_item({"request_id": hold.request_id}),
            # Invariant: a hold is settled or released exactly once.
            "ConditionExpression": "attribute_exists(request_id)",
        }})

    def _put_entry(self, entry: LedgerEntry) -> TransactItem:
        # Invariant: a request is charged once; its entry id is derived from the request.
        return self._items.entry(entry)

    def _reserve_on_key(self, hold: Hold) -> TransactItem:
        """The key's part of a hold: it must be active and unexpired, and within its quota."""
        names = {"#status": "status", "#expires_at": "expires_at", "#reserved": "reserved",
                 "#last_used_at": "last_used_at", "#revision": "revision"}
        values = {":active": {"S": "active"}, ":now": {"N": str(hold.created_at)},
                  ":amount": {"N": str(hold.amount)}, ":one": {"N": "1"}}
        # A forwarding item has no status: a regenerated key's old secret cannot hold.
        condition = "#status = :active AND (attribute_not_exists(#expires_at) OR #expires_at > :now)"
        add = "#reserved :amount, #revision :one"
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
        return TransactItem("key", {"Update": {
            "TableName": self._keys,
            "Key": to_item({"key_hash": hold.key_hash}),
            "UpdateExpression": f"SET #last_used_at = :now ADD {add}",
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }})

    def _count_on_key(self, key: _KeyTarget, *, held: int, charged: int, entry: LedgerEntry | None) -> TransactItem:
        """The key's part of closing a hold: what it reserved goes, what was charged is spent."""
        counters = {"reserved": -held, "spent": charged, "revision": 1}
        if entry is not None:
            counters.update(requests=1, prompt_tokens=entry.prompt_tokens, completion_tokens=entry.completion_tokens)
        if key.quota:
            counters["quota_left"] = held - charged
        names = {f"#{name}": name for name in counters}
        values = {f":{name}": {"N": str(value)} for name, value in counters.items()}
        names.update({"#key_id": "key_id", "#quota": "quota"})
        # The key's current item: a regenerated key's old hash holds a forwarding
        # item (no key_id), which the retry follows.
        condition = "attribute_exists(#key_id)"
        if key.quota:
            # `quota_left` is kept while, and only while, the key has a quota.
            condition += " AND attribute_exists(#quota)"
            if charged > held:
                # Invariant: a key never spends past its quota (quota_left stays >= 0).
                condition += " AND #quota_left >= :beyond"
                values[":beyond"] = {"N": str(charged - held)}
        else:
            condition += " AND attribute_not_exists(#quota)"
        return TransactItem("key", {"Update": {
            "TableName": self._keys,
            "Key": to_item({"key_hash": key.key_hash}),
            "UpdateExpression": "ADD " + ", ".join(f"#{name} :{name}" for name in counters),
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }})

    def _transact(self, items: list[TransactItem], action: str) -> None:
        transact(self._client, items, action=action, sleep=self._sleep)


class _KeyTarget:
    """Where a closing hold counts on its key, as far as the last refusal told."""

    def __init__(self, key_hash: str | None, quota: bool, quota_left: int | None = None) -> None:
        self.key_hash = key_hash
        self.quota = quota
        self.quota_left = quota_left

    def follow(self, refused: dict[str, Any] | None) -> _KeyTarget:
        """Where to count next, from the key item that refused the write as it was."""
        if refused is None:
            return _KeyTarget(None, False)  # no key under that hash: only its account pays
        if is_forward(refused):
            return _KeyTarget(refused["moved_to"], self.quota)
        quota = "quota" in refused
        return _KeyTarget(self.key_hash, quota, refused.get("quota_left", 0) if quota else None)


def _available(refused: dict[str, Any] | None, hold: Hold) -> int:
    if refused is None:
        raise StorageError(f"account {hold.account_id} of request {hold.request_id} is missing")
    return refused.get("available", 0)


def _fill(entry: LedgerEntry, charged: int, shortfall: int) -> LedgerEntry:
    return LedgerEntry(**{**entry.__dict__, "amount": -charged, "shortfall": shortfall})
