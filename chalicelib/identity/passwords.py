"""Console passwords: the strength rule, and scrypt hashes that name their own parameters.

A stored hash reads `scrypt$<n>$<r>$<p>$<salt, base64>$<hash, base64>`, so the
cost can be raised later without breaking the hashes already stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import unicodedata

from chalicelib.core.errors import InvalidRequest

MIN_LENGTH = 10
MAX_LENGTH = 256
PASSWORD_RULE = (f"A password must be {MIN_LENGTH} to {MAX_LENGTH} characters long, contain at least one letter "
                 "and one character that is not a letter, and not contain the part of the email address before "
                 "the @.")

_SALT_BYTES = 16
_KEY_BYTES = 32
# Refuse stored parameters that would take unbounded memory or time to check.
_MAX_N = 2**20
_MAX_R = 32
_MAX_P = 16


def check_strength(password: str, email: str, *, param: str) -> None:
    """InvalidRequest (`weak_password`, naming `param`) unless the password follows the rule."""
    local_part = email.rpartition("@")[0].casefold()
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        problem = f"This password has {len(password)} characters."
    elif not any(char.isalpha() for char in password):
        problem = "This password has no letter."
    elif all(char.isalpha() for char in password):
        problem = "This password has only letters."
    elif local_part and local_part in password.casefold():
        problem = "This password contains part of the email address."
    else:
        return
    raise InvalidRequest(f"{problem} {PASSWORD_RULE}", param=param, code="weak_password")


class PasswordHasher:
    """scrypt with a random salt per password; checks compare in constant time."""

    def __init__(self, *, n: int = 2**14, r: int = 8, p: int = 1) -> None:
        self._n, self._r, self._p = n, r, p
        self._dummy: str | None = None

    def hash(self, password: str) -> str:
        """A new self-describing hash of `password`."""
        salt = secrets.token_bytes(_SALT_BYTES)
        key = _scrypt(password, salt, self._n, self._r, self._p)
        return "$".join(["scrypt", str(self._n), str(self._r), str(self._p), _b64(salt), _b64(key)])

    def verify(self, password: str, stored: str | None) -> bool:
        """Whether `password` matches `stored`. With nothing stored (an unknown email, or an
        account without a password) the same work is done against a dummy hash, and the
        answer is False: how long a login takes does not tell which emails exist."""
        if stored is None:
            self._check(password, self._dummy_hash())
            return False
        return self._check(password, stored)

    def _check(self, password: str, stored: str) -> bool:
        try:
            scheme, n, r, p, salt, key = stored.split("$")
            n_, r_, p_ = int(n), int(r), int(p)
            if scheme != "scrypt" or not (1 < n_ <= _MAX_N and 0 < r_ <= _MAX_R and 0 < p_ <= _MAX_P):
                return False
            expected = base64.b64decode(key.encode(), validate=True)
            actual = _scrypt(password, base64.b64decode(salt.encode(), validate=True), n_, r_, p_, len(expected))
        except ValueError:  # not a hash this code wrote: it matches nothing
            return False
        return hmac.compare_digest(actual, expected)

    def _dummy_hash(self) -> str:
        # Made on first use rather than at start-up, which every cold start would pay for.
        if self._dummy is None:
            self._dummy = self.hash(secrets.token_urlsafe(16))
        return self._dummy


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int = _KEY_BYTES) -> bytes:
    # NFKC: the same password typed on different keyboards or systems may arrive
    # as differently composed Unicode; it must still match.
    secret = unicodedata.normalize("NFKC", password).encode()
    # scrypt needs about 128 * r * n bytes; hashlib refuses more than 32 MiB unless told.
    return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, dklen=length, maxmem=256 * r * (n + p) + 2**20)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
