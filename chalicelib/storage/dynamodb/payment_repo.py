"""Top-up orders, the wallet moves their payments make, handled provider events, and the top-up settings.

Where things live:
- `orders` table, key `order_id`: one item per TopupOrder (None fields absent), with GSIs
  `account-index` (account_id, created_at), `status-index` (status, created_at) and
  `payment-intent-index` (payment_intent). GSIs are eventually consistent: a listing or a
  lookup by payment may miss a change of the last moments, which every caller tolerates
  (an order found by payment is changed only through `update`, conditional on its version).
  A listing with neither account nor status scans the table and sorts in memory: it is the
  operator's, and orders are few next to ledger entries;
- `payment-events` table, key `event_id`: one item per handled provider event, removed by
  TTL once `expires_at_s` (epoch seconds) has passed;
- the top-up settings: one item of the `catalog` table, kind "setting", name "topup"
  (the catalog's load() reads only channels, models and groups).

An order's timeline (OrderStatus has the states); every step is one `update`:

    create_order()     order put                                  (its id is new)
       │
    update(order, changes, move)
                       order: changes set (None removes), version += 1
                                                                  (version as the caller read it)
                       wallet: the move (see wallet_moves.py)     (counters as computed from;
                                                                   each entry id new)
       ├── the version moved on, or an entry of the move exists: nothing written, None
       │   (another delivery of the same event, or the webhook and the customer's return
       │   racing, applied it first; the caller reads the order again)
       └── the account's counters moved: the move is recomputed and the transaction retried
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

from chalicelib.core.errors import InvalidRequest, NotFound
from chalicelib.core.payments import OrderPage, TopupOrder, TopupSettings, TopupTier, WalletMove
from chalicelib.storage.dynamodb.common import (
    ConditionFailed,
    TransactionCancelled,
    TransactItem,
    fields_of,
    from_item,
    put_new,
    read_all,
    storage_errors,
    to_item,
    transact,
)
from chalicelib.storage.dynamodb.pages import decode_cursor, encode_cursor
from chalicelib.storage.dynamodb.wallet_moves import MoveItems, check_amounts
from chalicelib.storage.ports import PaymentRepo

_FIELDS = {field.name: field for field in dataclasses.fields(TopupOrder)}
_CHANGEABLE = set(_FIELDS) - {"order_id", "version"}
_ORDER_CURSOR = {"created_at": int, "order_id": str}
_SETTING = {"kind": "setting", "name": "topup"}


class DynamoPaymentRepo(PaymentRepo):
    def __init__(self, client: Any, *, orders: str, events: str, catalog: str, accounts: str, ledger: str,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client
        self._orders = orders
        self._events = events
        self._catalog = catalog
        self._moves = MoveItems(client, accounts=accounts, ledger=ledger)
        self._sleep = sleep

    def create_order(self, order: TopupOrder) -> None:
        # Invariant: an order is created once; its payment is applied through its versions.
        put_new(self._client, self._orders, dataclasses.asdict(order), "order_id",
                f"Order `{order.order_id}` exists.")

    def get_order(self, order_id: str) -> TopupOrder | None:
        with storage_errors("read the order"):
            reply = self._client.get_item(TableName=self._orders, Key=to_item({"order_id": order_id}),
                                          ConsistentRead=True)
        return fields_of(TopupOrder, from_item(reply["Item"])) if "Item" in reply else None

    def order_by_payment(self, payment_intent: str) -> TopupOrder | None:
        items = read_all(self._client.query, "find the order of a payment", TableName=self._orders,
                         IndexName="payment-intent-index", KeyConditionExpression="payment_intent = :pi",
                         ExpressionAttributeValues={":pi": {"S": payment_intent}})
        return fields_of(TopupOrder, items[0]) if items else None

    def list_orders(self, *, account_id: str | None = None, status: str | None = None, limit: int = 50,
                    cursor: str | None = None) -> OrderPage:
        if limit < 1:
            raise InvalidRequest("The limit is at least 1.", param="limit")
        after = decode_cursor(cursor, _ORDER_CURSOR) if cursor is not None else None
        below = (after["created_at"], after["order_id"]) if after else None
        if account_id is None and status is None:
            found = read_all(self._client.scan, "list the orders", TableName=self._orders, ConsistentRead=True)
            rows = [row for row in found if below is None or _order_key(row) < below]
        else:
            rows = self._query_listing(account_id, status, limit, below)
        rows.sort(key=_order_key, reverse=True)
        orders = tuple(fields_of(TopupOrder, row) for row in rows[:limit])
        more = len(rows) > limit
        next_cursor = encode_cursor({"created_at": orders[-1].created_at, "order_id": orders[-1].order_id}) \
            if more else None
        return OrderPage(orders, next_cursor)

    def update(self, order: TopupOrder, changes: Mapping[str, object], move: WalletMove | None = None,
               ) -> TopupOrder | None:
        unknown = set(changes) - _CHANGEABLE
        if unknown:
            raise ValueError(f"not fields of an order: {sorted(unknown)}")
        item = self._order_update(order, changes)
        try:
            if move is None:
                transact(self._client, [item], action="update the order", sleep=self._sleep)
            else:
                check_amounts(move)
                self._moves.apply(move, [item], action="update the order", sleep=self._sleep)
        except TransactionCancelled as exc:
            if "order" in exc:
                if exc.failed["order"] is None:
                    raise NotFound(f"No order `{order.order_id}`.", param="order_id") from exc
                return None  # its version moved on
            if "account" in exc and exc.failed["account"] is None:
                raise NotFound(f"No account `{move.account_id if move else order.account_id}`.",
                               param="account_id") from exc
            # An entry of the move exists: it was applied with a version since moved on.
            return None
        values = {name: _FIELDS[name].default if value is None else value for name, value in changes.items()}
        return dataclasses.replace(order, **values, version=order.version + 1)  # type: ignore[arg-type]

    def record_event(self, event_id: str, event_type: str, received_at: int, expires_at: int) -> bool:
        try:
            with storage_errors("record the payment event"):
                self._client.put_item(
                    TableName=self._events,
                    Item=to_item({"event_id": event_id, "type": event_type, "received_at": received_at,
                                  "expires_at": expires_at, "expires_at_s": expires_at // 1000}),
                    # Invariant: a payment event is acted on once, however often it is delivered.
                    ConditionExpression="attribute_not_exists(event_id)",
                )
        except ConditionFailed:
            return False
        return True

    def event_handled(self, event_id: str) -> bool:
        with storage_errors("read the payment event"):
            reply = self._client.get_item(TableName=self._events, Key=to_item({"event_id": event_id}),
                                          ConsistentRead=True)
        return "Item" in reply

    def topup_settings(self) -> TopupSettings | None:
        with storage_errors("read the top-up settings"):
            reply = self._client.get_item(TableName=self._catalog, Key=to_item(_SETTING), ConsistentRead=True)
        if "Item" not in reply:
            return None
        values = from_item(reply["Item"])
        return TopupSettings(tiers=tuple(TopupTier(**tier) for tier in values["tiers"]),
                             min_cents=values["min_cents"], max_cents=values["max_cents"])

    def put_topup_settings(self, settings: TopupSettings) -> None:
        tiers = [dataclasses.asdict(tier) for tier in settings.tiers]
        with storage_errors("store the top-up settings"):
            self._client.put_item(TableName=self._catalog, Item=to_item({
                **_SETTING, "tiers": tiers, "min_cents": settings.min_cents, "max_cents": settings.max_cents}))

    def _order_update(self, order: TopupOrder, changes: Mapping[str, object]) -> TransactItem:
        names = {"#version": "version"}
        values = {":seen": {"N": str(order.version)}, ":next": {"N": str(order.version + 1)}}
        sets = ["#version = :next"]
        removes = []
        for index, (name, value) in enumerate(sorted(changes.items())):
            names[f"#f{index}"] = name
            if value is None:
                removes.append(f"#f{index}")
            else:
                values[f":f{index}"] = to_item({"value": value})["value"]
                sets.append(f"#f{index} = :f{index}")
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        return TransactItem("order", {"Update": {
            "TableName": self._orders,
            "Key": to_item({"order_id": order.order_id}),
            "UpdateExpression": expression,
            # Invariant: a payment, a refund, a dispute is applied once: each change of an
            # order is made from the version it read, and moves the version on.
            "ConditionExpression": "attribute_exists(order_id) AND #version = :seen",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }})

    def _query_listing(self, account_id: str | None, status: str | None, limit: int,
                       below: tuple[int, str] | None) -> list[dict[str, Any]]:
        """The newest orders of an account and/or status below the cursor: at least `limit` + 1 if
        there are, and every order created at the same moment as the last of those (the index
        orders by created_at alone, so ties are sorted in memory)."""
        index, key, value = ("account-index", "account_id", account_id) if account_id is not None \
            else ("status-index", "status", status)
        request: dict[str, Any] = {
            "TableName": self._orders, "IndexName": index, "ScanIndexForward": False,
            "KeyConditionExpression": "#key = :key", "ExpressionAttributeNames": {"#key": key},
            "ExpressionAttributeValues": {":key": {"S": value}}, "Limit": limit + 1,
        }
        if below is not None:
            request["KeyConditionExpression"] += " AND created_at <= :below"
            request["ExpressionAttributeValues"][":below"] = {"N": str(below[0])}
        if account_id is not None and status is not None:
            request["FilterExpression"] = "#status = :status"
            request["ExpressionAttributeNames"]["#status"] = "status"
            request["ExpressionAttributeValues"][":status"] = {"S": status}
        rows: list[dict[str, Any]] = []
        with storage_errors("list the orders"):
            while True:
                reply = self._client.query(**request)
                page = [from_item(item) for item in reply.get("Items", [])]
                rows.extend(row for row in page if below is None or _order_key(row) < below)
                # Enough once the created_at of the (limit+1)-th is passed: its ties are all in.
                if len(rows) > limit and rows[-1]["created_at"] < rows[limit]["created_at"]:
                    break
                if "LastEvaluatedKey" not in reply:
                    break
                request["ExclusiveStartKey"] = reply["LastEvaluatedKey"]
        return rows


def _order_key(row: dict[str, Any]) -> tuple[int, str]:
    return row["created_at"], row["order_id"]
