"""Top-up orders, the payment events handled and the top-up settings on SQLite.

Where things live: `topup_orders` (one row per order, every TopupOrder field a column; indexed
by age, by account, by status and by payment intent), `payment_events` (one row per provider
event handled, deleted lazily once expired), `settings` (the `topup` row, JSON).

An order's timeline (every change one `BEGIN IMMEDIATE … COMMIT`):

    create_order()   row inserted, version 0                  (its id is new: else Conflict)
        │
        └── update(order, changes, move)   (repeated for each change: paid, refunded, disputed, …)
                     row: changes set, version += 1           (the stored version is order.version:
                                                               else None, nothing written)
                     apply_move(move) on the wallet           (see wallet_moves.py; NotFound, Conflict:
                                                               all rolled back; an entry id seen
                                                               before: the move was applied, so the
                                                               change is treated as a lost race: None)

Two deliveries of one payment event, or a webhook racing the customer's return, read the same
version: one update applies, the other gets None, reads the order again and finds it done.

A provider event's timeline:

    record_event()   expired rows deleted; row inserted        (its id is new: True, else False)
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Mapping

from chalicelib.core.errors import Conflict, NotFound
from chalicelib.core.payments import OrderPage, TopupOrder, TopupSettings, TopupTier, WalletMove
from chalicelib.storage.cursors import decode_cursor, encode_cursor, page_limit
from chalicelib.storage.ports import PaymentRepo
from chalicelib.storage.sqlite.database import Database, first
from chalicelib.storage.sqlite.wallet_moves import MoveRepeated, Refused, apply_move

_FIELDS = {field.name: field for field in dataclasses.fields(TopupOrder)}
_COLUMNS = ", ".join(_FIELDS)
# What identifies an order, and what only `update` itself moves on.
_FIXED = frozenset({"order_id", "version"})
_TOPUP_SETTING = "topup"


class SqlitePaymentRepo(PaymentRepo):
    def __init__(self, db: Database) -> None:
        self._db = db

    def create_order(self, order: TopupOrder) -> None:
        with self._db.write() as tx:
            # Invariant: an order id names one order.
            inserted = tx.execute(f"INSERT INTO topup_orders ({_COLUMNS}) VALUES ({', '.join('?' * len(_FIELDS))}) "
                                  "ON CONFLICT DO NOTHING", [getattr(order, name) for name in _FIELDS]).rowcount
            if not inserted:
                raise Conflict(f"Order `{order.order_id}` exists.")

    def get_order(self, order_id: str) -> TopupOrder | None:
        with self._db.read() as tx:
            return _order(tx, order_id)

    def order_by_payment(self, payment_intent: str) -> TopupOrder | None:
        with self._db.read() as tx:
            row = first(tx.execute(f"SELECT {_COLUMNS} FROM topup_orders WHERE payment_intent = ? "
                                   "ORDER BY created_at, order_id LIMIT 1", (payment_intent,)))
        return _from_row(row) if row else None

    def list_orders(self, *, account_id: str | None = None, status: str | None = None, limit: int = 50,
                    cursor: str | None = None) -> OrderPage:
        page_limit(limit)
        where, params = [], []
        if account_id is not None:
            where.append("account_id = ?")
            params.append(account_id)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if cursor is not None:
            position = decode_cursor(cursor, {"created_at": int, "order_id": str})
            where.append("(created_at, order_id) < (?, ?)")
            params += [position["created_at"], position["order_id"]]
        condition = f"WHERE {' AND '.join(where)} " if where else ""
        with self._db.read() as tx:
            rows = tx.execute(f"SELECT {_COLUMNS} FROM topup_orders {condition}"
                              "ORDER BY created_at DESC, order_id DESC LIMIT ?", (*params, limit + 1)).fetchall()
        orders = tuple(_from_row(row) for row in rows[:limit])
        more = len(rows) > limit
        return OrderPage(orders, encode_cursor({"created_at": orders[-1].created_at, "order_id": orders[-1].order_id})
                         if more else None)

    def update(self, order: TopupOrder, changes: Mapping[str, object], move: WalletMove | None = None,
               ) -> TopupOrder | None:
        unknown = set(changes) - (set(_FIELDS) - _FIXED)
        if unknown:
            raise ValueError(f"not fields an update can change: {sorted(unknown)}")
        required = sorted(name for name, value in changes.items()
                          if value is None and _FIELDS[name].default is dataclasses.MISSING)
        if required:
            raise ValueError(f"fields an order always has cannot be cleared: {required}")
        # A field cleared (None) goes back to its default: nothing for the optional ones, zero for counts.
        values = {name: _FIELDS[name].default if value is None else value for name, value in changes.items()}
        assignments = "".join(f"{name} = :{name}, " for name in values)
        try:
            with self._db.write() as tx:
                # Invariant: an order changes only from the version it was read at, so two
                # handlers of one payment never both apply their change (nor their move).
                updated = tx.execute(
                    f"UPDATE topup_orders SET {assignments}version = version + 1 "
                    "WHERE order_id = :order_id AND version = :version",
                    {**values, "order_id": order.order_id, "version": order.version}).rowcount
                if not updated:
                    if _order(tx, order.order_id) is None:
                        raise NotFound(f"No order `{order.order_id}`.", param="order_id")
                    raise Refused(None)
                if move is not None:
                    try:
                        apply_move(tx, move)
                    except MoveRepeated:
                        # Its entries are written: the move was applied with an earlier change.
                        raise Refused(None) from None
                return _order(tx, order.order_id)
        except Refused as refused:
            return refused.answer

    def record_event(self, event_id: str, event_type: str, received_at: int, expires_at: int) -> bool:
        with self._db.write() as tx:
            tx.execute("DELETE FROM payment_events WHERE expires_at <= ?", (received_at,))
            # Invariant: a provider event is acted on once.
            return bool(tx.execute("INSERT INTO payment_events (event_id, type, received_at, expires_at) "
                                   "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                                   (event_id, event_type, received_at, expires_at)).rowcount)

    def event_handled(self, event_id: str) -> bool:
        with self._db.read() as tx:
            return first(tx.execute("SELECT 1 FROM payment_events WHERE event_id = ?", (event_id,))) is not None

    def topup_settings(self) -> TopupSettings | None:
        with self._db.read() as tx:
            row = first(tx.execute("SELECT value FROM settings WHERE name = ?", (_TOPUP_SETTING,)))
        if row is None:
            return None
        value = json.loads(row["value"])
        return TopupSettings(tiers=tuple(TopupTier(tier["pay_cents"], tier["credit_units"]) for tier in value["tiers"]),
                             min_cents=value["min_cents"], max_cents=value["max_cents"])

    def put_topup_settings(self, settings: TopupSettings) -> None:
        value = {"tiers": [{"pay_cents": tier.pay_cents, "credit_units": tier.credit_units} for tier in settings.tiers],
                 "min_cents": settings.min_cents, "max_cents": settings.max_cents}
        with self._db.write() as tx:
            tx.execute("INSERT INTO settings (name, value) VALUES (?, ?) "
                       "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                       (_TOPUP_SETTING, json.dumps(value, separators=(",", ":"))))


def _order(tx: sqlite3.Connection, order_id: str) -> TopupOrder | None:
    row = first(tx.execute(f"SELECT {_COLUMNS} FROM topup_orders WHERE order_id = ?", (order_id,)))
    return _from_row(row) if row else None


def _from_row(row: sqlite3.Row) -> TopupOrder:
    return TopupOrder(**{**dict(row), "livemode": bool(row["livemode"])})
