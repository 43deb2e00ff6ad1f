"""Changing an order: decide from the order as read, write conditional on its version, and on a
lost race read it again and decide again. Every handler of a payment event goes through here,
so a repeated or racing delivery decides on the order as the first one left it."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from chalicelib.core.errors import Conflict, NotFound, StorageError
from chalicelib.core.payments import TopupOrder, WalletMove
from chalicelib.storage.ports import PaymentRepo

# What to write, or None: nothing (left as it is, e.g. done before).
Step = tuple[Mapping[str, object], WalletMove | None] | None

# Each retry follows another change of the order (or of the wallet a freeze reads).
_ATTEMPTS = 12


def change(payments: PaymentRepo, order: TopupOrder, decide: Callable[[TopupOrder], Step]) -> TopupOrder:
    """Apply what `decide` says to the order, deciding again on each fresh read; the order as left."""
    for _ in range(_ATTEMPTS):
        step = decide(order)
        if step is None:
            return order
        changes, move = step
        try:
            updated = payments.update(order, changes, move)
        except Conflict:
            updated = None  # the wallet moved between reading it and freezing: decide again
        if updated is not None:
            return updated
        fresh = payments.get_order(order.order_id)
        if fresh is None:
            raise NotFound(f"No top-up order `{order.order_id}`.", param="order_id")
        order = fresh
    raise StorageError(f"top-up order {order.order_id} kept changing; try again")
