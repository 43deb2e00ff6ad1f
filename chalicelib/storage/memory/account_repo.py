"""Account storage in memory, for unit tests."""

from __future__ import annotations

import dataclasses
import threading

from chalicelib.core.domain import Account
from chalicelib.core.errors import Conflict, EmailTaken, NotFound
from chalicelib.storage.memory.wallet_repo import InMemoryWalletRepo
from chalicelib.storage.ports import AccountRepo, matches_search, oldest_first


class InMemoryAccountRepo(AccountRepo):
    def __init__(self, wallets: InMemoryWalletRepo | None = None) -> None:
        self._lock = threading.Lock()
        self._accounts: dict[str, Account] = {}
        self._emails: dict[str, str] = {}
        self._wallets = wallets

    def create(self, account: Account) -> None:
        with self._lock:
            if account.email.lower() in self._emails:
                raise EmailTaken(f"Another account has the email {account.email}.", param="email")
            if account.account_id in self._accounts:
                raise Conflict(f"account {account.account_id} already exists")
            self._accounts[account.account_id] = account
            self._emails[account.email.lower()] = account.account_id
        if self._wallets is not None:
            self._wallets.open(account.account_id)
            self._wallets.set_plans(account.account_id, account.default_plan, account.groups)
            if account.status != "active":
                self._wallets.set_status(account.account_id, account.status)

    def get(self, account_id: str) -> Account | None:
        return self._accounts.get(account_id)

    def get_by_email(self, email: str) -> Account | None:
        account_id = self._emails.get(email.lower())
        return self._accounts.get(account_id) if account_id else None

    def list(self, search: str | None = None) -> list[Account]:
        return oldest_first([a for a in self._accounts.values() if matches_search(a, search)])

    def set_password(self, account_id: str, password_hash: str) -> Account:
        with self._lock:
            current = self._current(account_id)
            return self._put(dataclasses.replace(current, password_hash=password_hash,
                                                 session_epoch=current.session_epoch + 1))

    def set_status(self, account_id: str, status: str) -> Account:
        with self._lock:
            account = self._put(dataclasses.replace(self._current(account_id), status=status))
        if self._wallets is not None:
            self._wallets.set_status(account_id, status)
        return account

    def set_groups(self, account_id: str, groups: tuple[str, ...]) -> Account:
        with self._lock:
            account = self._put(dataclasses.replace(self._current(account_id), groups=tuple(groups)))
        return self._plans_changed(account)

    def set_default_plan(self, account_id: str, default_plan: bool) -> Account:
        with self._lock:
            account = self._put(dataclasses.replace(self._current(account_id), default_plan=default_plan))
        return self._plans_changed(account)

    def _plans_changed(self, account: Account) -> Account:
        # The wallet stands for the account item the hold checks the key's plan on.
        if self._wallets is not None:
            self._wallets.set_plans(account.account_id, account.default_plan, account.groups)
        return account

    def set_role(self, account_id: str, role: str) -> Account:
        with self._lock:
            return self._put(dataclasses.replace(self._current(account_id), role=role))

    def _current(self, account_id: str) -> Account:
        account = self._accounts.get(account_id)
        if account is None:
            raise NotFound(f"No account `{account_id}`.", param="account_id")
        return account

    def _put(self, account: Account) -> Account:
        self._accounts[account.account_id] = account
        return account
