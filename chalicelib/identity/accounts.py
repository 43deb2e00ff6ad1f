"""Console accounts: the one way an account is created (sign-up, or the operator), login, logout,
password change, and the account itself.

The service takes typed commands, parsed from request bodies by the API layer; the rules
about their values (what an email is, what a password must be) are checked here, once, for
every caller.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from chalicelib.core.domain import Account, Principal
from chalicelib.core.errors import InvalidCredentials, InvalidRequest, InvalidSession, PermissionDenied
from chalicelib.identity.login_limits import LoginLimiter
from chalicelib.identity.passwords import PasswordHasher, check_strength
from chalicelib.identity.sessions import ConsoleAuth, OpenedSession
from chalicelib.storage.ports import AccountRepo

_EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f.]+(\.[^@\s\x00-\x1f\x7f.]+)+")
MAX_EMAIL_LENGTH = 254
# Longer than any email or password the rules allow; bounds the work a request asks for.
MAX_INPUT_LENGTH = 1024


class Command(BaseModel):
    """A request's body, as the service accepts it: known fields only, of the right types."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SignUp(Command):
    email: StrictStr = Field(max_length=MAX_INPUT_LENGTH)
    password: StrictStr = Field(max_length=MAX_INPUT_LENGTH)


class NewAccount(Command):
    """An account the operator creates: no password until the customer sets one through a
    set-password link."""

    email: StrictStr = Field(max_length=MAX_INPUT_LENGTH)


class LogIn(Command):
    email: StrictStr = Field(max_length=MAX_INPUT_LENGTH)
    password: StrictStr = Field(max_length=MAX_INPUT_LENGTH)


class ChangePassword(Command):
    current_password: StrictStr = Field(max_length=MAX_INPUT_LENGTH)
    new_password: StrictStr = Field(max_length=MAX_INPUT_LENGTH)


@dataclass(frozen=True)
class LoginResult:
    account: Account
    session: OpenedSession


def normalize_email(email: str) -> str:
    """An email as it is stored and compared: trimmed, in lower case."""
    return email.strip().lower()


def valid_email(email: str) -> str:
    """The normalized email; InvalidRequest (`invalid_email`, param `email`) unless it looks
    like name@example.com."""
    email = normalize_email(email)
    if len(email) > MAX_EMAIL_LENGTH or not _EMAIL.fullmatch(email):
        raise InvalidRequest("Enter a valid email address, like name@example.com.", param="email",
                             code="invalid_email")
    return email


class Accounts:
    """Creating accounts, and what a customer does with their own from the console."""

    def __init__(self, accounts: AccountRepo, auth: ConsoleAuth, limiter: LoginLimiter, hasher: PasswordHasher,
                 now_ms: Callable[[], int]) -> None:
        self._accounts = accounts
        self._auth = auth
        self._limiter = limiter
        self._hasher = hasher
        self._now_ms = now_ms

    def sign_up(self, command: SignUp, client_ip: str | None = None) -> Account:
        """A new customer account with a password; 400 naming the field for a bad email or a weak
        password, 409 `email_taken` if another account has the email."""
        self._limiter.signup(client_ip)
        return self._create(command.email, command.password)

    def create(self, command: NewAccount) -> Account:
        """A new customer account for the operator, without a password; the same rules and
        answers as a sign-up."""
        return self._create(command.email, None)

    def find(self, email: str) -> Account | None:
        """The account with this email (as it is stored: trimmed, in lower case), or None."""
        return self._accounts.get_by_email(normalize_email(email))

    def _create(self, email: str, password: str | None) -> Account:
        email = valid_email(email)
        password_hash = None
        if password is not None:
            check_strength(password, email, param="password")
            password_hash = self._hasher.hash(password)
        account = Account(account_id=f"acct_{uuid.uuid4().hex[:24]}", email=email, created_at=self._now_ms(),
                          role="customer", password_hash=password_hash)
        self._accounts.create(account)  # EmailTaken (409, param `email`): one account per email
        return account

    def login(self, command: LogIn, client_ip: str | None) -> LoginResult:
        """A new session; one answer (401) for a wrong email or a wrong password."""
        email = normalize_email(command.email)
        attempt = self._limiter.attempt(email, client_ip)
        account = self._accounts.get_by_email(email)
        # An unknown email is checked against a dummy hash: same answer, same work.
        matches = self._hasher.verify(command.password, account.password_hash if account else None)
        if account is None or not matches:
            raise InvalidCredentials("Incorrect email or password.")
        self._limiter.succeeded(attempt)
        # Told only to whoever knows the password.
        if account.status != "active":
            raise PermissionDenied("This account is disabled.", code="account_disabled")
        return LoginResult(account=account, session=self._auth.open(account))

    def logout(self, principal: Principal) -> None:
        self._auth.close(principal)

    def change_password(self, principal: Principal, command: ChangePassword, client_ip: str | None) -> None:
        """Set a new password and end every session of the account, this one included."""
        account = self.profile(principal)
        check_strength(command.new_password, account.email, param="new_password")
        # Guessing the current password from a stolen session counts against the
        # same limits as guessing it at login.
        attempt = self._limiter.attempt(account.email, client_ip)
        if not self._hasher.verify(command.current_password, account.password_hash):
            raise InvalidRequest("The current password is incorrect.", param="current_password",
                                 code="incorrect_password")
        self._limiter.succeeded(attempt)
        self._accounts.set_password(account.account_id, self._hasher.hash(command.new_password))

    def profile(self, principal: Principal) -> Account:
        """The principal's account."""
        account = self._accounts.get(principal.account_id)
        if account is None:
            raise InvalidSession("Invalid or expired session; log in again.")
        return account
