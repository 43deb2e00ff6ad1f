"""Failed-login limits, per account (by email) and per client IP, and sign-ups per client IP,
in fixed time windows."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from chalicelib.core.errors import RateLimited
from chalicelib.storage.ports import LoginAttemptRepo


@dataclass(frozen=True)
class Attempt:
    """The counters one attempt was counted on, to give back if it succeeds."""

    account_counter: str
    ip_counter: str | None
    expires_at_s: int


class LoginLimiter:
    """Counts each attempt before its password is checked, and refuses it (429) once a counter
    passes its limit.

    Counting first, with one atomic ADD per counter whose result is the new count, means
    concurrent attempts cannot all slip in between a read and a write, and an attempt
    refused here never reaches the password check, so it learns nothing. An attempt that
    succeeds gives its count back to the IP counter (earlier failures stay counted) and
    clears the account's counter, so what the counters keep is failures.

    Accounts are counted by email, whether or not an account has it: an unknown email is
    limited exactly like a known one, so the limit does not tell which emails exist.
    """

    def __init__(self, attempts: LoginAttemptRepo, now_ms: Callable[[], int], *, per_account: int, per_ip: int,
                 window_s: int, signups_per_ip: int = 10) -> None:
        self._attempts = attempts
        self._now_ms = now_ms
        self._per_account = per_account
        self._per_ip = per_ip
        self._window_s = window_s
        self._signups_per_ip = signups_per_ip

    def signup(self, client_ip: str | None) -> None:
        """Count one sign-up from the address; RateLimited past the limit. Each sign-up costs a
        password hash and tells whether an email is taken, so an address gets only a few."""
        if not client_ip:
            return
        now_s = self._now_ms() // 1000
        window = now_s // self._window_s
        window_end_s = (window + 1) * self._window_s
        if self._attempts.add(f"signup#ip#{client_ip}#{window}", 1, window_end_s) > self._signups_per_ip:
            retry_after_s = max(1, window_end_s - now_s)
            raise RateLimited(f"Too many sign-ups from this address. Try again in {retry_after_s} seconds.",
                              retry_after_s=retry_after_s, code="too_many_signups")

    def attempt(self, email: str, client_ip: str | None) -> Attempt:
        """Count one attempt; RateLimited (with the seconds left in the window) past a limit."""
        now_s = self._now_ms() // 1000
        window = now_s // self._window_s
        window_end_s = (window + 1) * self._window_s
        digest = hashlib.sha256(email.encode()).hexdigest()  # no email addresses in this table
        attempt = Attempt(account_counter=f"email#{digest}#{window}",
                          ip_counter=f"ip#{client_ip}#{window}" if client_ip else None,
                          expires_at_s=window_end_s)
        # The IP first: once an address is refused it stops counting against the
        # accounts it tries, so it cannot keep their owners locked out.
        if attempt.ip_counter and self._attempts.add(attempt.ip_counter, 1, window_end_s) > self._per_ip:
            raise _refused(window_end_s - now_s)
        if self._attempts.add(attempt.account_counter, 1, window_end_s) > self._per_account:
            raise _refused(window_end_s - now_s)
        return attempt

    def succeeded(self, attempt: Attempt) -> None:
        """The attempt proved the password: it was no failure."""
        self._attempts.clear(attempt.account_counter)
        if attempt.ip_counter:
            self._attempts.add(attempt.ip_counter, -1, attempt.expires_at_s)


def _refused(retry_after_s: int) -> RateLimited:
    return RateLimited(f"Too many failed login attempts. Try again in {retry_after_s} seconds.",
                       retry_after_s=max(1, retry_after_s), code="too_many_login_attempts")
