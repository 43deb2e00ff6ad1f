"""Console accounts and sessions over in-memory storage, with a clock the test moves."""

from __future__ import annotations

from dataclasses import dataclass, field

from chalicelib.core.domain import Principal
from chalicelib.identity.accounts import Accounts, LoginResult
from chalicelib.identity.login_limits import LoginLimiter
from chalicelib.identity.passwords import PasswordHasher
from chalicelib.identity.sessions import ConsoleAuth
from chalicelib.storage.memory.account_repo import InMemoryAccountRepo
from chalicelib.storage.memory.login_attempt_repo import InMemoryLoginAttemptRepo
from chalicelib.storage.memory.session_repo import InMemorySessionRepo

PASSWORD = "correct horse 42"
TTL_S = 3600
WINDOW_S = 900
# The start of a 15-minute window, in epoch ms.
START_MS = 1_700_000_100_000 - 1_700_000_100_000 % (WINDOW_S * 1000)


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
    time_ms: int = START_MS
    hasher: CountingHasher = field(default_factory=CountingHasher)

    def __post_init__(self) -> None:
        self.accounts_repo = InMemoryAccountRepo()
        self.sessions = InMemorySessionRepo()
        self.attempts = InMemoryLoginAttemptRepo()
        clock = lambda: self.time_ms  # noqa: E731
        self.auth = ConsoleAuth(self.sessions, self.accounts_repo, clock, ttl_s=TTL_S)
        self.limiter = LoginLimiter(self.attempts, clock, per_account=5, per_ip=20, window_s=WINDOW_S)
        self.accounts = Accounts(self.accounts_repo, self.auth, self.limiter, self.hasher, clock)

    def signup(self, email: str = "alice@example.com", password: str = PASSWORD) -> str:
        return self.accounts.signup({"email": email, "password": password}).account_id

    def login(self, email: str = "alice@example.com", password: str = PASSWORD,
              ip: str | None = "203.0.113.7") -> LoginResult:
        return self.accounts.login({"email": email, "password": password}, ip)

    def bearer(self, token: str, method: str = "GET") -> Principal:
        return self.auth.authenticate({"Authorization": f"Bearer {token}"}, method)

    def cookie(self, token: str, method: str = "GET", csrf: str | None = None) -> Principal:
        headers = {"Cookie": f"theme=dark; tokenway_session={token}"}
        if csrf is not None:
            headers["X-CSRF-Token"] = csrf
        return self.auth.authenticate(headers, method)
