"""Request limit counters on DynamoDB: table `limits`, key `counter_id`; TTL on `expires_at_s`.

    item                         attributes
    <scope>#<epoch minute>       requests, tokens, expires_at_s (a minute after the window ends)
    <scope>                      inflight (never expires)
    lease#<request id>           scopes, lease_expires_at_s (not the TTL attribute: a lease
                                 removed by TTL would never give its slots back)

    admit   one TransactWriteItems: per scope, the window Update (ADD requests 1, tokens estimate;
            conditions: requests + 1 <= rpm, tokens + estimate <= tpm) and the in-flight Update (ADD
            inflight 1; condition: inflight + 1 <= concurrency), and the lease Put (it is new).
            Cancelled → nothing written; the failed item as it was says which limit refused.
            Admitted → one GetItem of the first scope's window, for the response's headers.
    finish  one TransactWriteItems: the lease Delete (condition: it exists, so the slots go back
            once), each in-flight Update (ADD -1), each token correction (ADD, unconditional).
    expired_leases   a Scan of the lease items past their expiry (the sweeper's, once a minute).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from chalicelib.storage.dynamodb.common import (
    TransactionCancelled,
    TransactItem,
    from_item,
    read_all,
    storage_errors,
    to_item,
    transact,
)
from chalicelib.storage.ports import Admission, Lease, LimitCharge, LimitRepo, ScopeCount

WINDOW_S = 60
_LEASE = "lease#"


class DynamoLimitRepo(LimitRepo):
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def admit(self, request_id: str, charges: list[LimitCharge], lease_expires_at_s: int, *,
              now_s: int) -> Admission:
        minute = now_s // WINDOW_S
        reset_s = (minute + 1) * WINDOW_S - now_s
        items: list[TransactItem] = []
        for index, charge in enumerate(charges):
            window_id = f"{charge.scope}#{minute}"
            # An estimate beyond the limit itself never fits, whatever the window holds.
            if charge.rpm is not None and charge.rpm < 1:
                return Admission(False, self._counts(charges[:1], minute, reset_s), charge.scope, "rpm", reset_s)
            if charge.tpm is not None and charge.tokens > charge.tpm:
                return Admission(False, self._counts(charges[:1], minute, reset_s), charge.scope, "tpm", reset_s)
            conditions, values = [], {":one": 1, ":tokens": charge.tokens, ":expires": _window_expiry(window_id)}
            # Invariant: a window's requests <= rpm.
            if charge.rpm is not None:
                conditions.append("(attribute_not_exists(requests) OR requests <= :rpm_left)")
                values[":rpm_left"] = charge.rpm - 1
            # Invariant: a window's tokens <= tpm (corrections aside, which are counted as they come).
            if charge.tpm is not None:
                conditions.append("(attribute_not_exists(tokens) OR tokens <= :tpm_left)")
                values[":tpm_left"] = charge.tpm - charge.tokens
            window: dict[str, Any] = {
                "TableName": self._table, "Key": to_item({"counter_id": window_id}),
                "UpdateExpression": "ADD requests :one, tokens :tokens SET expires_at_s = :expires",
                "ExpressionAttributeValues": to_item(values),
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
            if conditions:
                window["ConditionExpression"] = " AND ".join(conditions)
            items.append(TransactItem(f"window{index}", {"Update": window}))
            inflight: dict[str, Any] = {
                "TableName": self._table, "Key": to_item({"counter_id": charge.scope}),
                "UpdateExpression": "ADD inflight :one", "ExpressionAttributeValues": to_item({":one": 1}),
            }
            if charge.concurrency is not None:
                # Invariant: a scope's requests in flight <= concurrency.
                inflight["ConditionExpression"] = "attribute_not_exists(inflight) OR inflight < :concurrency"
                inflight["ExpressionAttributeValues"] = to_item({":one": 1, ":concurrency": charge.concurrency})
            items.append(TransactItem(f"inflight{index}", {"Update": inflight}))
        items.append(TransactItem("lease", {"Put": {
            "TableName": self._table,
            "Item": to_item({"counter_id": _LEASE + request_id, "scopes": [c.scope for c in charges],
                             "lease_expires_at_s": lease_expires_at_s}),
            # Invariant: a request holds its slots once.
            "ConditionExpression": "attribute_not_exists(counter_id)",
        }}))
        try:
            transact(self._client, items, action="count the request against its limits")
        except TransactionCancelled as cancelled:
            refusal = _refusal(charges, cancelled, minute, reset_s)
            if refusal.counts:
                return refusal
            # Refused by another item than the first window: read that window for the headers.
            return replace(refusal, counts=self._counts(charges[:1], minute, reset_s))
        return Admission(True, self._counts(charges[:1], minute, reset_s))

    def _counts(self, charges: list[LimitCharge], minute: int, reset_s: int) -> tuple[ScopeCount, ...]:
        counts = []
        for charge in charges:
            window_id = f"{charge.scope}#{minute}"
            with storage_errors("read the limit window"):
                reply = self._client.get_item(TableName=self._table, Key=to_item({"counter_id": window_id}),
                                              ConsistentRead=True)
            values = from_item(reply.get("Item") or {})
            counts.append(ScopeCount(charge.scope, window_id, values.get("requests", 0), values.get("tokens", 0),
                                     0, reset_s))
        return tuple(counts)

    def finish(self, request_id: str, token_corrections: list[tuple[str, int]]) -> bool:
        with storage_errors("read the lease"):
            reply = self._client.get_item(TableName=self._table, Key=to_item({"counter_id": _LEASE + request_id}),
                                          ConsistentRead=True)
        if "Item" not in reply:
            return False
        scopes = from_item(reply["Item"]).get("scopes", [])
        items = [TransactItem("lease", {"Delete": {
            "TableName": self._table, "Key": to_item({"counter_id": _LEASE + request_id}),
            # Invariant: the slots go back once: only the transaction that deletes the lease gives them.
            "ConditionExpression": "attribute_exists(counter_id)",
        }})]
        items += [TransactItem(f"inflight{index}", {"Update": {
            "TableName": self._table, "Key": to_item({"counter_id": scope}),
            "UpdateExpression": "ADD inflight :minus_one", "ExpressionAttributeValues": to_item({":minus_one": -1}),
        }}) for index, scope in enumerate(scopes)]
        # A correction is unconditional: the tokens were used, whatever the limit. A window the TTL removed
        # meanwhile comes back with its expiry, so that it is removed again.
        items += [TransactItem(f"tokens{index}", {"Update": {
            "TableName": self._table, "Key": to_item({"counter_id": window_id}),
            "UpdateExpression": "ADD tokens :delta SET expires_at_s = if_not_exists(expires_at_s, :expires)",
            "ExpressionAttributeValues": to_item({":delta": delta, ":expires": _window_expiry(window_id)}),
        }}) for index, (window_id, delta) in enumerate(token_corrections) if delta]
        try:
            transact(self._client, items, action="give the request's slots back")
        except TransactionCancelled:
            return False  # another finish (the sweeper's, or a retry) gave them back first
        return True

    def expired_leases(self, now_s: int) -> list[Lease]:
        items = read_all(self._client.scan, "list the expired leases", TableName=self._table,
                         FilterExpression="begins_with(counter_id, :lease) AND lease_expires_at_s <= :now",
                         ExpressionAttributeValues=to_item({":lease": _LEASE, ":now": now_s}), ConsistentRead=True)
        leases = items  # read_all gives plain values
        return sorted((Lease(v["counter_id"][len(_LEASE):], tuple(v.get("scopes", [])), v["lease_expires_at_s"])
                       for v in leases), key=lambda lease: lease.expires_at_s)


def _refusal(charges: list[LimitCharge], cancelled: TransactionCancelled, minute: int, reset_s: int) -> Admission:
    """Which limit refused, from the failed items as they were."""
    for index, charge in enumerate(charges):
        if f"window{index}" in cancelled:
            was = cancelled.failed[f"window{index}"] or {}
            limit = "rpm" if charge.rpm is not None and was.get("requests", 0) + 1 > charge.rpm else "tpm"
            count = ScopeCount(charge.scope, f"{charge.scope}#{minute}", was.get("requests", 0),
                               was.get("tokens", 0), 0, reset_s)
            return Admission(False, (count,), charge.scope, limit, reset_s)
        if f"inflight{index}" in cancelled:
            return Admission(False, (), charge.scope, "concurrency", 1)
    return Admission(False, (), None, "duplicate", 1)  # the lease exists: the request was admitted already


def _window_expiry(window_id: str) -> int:
    """When a window's item may go (epoch s): a minute after the window ends."""
    return (int(window_id.rsplit("#", 1)[1]) + 2) * WINDOW_S
