"""Top-up orders, payment events and top-up settings against both implementations: orders listed
newest first in pages, changes conditional on the version read (raced on real threads), wallet
moves applied with them in one transaction, events recorded once. After every case each ledger
sums to Balance.net."""

from __future__ import annotations

import base64
import dataclasses

import pytest

from chalicelib.core.domain import LedgerKind
from chalicelib.core.errors import Conflict, InvalidRequest, NotFound
from chalicelib.core.payments import CENT_UNITS, OrderStatus, TopupOrder, TopupSettings, TopupTier, WalletMove
from tests.contract.money import assert_ledger_matches_balances, entry, open_accounts, race


@pytest.fixture
def payments(repos):
    open_accounts(repos)
    yield repos
    assert_ledger_matches_balances(repos)


def order(order_id: str = "ord_1", *, account_id: str = "acct_1", created_at: int = 1_000,
          status: str = OrderStatus.PENDING, **fields) -> TopupOrder:
    return TopupOrder(order_id=order_id, account_id=account_id, status=status, pay_cents=2_000,
                      credit_units=2_100 * CENT_UNITS, bonus_units=100 * CENT_UNITS, created_at=created_at,
                      updated_at=created_at, **fields)


def paid_move(o: TopupOrder, **changes) -> WalletMove:
    return WalletMove(o.account_id, entries=(
        entry(f"topup#{o.order_id}", o.pay_cents * CENT_UNITS, at=5_000, kind=LedgerKind.TOPUP,
              account_id=o.account_id),
        entry(f"bonus#{o.order_id}", o.bonus_units, at=5_000, kind=LedgerKind.BONUS, account_id=o.account_id),
    ), **changes)


# Orders.

def test_an_order_is_stored_once_and_read_back_as_it_was(payments):
    made = order(session_id="cs_1", checkout_url="https://pay.example/cs_1", expires_at=9_000, livemode=True,
                 note="first")
    payments.payments.create_order(made)
    assert payments.payments.get_order("ord_1") == made
    with pytest.raises(Conflict):
        payments.payments.create_order(dataclasses.replace(made, note="another"))
    assert payments.payments.get_order("ord_1") == made
    assert payments.payments.get_order("ord_9") is None


def all_pages(repos, limit: int, **filters) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        page = repos.payments.list_orders(limit=limit, cursor=cursor, **filters)
        pages.append([o.order_id for o in page.orders])
        if page.cursor is None:
            return pages
        cursor = page.cursor


@pytest.fixture
def listed(payments):
    made = [order("ord_a", created_at=1_000), order("ord_b", account_id="acct_2", created_at=2_000),
            order("ord_c", created_at=3_000, status=OrderStatus.PAID),
            order("ord_d", created_at=3_000, status=OrderStatus.EXPIRED),
            order("ord_e", account_id="acct_2", created_at=4_000, status=OrderStatus.PAID),
            order("ord_f", created_at=5_000)]
    for o in made:
        payments.payments.create_order(o)
    return payments


def test_orders_are_listed_newest_first_in_pages(listed):
    assert all_pages(listed, 2) == [["ord_f", "ord_e"], ["ord_d", "ord_c"], ["ord_b", "ord_a"]]
    assert all_pages(listed, 4) == [["ord_f", "ord_e", "ord_d", "ord_c"], ["ord_b", "ord_a"]]
    assert all_pages(listed, 50) == [["ord_f", "ord_e", "ord_d", "ord_c", "ord_b", "ord_a"]]
    assert listed.payments.list_orders(limit=2).orders[0] == order("ord_f", created_at=5_000)


def test_orders_are_listed_by_account_by_status_or_both(listed):
    assert all_pages(listed, 2, account_id="acct_1") == [["ord_f", "ord_d"], ["ord_c", "ord_a"]]
    assert all_pages(listed, 1, status=OrderStatus.PAID) == [["ord_e"], ["ord_c"]]
    assert all_pages(listed, 5, account_id="acct_2", status=OrderStatus.PAID) == [["ord_e"]]
    assert all_pages(listed, 5, account_id="acct_9") == [[]]
    assert all_pages(listed, 5, status=OrderStatus.REFUNDED) == [[]]


@pytest.mark.parametrize("cursor", ["not a cursor", base64.urlsafe_b64encode(b'{"created_at": "x"}').decode(),
                                    base64.urlsafe_b64encode(b"[]").decode()])
def test_a_cursor_that_is_not_one_is_an_invalid_request_about_the_cursor(listed, cursor):
    with pytest.raises(InvalidRequest) as refused:
        listed.payments.list_orders(limit=2, cursor=cursor)
    assert refused.value.param == "cursor"


def test_an_order_is_found_by_the_payment_that_paid_it(payments):
    payments.payments.create_order(order())
    assert payments.payments.order_by_payment("pi_1") is None
    paid = payments.payments.update(order(), {"status": OrderStatus.PAID, "payment_intent": "pi_1", "paid_at": 5_000})
    assert payments.payments.order_by_payment("pi_1") == paid
    assert payments.payments.order_by_payment("pi_2") is None


# Changes, conditional on the version read.

def test_an_update_sets_the_changes_and_moves_the_version_on(payments):
    made = order(session_id="cs_1", note="first")
    payments.payments.create_order(made)
    changed = payments.payments.update(made, {"status": OrderStatus.EXPIRED, "note": None})
    assert changed == dataclasses.replace(made, status=OrderStatus.EXPIRED, note=None, version=1)
    assert changed.updated_at == 1_000  # untouched unless changed
    assert payments.payments.get_order("ord_1") == changed
    again = payments.payments.update(changed, {"updated_at": 7_000, "review_reason": "amount"})
    assert (again.version, again.updated_at, again.review_reason) == (2, 7_000, "amount")


def test_an_update_from_a_version_moved_on_writes_nothing(payments):
    payments.payments.create_order(order())
    payments.payments.update(order(), {"note": "one"})
    assert payments.payments.update(order(), {"status": OrderStatus.PAID}, paid_move(order())) is None
    assert payments.payments.get_order("ord_1") == order(note="one", version=1)
    assert payments.wallets.ledger("acct_1") == []


def test_an_update_names_only_an_orders_fields_and_a_stored_order(payments):
    payments.payments.create_order(order())
    with pytest.raises(ValueError):
        payments.payments.update(order(), {"colour": "red"})
    with pytest.raises(ValueError):
        payments.payments.update(order(), {"version": 5})
    with pytest.raises(NotFound):
        payments.payments.update(order("ord_9"), {"note": "x"})
    assert payments.payments.get_order("ord_1") == order()


def test_twenty_updates_of_one_version_apply_once_and_move_the_wallet_once(payments):
    payments.payments.create_order(order())
    results = race(20, lambda n: payments.payments.update(
        order(), {"status": OrderStatus.PAID, "paid_at": 5_000 + n}, paid_move(order())))
    applied = [result for result in results if result is not None]
    assert len(applied) == 1 and applied[0].version == 1
    assert payments.payments.get_order("ord_1") == applied[0]
    assert payments.wallets.balance("acct_1").available == 2_100 * CENT_UNITS
    assert len(payments.wallets.ledger("acct_1")) == 2


def test_an_update_with_a_move_applies_both_in_one_transaction(payments):
    payments.payments.create_order(order())
    paid = payments.payments.update(order(), {"status": OrderStatus.PAID}, paid_move(order()))
    disputed = payments.payments.update(
        paid, {"status": OrderStatus.DISPUTED, "dispute_id": "dp_1", "frozen_units": 2_100 * CENT_UNITS},
        WalletMove("acct_1", freeze=2_100 * CENT_UNITS, disputes=1))
    assert disputed.version == 2
    b = payments.wallets.balance("acct_1")
    assert (b.available, b.frozen, b.disputes) == (0, 2_100 * CENT_UNITS, 1)
    lost = payments.payments.update(
        disputed, {"status": OrderStatus.REFUNDED, "dispute_status": "lost", "frozen_units": 0},
        WalletMove("acct_1", entries=(entry("dispute#ord_1", -2_100 * CENT_UNITS, at=6_000, kind=LedgerKind.DISPUTE),),
                   unfreeze=2_100 * CENT_UNITS, disputes=-1))
    assert (lost.status, lost.frozen_units, lost.version) == (OrderStatus.REFUNDED, 0, 3)
    b = payments.wallets.balance("acct_1")
    assert (b.available, b.frozen, b.debt, b.disputes, b.net) == (0, 0, 0, 0, 0)


def test_a_move_applied_before_makes_the_update_a_lost_race(payments):
    payments.payments.create_order(order())
    payments.payments.create_order(order("ord_2"))
    payments.payments.update(order(), {"status": OrderStatus.PAID}, paid_move(order()))
    # Another order's change carrying the same entries: they were written, so nothing is.
    assert payments.payments.update(order("ord_2"), {"status": OrderStatus.PAID}, paid_move(order())) is None
    assert payments.payments.get_order("ord_2") == order("ord_2")
    assert payments.wallets.balance("acct_1").available == 2_100 * CENT_UNITS


def test_an_update_whose_move_is_refused_writes_nothing(payments):
    payments.payments.create_order(order())
    with pytest.raises(Conflict):
        payments.payments.update(order(), {"status": OrderStatus.DISPUTED}, WalletMove("acct_1", freeze=1))
    with pytest.raises(Conflict):
        payments.payments.update(order(), {"status": OrderStatus.PAID}, paid_move(order(), unfreeze=1))
    payments.payments.create_order(order("ord_x", account_id="acct_9"))
    with pytest.raises(NotFound):
        payments.payments.update(order("ord_x", account_id="acct_9"), {"status": OrderStatus.PAID},
                                 paid_move(order("ord_x", account_id="acct_9")))
    assert payments.payments.get_order("ord_1") == order()
    assert payments.payments.get_order("ord_x") == order("ord_x", account_id="acct_9")
    assert payments.wallets.ledger("acct_1") == [] and payments.wallets.ledger("acct_9") == []
    assert payments.wallets.balance("acct_1").frozen == 0


# Provider events.

def test_an_event_is_recorded_once_by_twenty_racing_threads(payments):
    assert not payments.payments.event_handled("evt_1")
    results = race(20, lambda n: payments.payments.record_event("evt_1", "checkout.session.completed", 1_000 + n,
                                                                 90_000))
    assert results.count(True) == 1 and results.count(False) == 19
    assert payments.payments.event_handled("evt_1")
    assert not payments.payments.event_handled("evt_2")
    assert payments.payments.record_event("evt_2", "charge.refunded", 2_000, 90_000)
    assert not payments.payments.record_event("evt_2", "charge.refunded", 3_000, 90_000)


# Top-up settings.

def test_topup_settings_are_none_until_set_and_read_back_as_put(payments):
    assert payments.payments.topup_settings() is None
    first = TopupSettings(tiers=(TopupTier(1_000, 1_000 * CENT_UNITS), TopupTier(5_000, 5_250 * CENT_UNITS)),
                          min_cents=700, max_cents=200_000)
    payments.payments.put_topup_settings(first)
    assert payments.payments.topup_settings() == first
    second = TopupSettings(tiers=())
    payments.payments.put_topup_settings(second)
    assert payments.payments.topup_settings() == second
