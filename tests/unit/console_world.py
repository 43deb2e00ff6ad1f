"""Console accounts and sessions over SQLite storage (a file in the test's directory), with a clock the
test moves."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from chalicelib.core.domain import Principal
from chalicelib.identity.accounts import Accounts, ChangePassword, LogIn, LoginResult, NewAccount, SignUp
from chalicelib.identity.login_limits import LoginLimiter
from chalicelib.identity.password_links import PasswordLinks, SetPassword
from chalicelib.identity.passwords import PasswordHasher
from chalicelib.identity.sessions import ConsoleAuth
from tests.sqlite_store import store_in

PASSWORD = "correct horse 42"
TTL_S = 3600
WINDOW_S = 900
LINK_TTL_S = 72 * 3600
# Failed-login limits: per account and address, per address (per window), per account (per day).
PER_ACCOUNT_IP, PER_IP, PER_ACCOUNT = 5, 20, 20
DELAY_S, MAX_DELAY_S = 60, 3600
# The start of a 15-minute window, an hour into a day, in epoch ms.
START_MS = (1_700_000_100_000 // 86_400_000) * 86_400_000 + 3_600_000
OWNER_IP = "203.0.113.7"


class CountingHasher(PasswordHasher):
    """A cheap scrypt cost (the stored hash names it), and a record of every check."""

    def __init__(self) -> None:
        super().__init__(n=2**4)
        self.checked: list[tuple[str, str | None]] = []

    def verify(self, password: str, stored: str | None) -> bool:
        self.checked.append((password, stored))
        return super().verify(password, stored)


@dataclass
class ConsoleWorld:
    directory: Path
    time_ms: int = START_MS
    hasher: CountingHasher = field(default_factory=CountingHasher)

    def __post_init__(self) -> None:
        self.store = store_in(self.directory)
        self.accounts_repo = self.store.accounts
        self.sessions = self.store.sessions
        self.attempts = self.store.login_attempts
        self.links_repo = self.store.password_links
        clock = lambda: self.time_ms  # noqa: E731
        self.auth = ConsoleAuth(self.sessions, self.accounts_repo, clock, ttl_s=TTL_S)
        self.limiter = LoginLimiter(self.attempts, clock, per_account_ip=PER_ACCOUNT_IP, per_ip=PER_IP,
                                    window_s=WINDOW_S, per_account=PER_ACCOUNT, delay_s=DELAY_S,
                                    max_delay_s=MAX_DELAY_S)
        self.accounts = Accounts(self.accounts_repo, self.auth, self.limiter, self.hasher, clock)
        self.links = PasswordLinks(self.links_repo, self.accounts_repo, self.hasher, clock, ttl_s=LINK_TTL_S,
                                   console_url="https://console.example.com/")

    def signup(self, email: str = "alice@example.com", password: str = PASSWORD, ip: str | None = None) -> str:
        return self.accounts.sign_up(SignUp(email=email, password=password), ip).account_id

    def create(self, email: str = "ops@example.com") -> str:
        """An account as the operator creates it: no password."""
        return self.accounts.create(NewAccount(email=email)).account_id

    def login(self, email: str = "alice@example.com", password: str = PASSWORD,
              ip: str | None = OWNER_IP) -> LoginResult:
        return self.accounts.login(LogIn(email=email, password=password), ip)

    def change_password(self, principal: Principal, current: str, new: str, ip: str | None = OWNER_IP) -> None:
        self.accounts.change_password(principal, ChangePassword(current_password=current, new_password=new), ip)

    def set_password(self, token: str, password: str) -> None:
        self.links.set_password(SetPassword(token=token, password=password))

    def bearer(self, token: str, method: str = "GET") -> Principal:
        return self.auth.authenticate({"Authorization": f"Bearer {token}"}, method)

    def cookie(self, token: str, method: str = "GET", csrf: str | None = None) -> Principal:
        headers = {"Cookie": f"theme=dark; tokenway_session={token}"}
        if csrf is not None:
            headers["X-CSRF-Token"] = csrf
        return self.auth.authenticate(headers, method)
