"""What only the DynamoDB wallet, payment and redemption repositories have: credits tried with no
read and retried on a debt, moves retried when the counters change between their read and their
write, ledger pages anchored by the account's ledger sequence, and conditions that hold under
real threads. Each ends with the ledger summing to the net balance."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from chalicelib.core.domain import Account, ApiKey, Hold, HoldResult, LedgerEntry, LedgerKind
from chalicelib.core.errors import Conflict
from chalicelib.core.payments import (
    CENT_UNITS,
    OrderStatus,
    RedeemResult,
    RedemptionCode,
    TopupOrder,
    WalletMove,
)
from chalicelib.storage.dynamodb.payment_repo import DynamoPaymentRepo
from chalicelib.storage.dynamodb.redemption_repo import DynamoRedemptionRepo
from chalicelib.storage.dynamodb.wallet_repo import DynamoWalletRepo
from tests.contract.conftest import PREFIX
from tests.contract.money import entry, race

KEY = ApiKey(key_id="key_1", key_hash="k" * 64, account_id="acct_1", name="Production", created_at=2,
             hint="sk-abc…wxyz")


def name(table: str) -> str:
    return f"{PREFIX}-{table}"


def wallet_on(client: Any) -> DynamoWalletRepo:
    return DynamoWalletRepo(client, accounts=name("accounts"), holds=name("holds"), ledger=name("ledger"),
                            keys=name("keys"))


@pytest.fixture
def dynamo(dynamo_repos):
    for n in (1, 2):
        dynamo_repos.accounts.create(Account(account_id=f"acct_{n}", email=f"{n}@example.com", created_at=n))
    yield dynamo_repos
    for account_id in ("acct_1", "acct_2"):
        balance = dynamo_repos.wallets.balance(account_id)
        assert sum(e.amount for e in dynamo_repos.wallets.ledger(account_id)) == balance.net
        assert min(balance.available, balance.held, balance.frozen, balance.debt, balance.disputes) >= 0


@pytest.fixture
def payments(dynamo) -> DynamoPaymentRepo:
    return DynamoPaymentRepo(dynamo.dynamodb, orders=name("orders"), events=name("payment-events"),
                             catalog=name("catalog"), accounts=name("accounts"), ledger=name("ledger"))


@pytest.fixture
def codes(dynamo) -> DynamoRedemptionRepo:
    return DynamoRedemptionRepo(dynamo.dynamodb, codes=name("codes"), accounts=name("accounts"),
                                ledger=name("ledger"))


class Interleaving:
    """A DynamoDB client that runs `between` once, right after the `nth` consistent read of an
    account item: another writer changing the wallet between a read and the write built on it."""

    def __init__(self, client: Any, between: Callable[[], None], nth: int = 1) -> None:
        self._client = client
        self._between = between
        self._left = nth

    def get_item(self, **request: Any) -> dict[str, Any]:
        reply = self._client.get_item(**request)
        if request["TableName"] == name("accounts") and self._left > 0:
            self._left -= 1
            if self._left == 0:
                self._between()
        return reply

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._client, attribute)


def counters(repos, account_id: str = "acct_1") -> tuple[int, int, int]:
    balance = repos.wallets.balance(account_id)
    return balance.available, balance.frozen, balance.debt


# Credits racing a debt.

def test_concurrent_credits_pay_a_debt_once_between_them(dynamo):
    dynamo.wallets.move(WalletMove("acct_1", (entry("refund", -100, kind=LedgerKind.REFUND),)))
    assert counters(dynamo) == (0, 0, 100)
    results = race(20, lambda n: dynamo.wallets.credit(entry(f"c{n}", 30, at=2_000 + n), claim=f"credit#t#{n}"))
    assert all(result.applied for result in results)
    # 600 credited, of which exactly the 100 owed went to the debt.
    assert counters(dynamo) == (500, 0, 0)


def test_a_credit_reads_nothing_when_no_debt_is_owed(dynamo):
    reads: list[str] = []

    class Counting(Interleaving):
        def get_item(self, **request: Any) -> dict[str, Any]:
            reads.append(request["TableName"])
            return self._client.get_item(**request)

    wallet = wallet_on(Counting(dynamo.dynamodb, lambda: None))
    wallet.credit(entry("topup", 500))
    # The only read is the balance returned after the write.
    assert reads == [name("accounts")]
    assert counters(dynamo) == (500, 0, 0)


# A move's optimistic retry.

def test_a_debit_is_computed_again_when_the_balance_changed_after_it_was_read(dynamo):
    dynamo.wallets.credit(entry("topup", 100, at=1))
    # Between the debit's read (available 100) and its write, 50 more are credited.
    other = wallet_on(dynamo.dynamodb)
    wallet = wallet_on(Interleaving(dynamo.dynamodb, lambda: other.credit(entry("more", 50, at=2))))
    done = wallet.move(WalletMove("acct_1", (entry("refund", -120, at=3, kind=LedgerKind.REFUND),)))
    assert done.applied
    # Computed from 100 it would have left a debt of 20; from 150, 30 stay available.
    assert counters(dynamo) == (30, 0, 0)


def test_a_freeze_is_refused_when_what_it_read_was_spent_before_its_write(dynamo):
    dynamo.wallets.credit(entry("topup", 100, at=1))
    other = wallet_on(dynamo.dynamodb)
    spend = lambda: other.move(WalletMove("acct_1", (entry("spent", -80, at=2),)))  # noqa: E731
    wallet = wallet_on(Interleaving(dynamo.dynamodb, spend))
    with pytest.raises(Conflict):
        wallet.move(WalletMove("acct_1", (entry("topup2", 0, at=3),), freeze=50))
    assert counters(dynamo) == (20, 0, 0)
    assert [e.entry_id for e in dynamo.wallets.ledger("acct_1")] == ["0000000000001#topup", "0000000000002#spent"]


def test_concurrent_debits_and_credits_leave_exact_counters(dynamo):
    dynamo.wallets.credit(entry("topup", 1_000, at=1))

    def one(n: int) -> None:
        amount = 70 if n % 2 else -130
        dynamo.wallets.move(WalletMove("acct_1", (entry(f"m{n}", amount, at=10 + n),)))

    race(20, one)
    # Net 1000 + 10*70 - 10*130 = 400, whatever order the moves took.
    available, frozen, debt = counters(dynamo)
    assert available - debt == 400 and frozen == 0 and min(available, debt) == 0


# Ledger pages anchored by the ledger sequence.

def hold_for(request_id: str, amount: int = 10) -> Hold:
    return Hold(request_id=request_id, account_id="acct_1", key_hash=KEY.key_hash, amount=amount,
                created_at=1_000, expires_at=11_000)


def settle(wallet, n: int) -> None:
    assert wallet.hold(hold_for(f"r{n}")) is HoldResult.HELD
    charge = LedgerEntry("acct_1", f"{5_000 + n:013d}#r{n}", LedgerKind.CHARGE, 0, 5_000 + n, request_id=f"r{n}")
    wallet.settle(hold_for(f"r{n}"), 7, charge)


def running_sums(repos) -> dict[str, int]:
    total, sums = 0, {}
    for item in repos.wallets.ledger("acct_1"):
        total += item.amount
        sums[item.entry_id] = total
    return sums


def test_a_page_read_while_a_charge_lands_is_anchored_on_the_view_the_entries_came_from(dynamo):
    dynamo.keys.create(KEY)
    dynamo.wallets.credit(entry("topup", 1_000, at=1))
    other = wallet_on(dynamo.dynamodb)
    # A charge settles after the page's first account read, before its query.
    wallet = wallet_on(Interleaving(dynamo.dynamodb, lambda: settle(other, 1)))
    page = wallet.ledger_page("acct_1", limit=10)
    assert [line.entry.entry_id for line in page.lines] == ["0000000005001#r1", "0000000000001#topup"]
    assert [line.balance_after for line in page.lines] == [993, 1_000]
    assert page.cursor is None


def test_pages_read_during_concurrent_settles_match_the_ledger_as_it_ends(dynamo):
    dynamo.keys.create(KEY)
    dynamo.wallets.credit(entry("topup", 10_000, at=1))
    pages = []

    def one(n: int) -> None:
        if n % 4 == 0:
            page = dynamo.wallets.ledger_page("acct_1", limit=3)
            pages.append(page)
            if page.cursor is not None:
                pages.append(dynamo.wallets.ledger_page("acct_1", limit=3, cursor=page.cursor))
        else:
            settle(dynamo.wallets, n)

    race(16, one)
    sums = running_sums(dynamo)
    assert len(sums) == 13
    assert all(line.balance_after == sums[line.entry.entry_id] for page in pages for line in page.lines)


def test_a_ledger_sequence_counts_every_transaction_that_writes_an_entry(dynamo):
    dynamo.keys.create(KEY)
    dynamo.wallets.credit(entry("topup", 1_000, at=1))
    dynamo.wallets.move(WalletMove("acct_1", (entry("a", -5, at=2), entry("b", 5, at=3)), freeze=100))
    settle(dynamo.wallets, 1)
    dynamo.wallets.hold(hold_for("r2"))
    dynamo.wallets.release(hold_for("r2"))
    item = dynamo.dynamodb.get_item(TableName=name("accounts"), Key={"account_id": {"S": "acct_1"}},
                                    ConsistentRead=True)["Item"]
    assert item["ledger_seq"] == {"N": "3"}


# Orders: the version condition.

def order(order_id: str = "ord_1", **changes: Any) -> TopupOrder:
    values = dict(order_id=order_id, account_id="acct_1", status=OrderStatus.PENDING, pay_cents=1_000,
                  credit_units=1_000 * CENT_UNITS, bonus_units=0, created_at=1_000)
    return TopupOrder(**{**values, **changes})


def test_of_twenty_concurrent_updates_from_one_version_exactly_one_applies(dynamo, payments):
    made = order()
    payments.create_order(made)

    def pay(n: int) -> TopupOrder | None:
        # Each delivery names its credit differently: only the version keeps it single.
        credit = entry(f"paid{n}", made.credit_units, at=2_000 + n, kind=LedgerKind.TOPUP)
        return payments.update(made, {"status": OrderStatus.PAID, "paid_at": 2_000 + n},
                               WalletMove("acct_1", (credit,)))

    results = race(20, pay)
    applied = [result for result in results if result is not None]
    assert len(applied) == 1 and applied[0].version == 1
    assert payments.get_order("ord_1") == applied[0]
    assert counters(dynamo) == (made.credit_units, 0, 0)
    assert len(dynamo.wallets.ledger("acct_1")) == 1


def test_an_update_retries_its_move_when_the_wallet_changed_but_not_the_order(dynamo, payments):
    dynamo.wallets.credit(entry("topup", 100, at=1))
    made = order(status=OrderStatus.PAID)
    payments.create_order(made)
    other = wallet_on(dynamo.dynamodb)
    interleaved = DynamoPaymentRepo(
        Interleaving(dynamo.dynamodb, lambda: other.credit(entry("more", 500, at=2))), orders=name("orders"),
        events=name("payment-events"), catalog=name("catalog"), accounts=name("accounts"), ledger=name("ledger"))
    changed = interleaved.update(made, {"status": OrderStatus.DISPUTED, "frozen_units": 80},
                                 WalletMove("acct_1", (entry("dispute", 0, at=3),), freeze=80, disputes=1))
    assert changed is not None and changed.version == 1 and changed.frozen_units == 80
    # Written from the 100 it read, available would have lost the 500 credited meanwhile.
    assert counters(dynamo) == (520, 80, 0)
    assert dynamo.wallets.balance("acct_1").disputes == 1


def test_orders_created_at_one_moment_page_through_the_index_without_loss(dynamo, payments):
    for n in range(7):
        payments.create_order(order(f"ord_{n}", created_at=1_000 + n // 3))
    seen, cursor = [], None
    while True:
        page = payments.list_orders(account_id="acct_1", limit=2, cursor=cursor)
        seen += [o.order_id for o in page.orders]
        if page.cursor is None:
            break
        cursor = page.cursor
    assert seen == ["ord_6", "ord_5", "ord_4", "ord_3", "ord_2", "ord_1", "ord_0"]


# Redemption codes.

def code(n: int = 1, **changes: Any) -> RedemptionCode:
    values = dict(code_hash=f"{n:064x}", code_id=f"code_{n}", hint="TW-…", value_units=250, created_at=1_000 + n)
    return RedemptionCode(**{**values, **changes})


def test_of_twenty_concurrent_redeems_of_one_code_exactly_one_credits(dynamo, codes):
    codes.create([code()])

    def redeem(n: int):
        account_id = f"acct_{1 + n % 2}"
        return codes.redeem(code().code_hash, entry(f"redeem{n}", 0, at=3_000 + n, account_id=account_id,
                                                    kind=LedgerKind.REDEEM), now_ms=3_000)

    results = race(20, redeem)
    outcomes = [result.result for result in results]
    assert outcomes.count(RedeemResult.REDEEMED) == 1 and outcomes.count(RedeemResult.USED) == 19
    winner = next(result for result in results if result.result is RedeemResult.REDEEMED)
    credited = dynamo.wallets.balance(winner.code.redeemed_by).available
    assert credited == 250 and winner.balance.available == 250
    total = sum(dynamo.wallets.balance(account_id).available for account_id in ("acct_1", "acct_2"))
    assert total == 250


def test_a_redeem_pays_a_debt_first(dynamo, codes):
    dynamo.wallets.move(WalletMove("acct_1", (entry("refund", -100, kind=LedgerKind.REFUND),)))
    codes.create([code()])
    redeemed = codes.redeem(code().code_hash, entry("redeem", 0, at=2_000, kind=LedgerKind.REDEEM), now_ms=2_000)
    assert redeemed.result is RedeemResult.REDEEMED
    assert counters(dynamo) == (150, 0, 0)
    assert dynamo.wallets.ledger("acct_1")[-1].amount == 250


def test_a_batch_larger_than_a_transaction_is_refused_whole_when_a_later_code_exists(dynamo, codes):
    codes.create([code(250)])
    with pytest.raises(Conflict):
        codes.create([code(n) for n in range(1, 260)])
    assert [c.code_id for c in codes.list()] == ["code_250"]


def test_a_batch_larger_than_a_transaction_is_written_whole(dynamo, codes):
    codes.create([code(n, batch="big") for n in range(1, 231)])
    listed = codes.list(batch="big")
    assert len(listed) == 230 and listed[0].code_id == "code_230"
    assert codes.disable("code_7").status == "disabled"
