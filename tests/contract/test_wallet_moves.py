"""Wallet moves against both implementations: credits pay debt first, debits beyond the balance
become debt, frozen credit, open disputes, holds refused while in debt or disputed, claims, and
the ledger read in pages with the balance after each entry. After every case each ledger sums
to Balance.net."""

from __future__ import annotations

import base64
import json

import pytest

from chalicelib.core.domain import ApiKey, Hold, HoldResult, LedgerKind
from chalicelib.core.errors import Conflict, InvalidRequest, NotFound
from chalicelib.core.payments import WalletMove
from tests.contract.money import assert_ledger_matches_balances, entry, open_accounts, race

KEY = ApiKey(key_id="key_1", key_hash="k" * 64, account_id="acct_1", name="Production", created_at=2,
             hint="sk-abc…wxyz")


@pytest.fixture
def wallet(repos):
    open_accounts(repos)
    yield repos
    assert_ledger_matches_balances(repos)


def move(*entries, **changes) -> WalletMove:
    return WalletMove(account_id="acct_1", entries=entries, **changes)


def counters(repos, account_id: str = "acct_1") -> tuple[int, int, int, int]:
    b = repos.wallets.balance(account_id)
    return b.available, b.frozen, b.debt, b.disputes


def hold(request_id: str, amount: int = 100) -> Hold:
    return Hold(request_id=request_id, account_id="acct_1", key_hash=KEY.key_hash, amount=amount, created_at=1_000,
                expires_at=11_000)


# Debt: what debits could not take, paid first by the next credits.

def test_a_debit_takes_what_is_available_and_the_rest_becomes_debt(wallet):
    wallet.wallets.credit(entry("topup", 100, at=1))
    done = wallet.wallets.move(move(entry("refund", -250, at=2, kind=LedgerKind.REFUND)))
    assert done.applied and done.entry == entry("refund", -250, at=2, kind=LedgerKind.REFUND)
    assert counters(wallet) == (0, 0, 150, 0)
    assert done.balance == wallet.wallets.balance("acct_1") and done.balance.net == -150


def test_a_credit_pays_the_debt_first_and_the_rest_becomes_available(wallet):
    wallet.wallets.move(move(entry("refund", -300, at=1, kind=LedgerKind.REFUND)))
    credited = wallet.wallets.credit(entry("topup", 500, at=2, kind=LedgerKind.TOPUP))
    assert credited.applied
    assert counters(wallet) == (200, 0, 0, 0)
    # The ledger keeps the credit's full amount.
    assert [e.amount for e in wallet.wallets.ledger("acct_1")] == [-300, 500]


def test_a_credit_smaller_than_the_debt_only_lowers_it(wallet):
    wallet.wallets.move(move(entry("refund", -300, at=1, kind=LedgerKind.REFUND)))
    wallet.wallets.credit(entry("topup", 120, at=2))
    assert counters(wallet) == (0, 0, 180, 0)
    wallet.wallets.move(move(entry("bonus", 200, at=3, kind=LedgerKind.BONUS)))
    assert counters(wallet) == (20, 0, 0, 0)


def test_a_moves_entries_apply_in_order_each_credit_paying_debt_first(wallet):
    wallet.wallets.credit(entry("topup", 50, at=1))
    wallet.wallets.move(move(entry("a", -80, at=2), entry("b", 100, at=3), entry("c", -90, at=4)))
    # -80: available 0, debt 30; +100: debt 0, available 70; -90: available 0, debt 20.
    assert counters(wallet) == (0, 0, 20, 0)


# Frozen credit.

def test_freezing_sets_available_credit_aside_and_unfreezing_gives_it_back(wallet):
    wallet.wallets.move(move(entry("topup", 1_000, at=1, kind=LedgerKind.TOPUP), freeze=400))
    assert counters(wallet) == (600, 400, 0, 0)
    wallet.wallets.move(move(entry("won", 0, at=3), unfreeze=400))
    assert counters(wallet) == (1_000, 0, 0, 0)
    # Freezing and unfreezing write nothing of their own to the ledger.
    assert sum(e.amount for e in wallet.wallets.ledger("acct_1")) == 1_000


def test_freezing_more_than_is_available_is_a_conflict_and_writes_nothing(wallet):
    wallet.wallets.credit(entry("topup", 300, at=1))
    with pytest.raises(Conflict):
        wallet.wallets.move(move(entry("more", 100, at=2), freeze=401))
    assert counters(wallet) == (300, 0, 0, 0)
    assert [e.entry_id for e in wallet.wallets.ledger("acct_1")] == [entry("topup", 300, at=1).entry_id]
    # The entries come before the freeze: what they add can be frozen.
    wallet.wallets.move(move(entry("more", 100, at=2), freeze=400))
    assert counters(wallet) == (0, 400, 0, 0)


def test_unfreezing_more_than_is_frozen_is_a_conflict_and_writes_nothing(wallet):
    wallet.wallets.move(move(entry("topup", 500, at=1), freeze=200))
    with pytest.raises(Conflict):
        wallet.wallets.move(move(entry("lost", -200, at=2, kind=LedgerKind.DISPUTE), unfreeze=201))
    assert counters(wallet) == (300, 200, 0, 0)
    assert len(wallet.wallets.ledger("acct_1")) == 1


def test_unfrozen_credit_pays_the_debt_first(wallet):
    wallet.wallets.move(move(entry("topup", 500, at=1), freeze=500))
    wallet.wallets.move(move(entry("adjust", -200, at=2)))
    assert counters(wallet) == (0, 500, 200, 0)
    wallet.wallets.move(move(entry("refund", -100, at=3, kind=LedgerKind.REFUND), unfreeze=500))
    assert counters(wallet) == (200, 0, 0, 0)


# Disputes.

def test_disputes_are_counted_and_never_go_below_zero(wallet):
    wallet.wallets.move(move(entry("a", 10, at=1), disputes=1))
    wallet.wallets.move(move(entry("b", 10, at=2), disputes=1))
    assert counters(wallet)[3] == 2
    wallet.wallets.move(move(entry("c", 10, at=3), disputes=-1))
    assert counters(wallet)[3] == 1
    wallet.wallets.move(move(entry("d", 10, at=4), disputes=-5))
    assert counters(wallet) == (40, 0, 0, 0)


# Holds while in debt or disputed.

@pytest.fixture
def keyed(wallet):
    wallet.keys.create(KEY)
    wallet.wallets.credit(entry("topup", 1_000, at=1))
    return wallet


def test_nothing_is_held_while_the_account_owes_a_debt(keyed):
    keyed.wallets.move(move(entry("refund", -1_200, at=2, kind=LedgerKind.REFUND)))
    assert keyed.wallets.hold(hold("r1", 0)) is HoldResult.WALLET_SHORT
    keyed.wallets.credit(entry("topup2", 300, at=3))
    assert counters(keyed) == (100, 0, 0, 0)
    assert keyed.wallets.hold(hold("r2", 100)) is HoldResult.HELD
    assert keyed.keys.get_by_id("key_1").reserved == 100


def test_nothing_is_held_while_a_dispute_is_open(keyed):
    keyed.wallets.move(move(entry("x", 0, at=2), freeze=500, disputes=1))
    assert keyed.wallets.hold(hold("r1", 100)) is HoldResult.SUSPENDED
    assert keyed.keys.get_by_id("key_1").reserved == 0
    assert keyed.wallets.balance("acct_1").held == 0
    keyed.wallets.move(move(entry("won", 0, at=3), unfreeze=500, disputes=-1))
    assert keyed.wallets.hold(hold("r2", 100)) is HoldResult.HELD


def test_a_dispute_suspends_before_a_debt_or_a_short_wallet_is_named(keyed):
    keyed.wallets.move(move(entry("lost", -2_000, at=2, kind=LedgerKind.DISPUTE), disputes=1))
    assert keyed.wallets.hold(hold("r1", 5_000)) is HoldResult.SUSPENDED


# Claims and repeated moves.

def test_a_claimed_move_applies_once_and_returns_the_entry_that_took_the_claim(wallet):
    first = wallet.wallets.move(move(entry("topup", 700, at=1), entry("bonus", 70, at=1)), claim="credit#topup#abc")
    again = wallet.wallets.move(move(entry("topup", 700, at=9), entry("bonus", 70, at=9)), claim="credit#topup#abc")
    assert first.applied and not again.applied
    assert again.entry == first.entry == entry("topup", 700, at=1)
    assert counters(wallet) == (770, 0, 0, 0) and again.balance.available == 770
    # A claim is unique across accounts.
    other = wallet.wallets.move(WalletMove("acct_2", (entry("topup", 5, at=3, account_id="acct_2"),)),
                                claim="credit#topup#abc")
    assert not other.applied and other.entry == first.entry
    assert wallet.wallets.balance("acct_2").available == 0


def test_a_claim_raced_by_twenty_threads_moves_the_wallet_once(wallet):
    results = race(20, lambda n: wallet.wallets.move(move(entry(f"t{n}", 100, at=n + 1), freeze=50),
                                                     claim="credit#adjustment#race"))
    assert sum(result.applied for result in results) == 1
    assert counters(wallet) == (50, 50, 0, 0)
    assert len(wallet.wallets.ledger("acct_1")) == 1


def test_a_move_whose_entry_is_written_already_writes_nothing(wallet):
    wallet.wallets.move(move(entry("refund", -100, at=1)))
    again = wallet.wallets.move(move(entry("refund", -100, at=1), disputes=1))
    assert not again.applied and again.entry == entry("refund", -100, at=1)
    assert counters(wallet) == (0, 0, 100, 0)
    assert len(wallet.wallets.ledger("acct_1")) == 1


def test_a_move_needs_an_entry_and_an_account(wallet):
    with pytest.raises(InvalidRequest):
        wallet.wallets.move(move(freeze=0, disputes=1))
    with pytest.raises(NotFound):
        wallet.wallets.move(WalletMove("acct_9", (entry("x", 10, account_id="acct_9"),)))
    with pytest.raises(NotFound):
        wallet.wallets.move(WalletMove("acct_9", (entry("x", 10, account_id="acct_9"),)), claim="credit#redeem#x")
    assert wallet.wallets.ledger("acct_9") == []
    # The claim was not taken by the refused move.
    assert wallet.wallets.move(move(entry("y", 10)), claim="credit#redeem#x").applied


# The ledger in pages.

AMOUNTS = [500, -120, 300, -45, -700, 1_000, -5]


def fill(repos) -> list[int]:
    """The entries of AMOUNTS in time order; the running sum after each."""
    for n, amount in enumerate(AMOUNTS, start=1):
        if amount > 0:
            repos.wallets.credit(entry(f"e{n}", amount, at=n))
        else:
            repos.wallets.move(move(entry(f"e{n}", amount, at=n)))
    return [sum(AMOUNTS[:n]) for n in range(1, len(AMOUNTS) + 1)]


def read_pages(repos, limit: int, account_id: str = "acct_1") -> list[list[tuple[str, int]]]:
    pages, cursor = [], None
    while True:
        page = repos.wallets.ledger_page(account_id, limit=limit, cursor=cursor)
        pages.append([(line.entry.entry_id, line.balance_after) for line in page.lines])
        if page.cursor is None:
            return pages
        cursor = page.cursor


def test_ledger_pages_run_newest_first_with_the_balance_after_each_entry(wallet):
    after = fill(wallet)
    expected = [(entry(f"e{n}", 0, at=n).entry_id, after[n - 1]) for n in range(len(AMOUNTS), 0, -1)]
    pages = read_pages(wallet, 3)
    assert [len(page) for page in pages] == [3, 3, 1]
    assert [line for page in pages for line in page] == expected
    assert expected[0][1] == wallet.wallets.balance("acct_1").net
    assert read_pages(wallet, 7) == [expected]
    assert read_pages(wallet, 100) == [expected]


def test_the_first_page_anchors_on_what_the_wallet_owns_less_what_it_owes(keyed):
    keyed.wallets.move(move(entry("refund", -1_300, at=2, kind=LedgerKind.REFUND)))
    keyed.wallets.credit(entry("topup2", 500, at=3))
    keyed.wallets.move(move(entry("f", 0, at=4), freeze=100))
    keyed.wallets.hold(hold("r1", 50))  # held: still the wallet's
    lines = keyed.wallets.ledger_page("acct_1", limit=10).lines
    assert [(line.entry.amount, line.balance_after) for line in lines] == [(0, 200), (500, 200), (-1_300, -300),
                                                                          (1_000, 1_000)]
    assert keyed.wallets.balance("acct_1").net == 200


def test_entries_written_between_pages_leave_the_next_page_as_it_was(wallet):
    after = fill(wallet)
    first = wallet.wallets.ledger_page("acct_1", limit=4)
    wallet.wallets.credit(entry("later", 999, at=50))
    rest = wallet.wallets.ledger_page("acct_1", limit=4, cursor=first.cursor)
    assert [(line.entry.entry_id, line.balance_after) for line in rest.lines] == [
        (entry(f"e{n}", 0, at=n).entry_id, after[n - 1]) for n in (3, 2, 1)]
    assert rest.cursor is None


def test_an_empty_ledger_is_one_empty_page(wallet):
    page = wallet.wallets.ledger_page("acct_2", limit=5)
    assert page.lines == () and page.cursor is None
    assert wallet.wallets.ledger_page("acct_9", limit=5).lines == ()


def _encoded(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


@pytest.mark.parametrize("cursor", [
    "not a cursor",
    "%%%",
    _encoded([1, 2]),
    _encoded({"entry_id": "0000000000002#e2"}),
    _encoded({"entry_id": 2, "balance_after": 5}),
    _encoded({"entry_id": "0000000000002#e2", "balance_after": "5"}),
    _encoded({"entry_id": "0000000000002#missing", "balance_after": 5}),
    base64.urlsafe_b64encode(b"\xff\xfe").decode(),
])
def test_a_cursor_that_is_not_one_is_an_invalid_request_about_the_cursor(wallet, cursor):
    fill(wallet)
    with pytest.raises(InvalidRequest) as refused:
        wallet.wallets.ledger_page("acct_1", limit=2, cursor=cursor)
    assert refused.value.param == "cursor"


def test_a_cursor_reads_only_the_ledger_of_its_account(wallet):
    fill(wallet)
    cursor = wallet.wallets.ledger_page("acct_1", limit=2).cursor
    with pytest.raises(InvalidRequest) as refused:
        wallet.wallets.ledger_page("acct_2", limit=2, cursor=cursor)
    assert refused.value.param == "cursor"
