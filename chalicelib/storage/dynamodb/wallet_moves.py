"""The account and ledger items of a money move, shared by the wallet, top-up orders and redemption codes.

An account item carries the wallet's counters: `available`, `held`, `shortfall`, and, once
used, `frozen`, `debt`, `disputes` (absent = 0) and `ledger_seq`, which every transaction
that writes a ledger entry moves on by one (ledger pages use it to see a quiet ledger).

A move's timeline (WalletMove), computed from the counters as last seen and written as
one transaction conditioned on exactly the counters the computation read:

    unfreeze u    frozen -= u; then u as a credit, without a ledger entry  (frozen >= u)
    entries       each one written to the ledger                            (its id is new)
                    credit x: pay = min(x, debt); debt -= pay; available += x - pay
                    debit x:  take = min(x, available); available -= take; debt += x - take
    freeze f      available -= f; frozen += f                              (available >= f)
    disputes d    disputes += d, never below zero
    ledger_seq += 1 when an entry is written
       │
       └── the account refused (a counter moved since it was seen): the refused item as it
           was comes back (ReturnValuesOnConditionCheckFailure), the move is computed again
           from it and retried after a short random pause, at most MAX_MOVE_ATTEMPTS times.

A pure credit (credit entries only) depends on `debt` alone, so it is first tried with no
read, assuming no debt (`debt` absent or 0); only an account that owes one costs a retry.
Any other move reads the account first (consistently).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chalicelib.core.errors import Conflict, InvalidRequest, NotFound, StorageError
from chalicelib.core.payments import WalletMove
from chalicelib.storage.dynamodb.common import (
    TransactionCancelled,
    TransactItem,
    from_item,
    storage_errors,
    to_item,
    transact,
)

# Each retry follows a change of the account's counters by another writer; a short random
# pause spreads writers racing on one wallet apart.
MAX_MOVE_ATTEMPTS = 12
_PAUSE_S = 0.002
COUNTERS = ("available", "frozen", "debt", "disputes")


@dataclass(frozen=True)
class Counters:
    """The counters a move is computed from, as seen on the account item."""

    available: int = 0
    frozen: int = 0
    debt: int = 0
    disputes: int = 0

    @classmethod
    def of(cls, item: dict[str, Any]) -> Counters:
        return cls(**{name: item.get(name, 0) for name in COUNTERS})


_NOTHING_SEEN = Counters()


@dataclass(frozen=True)
class Plan:
    """What a move adds to each counter, and which counters (as seen) that depended on."""

    adds: dict[str, int]
    read: frozenset[str]


def plan(move: WalletMove, seen: Counters) -> Plan:
    """The move's changes computed from `seen`; Conflict if it freezes or unfreezes more than there is."""
    available, frozen, debt = seen.available, seen.frozen, seen.debt
    read: set[str] = set()
    disputes = move.disputes
    if disputes < 0:
        # Closing disputes: the count never goes below zero.
        read.add("disputes")
        disputes = max(disputes, -seen.disputes)
    adds = {"disputes": disputes}

    def credit(amount: int) -> None:
        nonlocal available, debt
        read.add("debt")
        pay = min(amount, debt)
        debt -= pay
        available += amount - pay

    if move.unfreeze:
        read.add("frozen")
        if frozen < move.unfreeze:
            raise Conflict(f"Only {frozen} units are frozen; cannot unfreeze {move.unfreeze}.")
        frozen -= move.unfreeze
        credit(move.unfreeze)
    for entry in move.entries:
        if entry.amount >= 0:
            credit(entry.amount)
        else:
            read.add("available")
            take = min(-entry.amount, available)
            available -= take
            debt += -entry.amount - take
    if move.freeze:
        read.add("available")
        if available < move.freeze:
            raise Conflict(f"Only {available} units are available; cannot freeze {move.freeze}.")
        available -= move.freeze
        frozen += move.freeze
    adds.update(available=available - seen.available, frozen=frozen - seen.frozen, debt=debt - seen.debt)
    return Plan({name: value for name, value in adds.items() if value}, frozenset(read))


def needs_read(move: WalletMove) -> bool:
    """Whether the move depends on more than the debt (a pure credit assumes none at first)."""
    return bool(move.freeze or move.unfreeze or move.disputes < 0 or any(entry.amount < 0 for entry in move.entries))


def check_move(move: WalletMove) -> None:
    """A move of the wallet alone writes at least one entry (it stands for the move)."""
    if not move.entries:
        raise InvalidRequest("A wallet move writes at least one ledger entry.", param="entries")
    check_amounts(move)


def check_amounts(move: WalletMove) -> None:
    if move.freeze < 0 or move.unfreeze < 0:
        raise InvalidRequest("A move's freeze and unfreeze are not negative.")
    if len({entry.entry_id for entry in move.entries}) != len(move.entries):
        raise InvalidRequest("A move's entries have distinct ids.", param="entries")


def entry_role(index: int) -> str:
    return "entry" if index == 0 else f"entry{index}"


class MoveItems:
    """Builds the items of money moves on one pair of accounts and ledger tables."""

    def __init__(self, client: Any, *, accounts: str, ledger: str) -> None:
        self.client = client
        self.accounts = accounts
        self.ledger = ledger

    def account(self, account_id: str, *, adds: dict[str, int], seen: Counters = _NOTHING_SEEN,
                read: frozenset[str] = frozenset(), need: int = 0, shortfall: int = 0,
                entry_written: bool = False, active: bool = False, clear: bool = False,
                extra: tuple[str, dict[str, str], dict[str, Any]] | None = None) -> TransactItem:
        """The account's update: `adds` to its counters, conditioned on the counters in `read`
        still being as `seen`, on `need` being available, on the account being `active`, (`clear`)
        on no debt and no open dispute, and on the `extra` condition (text, names, values) given."""
        counters = {name: value for name, value in adds.items() if value} or {"available": 0}
        if shortfall:
            counters["shortfall"] = shortfall
        if entry_written:
            counters["ledger_seq"] = 1
        names = {f"#{name}": name for name in counters}
        values = {f":{name}": {"N": str(value)} for name, value in counters.items()}
        # Money moves only on an existing account: an update must not create one.
        conditions = ["attribute_exists(account_id)"]
        for name in sorted(read):
            # Invariant: no counter goes below zero and the ledger sums to the net balance:
            # a move computed from the counters it read lands only on those same counters.
            seen_value = getattr(seen, name)
            names[f"#{name}"] = name
            values[f":seen_{name}"] = {"N": str(seen_value)}
            clause = f"#{name} = :seen_{name}"
            conditions.append(f"(attribute_not_exists(#{name}) OR {clause})" if seen_value == 0 else clause)
        if need > 0:
            # Invariant: a balance never goes below zero.
            names["#available"] = "available"
            values[":need"] = {"N": str(need)}
            conditions.append("#available >= :need")
        if clear:
            # Invariant: nothing is held while a debt is owed or a dispute is open.
            names.update({"#debt": "debt", "#disputes": "disputes"})
            values[":zero"] = {"N": "0"}
            conditions.append("(attribute_not_exists(#debt) OR #debt = :zero)")
            conditions.append("(attribute_not_exists(#disputes) OR #disputes = :zero)")
        if active:
            names["#status"] = "status"
            values[":active"] = {"S": "active"}
            conditions.append("#status = :active")
        if extra is not None:
            condition, extra_names, extra_values = extra
            names.update(extra_names)
            values.update(extra_values)
            conditions.append(condition)
        # ADD treats an absent counter as 0: older accounts have no frozen, debt or disputes.
        return TransactItem("account", {"Update": {
            "TableName": self.accounts,
            "Key": to_item({"account_id": account_id}),
            "UpdateExpression": "ADD " + ", ".join(f"#{name} :{name}" for name in counters),
            "ConditionExpression": " AND ".join(conditions),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }})

    def entry(self, entry: Any, role: str = "entry") -> TransactItem:
        return TransactItem(role, {"Put": {
            "TableName": self.ledger,
            "Item": to_item(entry.__dict__),
            # Invariant: an entry is written once (its id comes from what it records).
            "ConditionExpression": "attribute_not_exists(entry_id)",
        }})

    def move(self, move: WalletMove, seen: Counters) -> list[TransactItem]:
        """The account and ledger items of `move` computed from `seen`; Conflict as `plan` says."""
        planned = plan(move, seen)
        items = [self.account(move.account_id, adds=planned.adds, seen=seen, read=planned.read,
                              entry_written=bool(move.entries))]
        items += [self.entry(entry, entry_role(index)) for index, entry in enumerate(move.entries)]
        return items

    def counters(self, account_id: str) -> Counters:
        """The account's counters, read consistently; NotFound if there is no account."""
        with storage_errors("read the wallet"):
            reply = self.client.get_item(TableName=self.accounts, Key=to_item({"account_id": account_id}),
                                         ConsistentRead=True)
        if "Item" not in reply:
            raise NotFound(f"No account `{account_id}`.", param="account_id")
        return Counters.of(from_item(reply["Item"]))

    def apply(self, move: WalletMove, others: list[TransactItem], *, action: str,
              sleep: Callable[[float], None] = time.sleep) -> None:
        """Write `others` and the move in one transaction, recomputing the move while only the
        account refuses it. TransactionCancelled if another item refused (the caller reads
        its roles); NotFound if there is no account; Conflict as `plan` says."""
        seen = self.counters(move.account_id) if needs_read(move) else Counters()
        for attempt in range(MAX_MOVE_ATTEMPTS):
            if attempt:
                sleep(random.uniform(0, _PAUSE_S * 2 ** min(attempt, 6)))  # noqa: S311 (not a secret)
            try:
                transact(self.client, [*others, *self.move(move, seen)], action=action, sleep=sleep)
                return
            except TransactionCancelled as exc:
                if set(exc.failed) != {"account"}:
                    raise
                refused = exc.failed["account"]
                if refused is None:
                    raise NotFound(f"No account `{move.account_id}`.", param="account_id") from exc
                seen = Counters.of(refused)
        raise StorageError(f"could not {action}: the wallet of {move.account_id} kept changing")
