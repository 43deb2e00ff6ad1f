"""Pages of an account's ledger with the balance after each entry, and the opaque cursors of pages.

A ledger page is read newest first. Its anchor is the account's net balance (what the
ledger sums to), which must be read in the same view as the entries:

    read the account (ledger_seq s1, net)
    query the newest `limit` entries
    read the account again (ledger_seq s2)
       ├── s1 == s2: no entry was written in between; net is the balance after the newest
       └── otherwise try again (at most ANCHOR_ATTEMPTS times, then the last reads are used)

Each line's balance after is the one before it less that line's amount. The next page's
cursor carries the last line's entry id and balance after; its query starts at that entry
(inclusive, for its amount), so no further read is needed.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from chalicelib.core.domain import Balance, LedgerEntry
from chalicelib.core.errors import InvalidRequest
from chalicelib.core.payments import LedgerLine, LedgerPage
from chalicelib.storage.dynamodb.common import from_item, storage_errors, to_item

ANCHOR_ATTEMPTS = 5


def balance_of(values: dict[str, Any]) -> Balance:
    """The balance of an account item (plain values); a missing account's is zero."""
    return Balance(values.get("available", 0), values.get("held", 0), values.get("status", "missing"),
                   values.get("shortfall", 0), frozen=values.get("frozen", 0), debt=values.get("debt", 0),
                   disputes=values.get("disputes", 0))


def encode_cursor(values: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str, fields: dict[str, type]) -> dict[str, Any]:
    """The cursor's values, each of the type named in `fields`; InvalidRequest if it is not a cursor."""
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error) as exc:
        raise InvalidRequest("The cursor is not one this listing gave.", param="cursor") from exc
    valid = isinstance(values, dict) and set(values) == set(fields) and all(
        type(values[name]) is kind for name, kind in fields.items())
    if not valid:
        raise InvalidRequest("The cursor is not one this listing gave.", param="cursor")
    return values


_LEDGER_CURSOR = {"entry_id": str, "balance_after": int}


def read_ledger_page(client: Any, *, accounts: str, ledger: str, account_id: str, limit: int,
                     cursor: str | None) -> LedgerPage:
    if limit < 1:
        raise InvalidRequest("The limit is at least 1.", param="limit")
    if cursor is None:
        entries, anchor = _first_page(client, accounts, ledger, account_id, limit)
    else:
        start = decode_cursor(cursor, _LEDGER_CURSOR)
        entries = _query(client, ledger, account_id, limit + 2, start["entry_id"])
        if not entries or entries[0].entry_id != start["entry_id"]:
            raise InvalidRequest("The cursor is not one this listing gave.", param="cursor")
        anchor = start["balance_after"] - entries[0].amount
        entries = entries[1:]
    lines: list[LedgerLine] = []
    after = anchor
    for entry in entries[:limit]:
        lines.append(LedgerLine(entry, after))
        after -= entry.amount
    more = len(entries) > limit
    next_cursor = encode_cursor({"entry_id": lines[-1].entry.entry_id,
                                 "balance_after": lines[-1].balance_after}) if more else None
    return LedgerPage(tuple(lines), next_cursor)


def _first_page(client: Any, accounts: str, ledger: str, account_id: str,
                limit: int) -> tuple[list[LedgerEntry], int]:
    before = _account(client, accounts, account_id)
    for _ in range(ANCHOR_ATTEMPTS):
        entries = _query(client, ledger, account_id, limit + 1, None)
        after = _account(client, accounts, account_id)
        if after.get("ledger_seq", 0) == before.get("ledger_seq", 0):
            break
        before = after
    return entries, balance_of(after).net


def _account(client: Any, accounts: str, account_id: str) -> dict[str, Any]:
    with storage_errors("read the wallet"):
        reply = client.get_item(TableName=accounts, Key=to_item({"account_id": account_id}), ConsistentRead=True)
    return from_item(reply.get("Item", {}))


def _query(client: Any, ledger: str, account_id: str, count: int, start: str | None) -> list[LedgerEntry]:
    """Up to `count` entries newest first, from the entry `start` (inclusive) if given."""
    request: dict[str, Any] = {
        "TableName": ledger, "ConsistentRead": True, "ScanIndexForward": False,
        "KeyConditionExpression": "account_id = :id",
        "ExpressionAttributeValues": {":id": {"S": account_id}},
    }
    if start is not None:
        request["KeyConditionExpression"] += " AND entry_id <= :start"
        request["ExpressionAttributeValues"][":start"] = {"S": start}
    entries: list[LedgerEntry] = []
    with storage_errors("read the ledger"):
        while len(entries) < count:
            reply = client.query(**request, Limit=count - len(entries))
            entries.extend(LedgerEntry(**from_item(item)) for item in reply.get("Items", []))
            if "LastEvaluatedKey" not in reply:
                break
            request["ExclusiveStartKey"] = reply["LastEvaluatedKey"]
    return entries
