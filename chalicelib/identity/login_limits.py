"""Failed-login limits that slow password guessing without handing strangers a way to lock an
account's owner out; sign-ups per client address; and password-reset emails, per client address
and per email (see the end of this docstring).

Every login, and every password change (it checks the current password), is counted before
its password is checked, on these counters:

    counter                        default limit             past it
    per client address             20 failures / 15 min      429, Retry-After: the window's end
    per account and address        5 failures / 15 min       429, Retry-After: the window's end
    per account, all addresses     50 failures / day         an address the account has not logged in
                                                             from gets one guess per delay, the delay
                                                             doubling with each failure: 60 s, 2 min,
                                                             4 min, … at most 1 h (429, Retry-After:
                                                             the delay left)

One address counts at most 5 failures a day toward an account's ceiling (its share), so no
one address can bring the delays on by itself. An address that logged in to the account in
the last 30 days is a known address: it is never delayed, only held to its own limits. An
IPv6 client is counted by its /64 network, which one host usually holds whole.

What this resists:
- guessing one account from one address: 5 guesses per 15 minutes;
- guessing many accounts from one address: 20 guesses per 15 minutes;
- guessing one account from many addresses: 50 guesses a day, then one per doubling delay
  (about a dozen more a day once the delay reaches an hour);
- a stranger keeping the owner out: failures from other addresses never refuse the owner at
  an address of their own (the per-address counters are that address's, and a known address
  is not delayed); failures from one address never delay anyone else.

What it does not:
- once many addresses together pass the per-account ceiling, the owner at an address they
  have not logged in from in 30 days waits like the guessers;
- clients behind one NAT or proxy share an address: a guesser there can use up the 20
  failures of everyone behind it, and, at the owner's own address, guess as the owner may
  (5 per 15 minutes);
- a few guesses at each of many accounts from many addresses (credential stuffing) meets
  only the per-address limits: a password not used elsewhere is what stops that.

Password-reset emails (password_reset.py) are counted per client address, then per email (known
or not), in windows of an hour by default: 10 per address, 3 per email. Past either, the request
is answered as any other and nothing is sent, so no one can flood an inbox or the mail service's
quota through the gateway. An address past its limit stops counting against the emails it names;
a stranger can still use up one email's few messages in a window, and its owner waits for the next.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from chalicelib.core.errors import RateLimited
from chalicelib.storage.ports import LoginAttemptRepo

DAY_S = 86_400
KNOWN_ADDRESS_S = 30 * DAY_S
_UNKNOWN_ADDRESS = "-"


@dataclass(frozen=True)
class Attempt:
    """What one attempt was counted on, to give back if it proves the password."""

    account: str  # the SHA-256 of the email: no email addresses in this table
    address: str | None
    ip_counter: str | None
    pair_counter: str
    share_counter: str
    account_counter: str | None  # None: the address had used up its share of the account's ceiling
    window_end_s: int
    day_end_s: int
    took_lock: bool


class LoginLimiter:
    """Counts each attempt before its password is checked, and refuses it (429) past a limit.

    Counting first, with one atomic ADD per counter whose result is the new count, means
    concurrent attempts cannot all slip in between a read and a write, and an attempt refused
    here never reaches the password check, so it learns nothing. Past the per-account ceiling,
    an attempt from an address that is not known must also take the account's lock, a
    conditional write only one concurrent attempt wins, which holds the next guess off for the
    delay. An attempt that succeeds gives its counts back, clears its address's failures on
    the account and makes the address known; so what the counters keep is failures.

    Accounts are counted by email, whether or not an account has it: an unknown email is
    limited exactly like a known one, so the limits do not tell which emails exist.
    """

    def __init__(self, attempts: LoginAttemptRepo, now_ms: Callable[[], int], *, per_account_ip: int, per_ip: int,
                 window_s: int, per_account: int, delay_s: int, max_delay_s: int, signups_per_ip: int = 10,
                 resets_per_email: int = 3, resets_per_ip: int = 10, reset_window_s: int = 3600) -> None:
        self._attempts = attempts
        self._now_ms = now_ms
        self._per_account_ip = per_account_ip
        self._per_ip = per_ip
        self._window_s = window_s
        self._per_account = per_account
        self._delay_s = delay_s
        self._max_delay_s = max_delay_s
        self._signups_per_ip = signups_per_ip
        self._resets_per_email = resets_per_email
        self._resets_per_ip = resets_per_ip
        self._reset_window_s = reset_window_s

    def signup(self, client_ip: str | None) -> None:
        """Count one sign-up from the address; RateLimited past the limit. Each sign-up costs a
        password hash and tells whether an email is taken, so an address gets only a few."""
        address = _address(client_ip)
        if address is None:
            return
        now_s = self._now_ms() // 1000
        window = now_s // self._window_s
        window_end_s = (window + 1) * self._window_s
        if self._attempts.add(f"signup#ip#{address}#{window}", 1, window_end_s) > self._signups_per_ip:
            retry_after_s = max(1, window_end_s - now_s)
            raise RateLimited(f"Too many sign-ups from this address. Try again in {retry_after_s} seconds.",
                              retry_after_s=retry_after_s, code="too_many_signups")

    def password_reset(self, email: str, client_ip: str | None) -> str | None:
        """Count one password-reset request for `email` from the address: None if it may be sent,
        else the limit it passed (`address` or `email`). Never raises: the answer must not change."""
        now_s = self._now_ms() // 1000
        window = now_s // self._reset_window_s
        window_end_s = (window + 1) * self._reset_window_s
        address = _address(client_ip)
        if address and self._attempts.add(f"reset#ip#{address}#{window}", 1, window_end_s) > self._resets_per_ip:
            return "address"
        account = hashlib.sha256(email.encode()).hexdigest()
        if self._attempts.add(f"reset#email#{account}#{window}", 1, window_end_s) > self._resets_per_email:
            return "email"
        return None

    def attempt(self, email: str, client_ip: str | None) -> Attempt:
        """Count one attempt; RateLimited (with the seconds to wait) past a limit."""
        now_s = self._now_ms() // 1000
        window, day = now_s // self._window_s, now_s // DAY_S
        window_end_s, day_end_s = (window + 1) * self._window_s, (day + 1) * DAY_S
        account = hashlib.sha256(email.encode()).hexdigest()
        address = _address(client_ip)
        where = address or _UNKNOWN_ADDRESS
        ip_counter = f"ip#{address}#{window}" if address else None
        pair_counter = f"pair#{account}#{where}#{window}"
        share_counter = f"share#{account}#{where}#{day}"
        add = self._attempts.add

        # The address first: once it is refused it stops counting against the accounts it tries.
        if ip_counter and add(ip_counter, 1, window_end_s) > self._per_ip:
            raise _refused(window_end_s - now_s)
        if add(pair_counter, 1, window_end_s) > self._per_account_ip:
            raise _refused(window_end_s - now_s)
        account_counter: str | None = f"account#{account}#{day}"
        if add(share_counter, 1, day_end_s) <= self._per_account_ip:
            failures = add(account_counter, 1, day_end_s)
        else:  # this address has had its say on the account's ceiling today
            failures, account_counter = self._attempts.count(account_counter, now_s), None
        attempt = Attempt(account, address, ip_counter, pair_counter, share_counter, account_counter,
                          window_end_s, day_end_s, took_lock=False)
        if failures <= self._per_account or self._known(account, address, now_s):
            return attempt
        delay_s = min(self._delay_s * 2 ** min(failures - self._per_account - 1, 32), self._max_delay_s)
        taken_until_s = self._attempts.claim(f"lock#{account}", now_s, now_s + delay_s)
        if taken_until_s:
            # Refused before its password was checked: no guess, so no failure to keep.
            self._give_back(attempt)
            self._attempts.add(pair_counter, -1, window_end_s)
            raise _refused(taken_until_s - now_s)
        return dataclasses.replace(attempt, took_lock=True)

    def succeeded(self, attempt: Attempt) -> None:
        """The attempt proved the password: it was no failure, the address's earlier failures on
        the account are forgiven, and the address is now known."""
        self._give_back(attempt)
        self._attempts.clear(attempt.pair_counter)
        if attempt.took_lock:
            self._attempts.clear(f"lock#{attempt.account}")
        if attempt.address:
            now_s = self._now_ms() // 1000
            self._attempts.add(_known_counter(attempt.account, attempt.address), 1, now_s + KNOWN_ADDRESS_S)

    def _give_back(self, attempt: Attempt) -> None:
        if attempt.ip_counter:
            self._attempts.add(attempt.ip_counter, -1, attempt.window_end_s)
        self._attempts.add(attempt.share_counter, -1, attempt.day_end_s)
        if attempt.account_counter:
            self._attempts.add(attempt.account_counter, -1, attempt.day_end_s)

    def _known(self, account: str, address: str | None, now_s: int) -> bool:
        return address is not None and self._attempts.count(_known_counter(account, address), now_s) > 0


def _known_counter(account: str, address: str) -> str:
    return f"known#{account}#{address}"


def _address(client_ip: str | None) -> str | None:
    """What a client is counted by: its IPv4 address, or its IPv6 /64 network."""
    if not client_ip:
        return None
    try:
        ip = ipaddress.ip_address(client_ip)
    except ValueError:
        return client_ip[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _refused(retry_after_s: int) -> RateLimited:
    retry_after_s = max(1, retry_after_s)
    return RateLimited(f"Too many failed login attempts. Try again in {retry_after_s} seconds.",
                       retry_after_s=retry_after_s, code="too_many_login_attempts")
