"""The hold refuses a key whose plan its account no longer has, in the same conditional write
that reserves the money (no read before it), against both implementations."""

from __future__ import annotations

import dataclasses

import pytest

from chalicelib.core.domain import Account, ApiKey, Hold, HoldResult, LedgerEntry

KEY = ApiKey(key_id="key_1", key_hash="p" * 64, account_id="acct_1", name="Production", created_at=2,
             hint="sk-abc…wxyz")


def hold(request_id: str, plan: str, amount: int = 100) -> Hold:
    return Hold(request_id=request_id, account_id="acct_1", key_hash=KEY.key_hash, amount=amount, created_at=1_000,
                expires_at=11_000, plan=plan)


@pytest.fixture
def account(repos):
    repos.accounts.create(Account(account_id="acct_1", email="p@example.com", created_at=1, groups=("pro",)))
    repos.keys.create(dataclasses.replace(KEY, group="pro"))
    repos.wallets.credit(LedgerEntry("acct_1", "0000000000000#credit", "credit", 10_000, 0))
    return repos


def test_a_key_holds_on_a_plan_its_account_has_and_on_default_until_confined(account):
    assert account.wallets.hold(hold("r1", "pro")) is HoldResult.HELD
    assert account.wallets.hold(hold("r2", "default")) is HoldResult.HELD
    account.accounts.set_default_plan("acct_1", False)
    assert account.wallets.hold(hold("r3", "default")) is HoldResult.PLAN_REFUSED
    assert account.wallets.hold(hold("r4", "pro")) is HoldResult.HELD


def test_a_plan_taken_from_the_account_refuses_the_next_hold_and_moves_no_money(account):
    account.accounts.set_groups("acct_1", ())
    assert account.wallets.hold(hold("r1", "pro")) is HoldResult.PLAN_REFUSED
    balance = account.wallets.balance("acct_1")
    assert (balance.available, balance.held) == (10_000, 0)
    assert account.keys.get_by_hash(KEY.key_hash).reserved == 0
    account.accounts.set_groups("acct_1", ("pro",))
    assert account.wallets.hold(hold("r2", "pro")) is HoldResult.HELD


def test_a_short_wallet_is_told_apart_from_a_refused_plan(account):
    assert account.wallets.hold(hold("r1", "pro", amount=20_000)) is HoldResult.WALLET_SHORT
    account.accounts.set_groups("acct_1", ())
    assert account.wallets.hold(hold("r2", "pro", amount=20_000)) is HoldResult.WALLET_SHORT
    assert account.wallets.hold(hold("r3", "pro", amount=1)) is HoldResult.PLAN_REFUSED
