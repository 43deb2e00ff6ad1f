"""Redemption codes on DynamoDB: table `codes`, key `code_hash` (SHA-256 of the secret), GSI
`code-id-index` on the public `code_id`.

A code's timeline:

    create()    code put, status "active"                       (its hash is new)
       ├── redeem(now)   one transaction:                       (status still "active"; not
       │                 code: status "used", redeemed_by/at     expired at `now`)
       │                 account and ledger: a credit of the code's value, paying debt first
       │                 (see wallet_moves.py)                   (the entry id is new)
       │     └── the code refused: the item as it was says why (used, disabled, expired)
       └── disable()     code: status "disabled"                (status still "active")

Batches: a transaction holds at most 100 items, so a larger batch is written 100 codes per
transaction. If a later transaction finds a hash taken, the codes the earlier ones wrote are
deleted again (nobody holds their secrets yet), so a refused batch leaves nothing behind;
only a storage failure in between could leave part of a batch, which the caller sees as an error.
The public id is looked up through a GSI, which is eventually consistent: a code disabled
within moments of its creation may read as unknown, and the operator tries again.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from chalicelib.core.domain import Balance, LedgerEntry
from chalicelib.core.errors import Conflict
from chalicelib.core.payments import Redeemed, RedeemResult, RedemptionCode, WalletMove
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
from chalicelib.storage.dynamodb.pages import balance_of
from chalicelib.storage.dynamodb.wallet_moves import MoveItems
from chalicelib.storage.ports import RedemptionRepo

# TransactWriteItems takes at most 100 items.
_CHUNK = 100


class DynamoRedemptionRepo(RedemptionRepo):
    def __init__(self, client: Any, *, codes: str, accounts: str, ledger: str,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client
        self._codes = codes
        self._accounts = accounts
        self._moves = MoveItems(client, accounts=accounts, ledger=ledger)
        self._sleep = sleep

    def create(self, codes: list[RedemptionCode]) -> None:
        hashes = [code.code_hash for code in codes]
        if len(set(hashes)) != len(hashes):
            raise Conflict("A code's hash is repeated in the batch.")
        written: list[str] = []
        for start in range(0, len(codes), _CHUNK):
            chunk = codes[start:start + _CHUNK]
            try:
                transact(self._client, [TransactItem(f"code{index}", {"Put": {
                    "TableName": self._codes,
                    "Item": to_item(dataclasses.asdict(code)),
                    # Invariant: a code is used once; two codes never share a secret.
                    "ConditionExpression": "attribute_not_exists(code_hash)",
                }}) for index, code in enumerate(chunk)], action="create the codes", sleep=self._sleep)
            except TransactionCancelled as exc:
                self._remove(written)
                raise Conflict("A code with the same secret exists.") from exc
            written += [code.code_hash for code in chunk]

    def list(self, *, batch: str | None = None) -> list[RedemptionCode]:
        request: dict[str, Any] = {"TableName": self._codes, "ConsistentRead": True}
        if batch is not None:
            request.update(FilterExpression="#batch = :batch", ExpressionAttributeNames={"#batch": "batch"},
                           ExpressionAttributeValues={":batch": {"S": batch}})
        codes = [fields_of(RedemptionCode, row) for row in read_all(self._client.scan, "list the codes", **request)]
        return sorted(codes, key=lambda code: (code.created_at, code.code_id), reverse=True)

    def disable(self, code_id: str) -> RedemptionCode | None:
        found = read_all(self._client.query, "find the code", TableName=self._codes, IndexName="code-id-index",
                         KeyConditionExpression="code_id = :id", ExpressionAttributeValues={":id": {"S": code_id}})
        if not found:
            return None
        try:
            with storage_errors("disable the code"):
                reply = self._client.update_item(
                    TableName=self._codes, Key=to_item({"code_hash": found[0]["code_hash"]}),
                    UpdateExpression="SET #status = :disabled",
                    # Only an active code is disabled: a used one keeps its history.
                    ConditionExpression="#status = :active",
                    ExpressionAttributeNames={"#status": "status"},
                    ExpressionAttributeValues={":disabled": {"S": "disabled"}, ":active": {"S": "active"}},
                    ReturnValues="ALL_NEW", ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
        except ConditionFailed as exc:
            return fields_of(RedemptionCode, exc.item) if exc.item else None
        return fields_of(RedemptionCode, from_item(reply["Attributes"]))

    def redeem(self, code_hash: str, entry: LedgerEntry, now_ms: int) -> Redeemed:
        code = self._get(code_hash)
        refused = _refusal(code, now_ms)
        if refused is not None or code is None:
            return Redeemed(refused or RedeemResult.UNKNOWN, code)
        credit = dataclasses.replace(entry, amount=code.value_units, reference=code.code_id)
        used = dataclasses.replace(code, status="used", redeemed_by=entry.account_id, redeemed_at=now_ms)
        try:
            self._moves.apply(WalletMove(entry.account_id, (credit,)), [self._use(used, now_ms)],
                              action="redeem the code", sleep=self._sleep)
        except TransactionCancelled as exc:
            if "code" in exc:
                was = fields_of(RedemptionCode, exc.failed["code"]) if exc.failed["code"] else None
                return Redeemed(_refusal(was, now_ms) or RedeemResult.UNKNOWN, was)
            raise Conflict(f"Ledger entry `{entry.entry_id}` exists; the code is still active.") from exc
        return Redeemed(RedeemResult.REDEEMED, used, self._balance(entry.account_id))

    def _use(self, used: RedemptionCode, now_ms: int) -> TransactItem:
        return TransactItem("code", {"Update": {
            "TableName": self._codes,
            "Key": to_item({"code_hash": used.code_hash}),
            "UpdateExpression": "SET #status = :used, redeemed_by = :by, redeemed_at = :at",
            # Invariant: a redemption code is applied once, and never after it expired.
            "ConditionExpression": "#status = :active AND (attribute_not_exists(expires_at) OR expires_at > :at)",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {":used": {"S": "used"}, ":active": {"S": "active"},
                                          ":by": {"S": used.redeemed_by}, ":at": {"N": str(now_ms)}},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }})

    def _get(self, code_hash: str) -> RedemptionCode | None:
        with storage_errors("read the code"):
            reply = self._client.get_item(TableName=self._codes, Key=to_item({"code_hash": code_hash}),
                                          ConsistentRead=True)
        return fields_of(RedemptionCode, from_item(reply["Item"])) if "Item" in reply else None

    def _balance(self, account_id: str) -> Balance:
        with storage_errors("read the balance"):
            reply = self._client.get_item(TableName=self._accounts, Key=to_item({"account_id": account_id}),
                                          ConsistentRead=True)
        return balance_of(from_item(reply.get("Item", {})))

    def _remove(self, hashes: list[str]) -> None:
        for code_hash in hashes:
            with storage_errors("take back the codes of a refused batch"):
                self._client.delete_item(TableName=self._codes, Key=to_item({"code_hash": code_hash}))


def _refusal(code: RedemptionCode | None, now_ms: int) -> RedeemResult | None:
    """Why the code cannot be redeemed at `now_ms`, or None if it can."""
    if code is None:
        return RedeemResult.UNKNOWN
    if code.status == "disabled":
        return RedeemResult.DISABLED
    if code.status == "used":
        return RedeemResult.USED
    if code.expires_at is not None and code.expires_at <= now_ms:
        return RedeemResult.EXPIRED
    return None
