"""Redemption codes against both implementations: stored all or none, listed newest first,
disabled by their public id, and redeemed once (raced on real threads) with a credit that pays
debt first. After every case each ledger sums to Balance.net."""

from __future__ import annotations

import dataclasses

import pytest

from chalicelib.core.domain import LedgerEntry, LedgerKind
from chalicelib.core.errors import Conflict, NotFound
from chalicelib.core.payments import Redeemed, RedeemResult, RedemptionCode, WalletMove
from tests.contract.money import assert_ledger_matches_balances, entry, open_accounts, race

NOW = 50_000


@pytest.fixture
def codes(repos):
    open_accounts(repos)
    yield repos
    assert_ledger_matches_balances(repos)


def code(n: int, *, value: int = 500, batch: str | None = "spring", expires_at: int | None = None,
         created_at: int | None = None) -> RedemptionCode:
    return RedemptionCode(code_hash=f"{n:064x}", code_id=f"code_{n}", hint=f"TW{n}…{n}", value_units=value,
                          created_at=1_000 + n if created_at is None else created_at, expires_at=expires_at,
                          batch=batch)


def redemption(name: str = "r", account_id: str = "acct_1") -> LedgerEntry:
    # The amount is the code's to fill in.
    return entry(f"redeem#{name}", 0, at=NOW, kind=LedgerKind.REDEEM, account_id=account_id)


def test_codes_are_listed_newest_first_and_by_batch(codes):
    codes.codes.create([code(1), code(2, batch=None), code(3, batch="summer")])
    codes.codes.create([code(4)])
    assert codes.codes.list() == [code(4), code(3, batch="summer"), code(2, batch=None), code(1)]
    assert codes.codes.list(batch="spring") == [code(4), code(1)]
    assert codes.codes.list(batch="autumn") == []


def test_codes_are_stored_all_or_none(codes):
    codes.codes.create([code(1)])
    with pytest.raises(Conflict):
        codes.codes.create([code(2), code(3), code(1, value=900)])
    assert codes.codes.list() == [code(1)]


def test_disabling_an_active_code_keeps_a_used_one_used(codes):
    codes.codes.create([code(1), code(2)])
    disabled = codes.codes.disable("code_1")
    assert disabled == dataclasses.replace(code(1), status="disabled")
    assert codes.codes.disable("code_1") == disabled
    assert codes.codes.redeem(code(2).code_hash, redemption(), NOW).result is RedeemResult.REDEEMED
    used = codes.codes.disable("code_2")
    assert (used.status, used.redeemed_by) == ("used", "acct_1")
    assert codes.codes.disable("code_9") is None


def test_a_code_is_redeemed_once_with_its_value(codes):
    codes.codes.create([code(1, value=750, expires_at=NOW + 1)])
    done = codes.codes.redeem(code(1).code_hash, redemption(), NOW)
    assert done.result is RedeemResult.REDEEMED
    assert done.code == dataclasses.replace(code(1, value=750, expires_at=NOW + 1), status="used",
                                             redeemed_by="acct_1", redeemed_at=NOW)
    assert done.balance == codes.wallets.balance("acct_1") and done.balance.available == 750
    redeemed = dataclasses.replace(entry("redeem#r", 750, at=NOW, kind=LedgerKind.REDEEM), reference="code_1")
    assert codes.wallets.ledger("acct_1") == [redeemed]
    again = codes.codes.redeem(code(1).code_hash, redemption("again", "acct_2"), NOW)
    assert again.result is RedeemResult.USED and again.code == done.code
    assert codes.wallets.balance("acct_2").available == 0


def test_an_unknown_disabled_or_expired_code_credits_nothing(codes):
    codes.codes.create([code(1, expires_at=NOW), code(2), code(3, expires_at=NOW - 1)])
    codes.codes.disable("code_2")
    assert codes.codes.redeem("f" * 64, redemption(), NOW) == Redeemed(RedeemResult.UNKNOWN)
    assert codes.codes.redeem(code(1).code_hash, redemption(), NOW).result is RedeemResult.EXPIRED
    assert codes.codes.redeem(code(2).code_hash, redemption(), NOW).result is RedeemResult.DISABLED
    assert codes.codes.redeem(code(3).code_hash, redemption(), NOW).result is RedeemResult.EXPIRED
    assert codes.codes.redeem(code(1).code_hash, redemption(), NOW - 1).result is RedeemResult.REDEEMED
    assert codes.wallets.balance("acct_1").available == 500
    assert [c.status for c in codes.codes.list()] == ["active", "disabled", "used"]


def test_twenty_racing_redeems_of_one_code_credit_once(codes):
    codes.codes.create([code(1, value=900)])
    results = race(20, lambda n: codes.codes.redeem(code(1).code_hash, redemption(f"r{n}", ("acct_1", "acct_2")[n % 2]),
                                                    NOW))
    outcomes = [result.result for result in results]
    assert outcomes.count(RedeemResult.REDEEMED) == 1 and outcomes.count(RedeemResult.USED) == 19
    winner = next(result for result in results if result.result is RedeemResult.REDEEMED)
    total = codes.wallets.balance("acct_1").available + codes.wallets.balance("acct_2").available
    assert total == 900 and codes.wallets.balance(winner.code.redeemed_by).available == 900
    assert len(codes.wallets.ledger("acct_1")) + len(codes.wallets.ledger("acct_2")) == 1


def test_a_redeemed_code_pays_the_debt_first(codes):
    codes.wallets.move(WalletMove("acct_1", (entry("refund", -300, at=1, kind=LedgerKind.REFUND),)))
    codes.codes.create([code(1, value=500)])
    done = codes.codes.redeem(code(1).code_hash, redemption(), NOW)
    assert (done.balance.available, done.balance.debt, done.balance.net) == (200, 0, 200)


def test_a_code_redeemed_for_an_unknown_account_stays_active(codes):
    codes.codes.create([code(1)])
    with pytest.raises(NotFound):
        codes.codes.redeem(code(1).code_hash, redemption(account_id="acct_9"), NOW)
    assert codes.codes.list()[0].status == "active"
    assert codes.wallets.ledger("acct_9") == []
