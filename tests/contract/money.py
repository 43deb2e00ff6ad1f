"""What the wallet, payment and redemption contracts share: accounts to move money on, real
threads started together, and the ledger's invariant checked after each case."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from chalicelib.core.domain import Account, LedgerEntry, LedgerKind

ACCOUNTS = ("acct_1", "acct_2")


def open_accounts(repos) -> None:
    for n, account_id in enumerate(ACCOUNTS, start=1):
        repos.accounts.create(Account(account_id=account_id, email=f"{account_id}@example.com", created_at=n))


def entry(name: str, amount: int, *, at: int = 1_000, kind: str = LedgerKind.ADJUSTMENT,
          account_id: str = "acct_1") -> LedgerEntry:
    return LedgerEntry(account_id=account_id, entry_id=f"{at:013d}#{name}", kind=kind, amount=amount, created_at=at)


def assert_ledger_matches_balances(repos) -> None:
    """The invariant after every commit: each ledger sums to available + held + frozen - debt,
    and no counter is below zero."""
    for account_id in ACCOUNTS:
        balance = repos.wallets.balance(account_id)
        assert sum(e.amount for e in repos.wallets.ledger(account_id)) == balance.net
        assert min(balance.available, balance.held, balance.frozen, balance.debt, balance.disputes) >= 0


def race(count: int, one: Callable[[int], Any]) -> list[Any]:
    """Run `one(n)` for n in range(count) on as many threads, started together."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(n: int) -> None:
        barrier.wait()
        try:
            results[n] = one(n)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return results
