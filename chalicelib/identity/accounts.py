"""Console accounts: sign-up, login, logout, password change, and the account itself."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from chalicelib.core.domain import Account, Principal
from chalicelib.core.errors import EmailTaken, InvalidCredentials, InvalidRequest, InvalidSession, PermissionDenied
from chalicelib.core.validation import parse
from chalicelib.identity.login_limits import LoginLimiter
from chalicelib.identity.passwords import PasswordHasher, check_strength
from chalicelib.identity.sessions import ConsoleAuth, OpenedSession
from chalicelib.storage.ports import AccountRepo

_EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f.]+(\.[^@\s\x00-\x1f\x7f.]+)+")
_MAX_EMAIL_LENGTH = 254
# Longer than any password the rule allows; bounds the work a login asks for.
_MAX_PASSWORD_INPUT = 1024


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignupInput(_Input):
    email: StrictStr
    password: StrictStr


class LoginInput(_Input):
    email: StrictStr = Field(max_length=_MAX_EMAIL_LENGTH)
    password: StrictStr = Field(max_length=_MAX_PASSWORD_INPUT)


class PasswordChangeInput(_Input):
    current_password: StrictStr = Field(max_length=_MAX_PASSWORD_INPUT)
    new_password: StrictStr


@dataclass(frozen=True)
class LoginResult:
    account: Account
    session: OpenedSession


def normalize_email(email: str) -> str:
    return email.strip().lower()


class Accounts:
    """What a customer does with their own account from the console."""

    def __init__(self, accounts: AccountRepo, auth: ConsoleAuth, limiter: LoginLimiter, hasher: PasswordHasher,
                 now_ms: Callable[[], int]) -> None:
        self._accounts = accounts
        self._auth = auth
        self._limiter = limiter
        self._hasher = hasher
        self._now_ms = now_ms

    def signup(self, body: Any, client_ip: str | None = None) -> Account:
        """A new customer account; 400 naming the field for a bad email, a taken one or a weak password."""
        data: SignupInput = parse(SignupInput, body)
        self._limiter.signup(client_ip)
        email = normalize_email(data.email)
        if len(email) > _MAX_EMAIL_LENGTH or not _EMAIL.fullmatch(email):
            raise InvalidRequest("Enter a valid email address, like name@example.com.", param="email",
                                 code="invalid_email")
        check_strength(data.password, email, param="password")
        account = Account(account_id=f"acct_{uuid.uuid4().hex[:24]}", email=email, created_at=self._now_ms(),
                          role="customer", password_hash=self._hasher.hash(data.password))
        try:
            self._accounts.create(account)
        except EmailTaken:
            raise InvalidRequest("An account with this email address already exists.", param="email",
                                 code="email_taken") from None
        return account

    def login(self, body: Any, client_ip: str | None) -> LoginResult:
        """A new session; one answer (401) for a wrong email or a wrong password."""
        data: LoginInput = parse(LoginInput, body)
        email = normalize_email(data.email)
        attempt = self._limiter.attempt(email, client_ip)
        account = self._accounts.get_by_email(email)
        # An unknown email is checked against a dummy hash: same answer, same work.
        matches = self._hasher.verify(data.password, account.password_hash if account else None)
        if account is None or not matches:
            raise InvalidCredentials("Incorrect email or password.")
        self._limiter.succeeded(attempt)
        # Told only to whoever knows the password.
        if account.status != "active":
            raise PermissionDenied("This account is disabled.", code="account_disabled")
        return LoginResult(account=account, session=self._auth.open(account))

    def logout(self, principal: Principal) -> None:
        self._auth.close(principal)

    def change_password(self, principal: Principal, body: Any) -> None:
        """Set a new password and end every session of the account, this one included."""
        data: PasswordChangeInput = parse(PasswordChangeInput, body)
        account = self.profile(principal)
        check_strength(data.new_password, account.email, param="new_password")
        # Guessing the current password from a stolen session counts against the
        # same limit as guessing it at login.
        attempt = self._limiter.attempt(account.email, None)
        if not self._hasher.verify(data.current_password, account.password_hash):
            raise InvalidRequest("The current password is incorrect.", param="current_password",
                                 code="incorrect_password")
        self._limiter.succeeded(attempt)
        self._accounts.set_password(account.account_id, self._hasher.hash(data.new_password))

    def profile(self, principal: Principal) -> Account:
        """The principal's account."""
        account = self._accounts.get(principal.account_id)
        if account is None:
            raise InvalidSession("Invalid or expired session; log in again.")
        return account
