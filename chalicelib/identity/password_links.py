"""One-time set-password links: how an account the operator created gets its password, how an
operator helps a customer who lost theirs, and what a password-reset email carries
(password_reset.py).

    issue      token = `<account_id>.<32 random bytes>`, shown once to the operator or mailed;
      │        stored: its SHA-256 and expiry (now + TTL), replacing the account's earlier link
      │
      ├── set        the token and a new password: the link is deleted on condition that it is
      │              this one and unexpired (one use, even when two arrive at once), then the
      │              password is set and the account's session epoch moves on: every session ends
      ├── reissue    a new link: this one stops working
      └── TTL        expired: refused; the item goes later

The token carries its account id so that its link is found by key; the id is no secret, and
without the random part it opens nothing.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import Field, StrictStr

from chalicelib.core.domain import PasswordLink
from chalicelib.core.errors import InvalidRequest, NotFound
from chalicelib.identity.accounts import MAX_INPUT_LENGTH, Command
from chalicelib.identity.passwords import PasswordHasher, check_strength
from chalicelib.identity.sessions import token_hash
from chalicelib.storage.ports import AccountRepo, PasswordLinkRepo

# The console's page (its route in the fragment: browsers never send a fragment to servers, so the
# token stays out of access logs).
SET_PASSWORD_PATH = "/#/set-password"
_MAX_TOKEN_LENGTH = 200
_INVALID = ("This set-password link does not work: it was used already, replaced by a newer one, or has "
            "expired. Ask for a new password reset email, or ask the operator for a new link.")


class SetPassword(Command):
    token: StrictStr = Field(max_length=_MAX_TOKEN_LENGTH)
    password: StrictStr = Field(max_length=MAX_INPUT_LENGTH)


@dataclass(frozen=True)
class IssuedLink:
    """A new link, for the operator to hand over: the token is in this answer only."""

    token: str = field(repr=False)
    url: str = field(repr=False)
    expires_at: int  # epoch ms


class PasswordLinks:
    """Issues set-password links and sets passwords with them."""

    def __init__(self, links: PasswordLinkRepo, accounts: AccountRepo, hasher: PasswordHasher,
                 now_ms: Callable[[], int], *, ttl_s: int, console_url: str = "") -> None:
        self._links = links
        self._accounts = accounts
        self._hasher = hasher
        self._now_ms = now_ms
        self._ttl_s = ttl_s
        self._console_url = console_url.rstrip("/")

    def issue(self, account_id: str, *, ttl_s: int | None = None, console_url: str | None = None) -> IssuedLink:
        """A new link for the account, valid for `ttl_s` (default: the links' TTL) and starting with
        `console_url` (default: the configured console address); any earlier link stops working."""
        if self._accounts.get(account_id) is None:
            raise NotFound(f"No account `{account_id}`.", param="account_id")
        token = f"{account_id}.{secrets.token_urlsafe(32)}"
        now = self._now_ms()
        link = PasswordLink(account_id=account_id, link_hash=token_hash(token), created_at=now,
                            expires_at=now + (self._ttl_s if ttl_s is None else ttl_s) * 1000)
        self._links.put(link)
        base = self._console_url if console_url is None else console_url.rstrip("/")
        return IssuedLink(token=token, url=f"{base}{SET_PASSWORD_PATH}?token={token}", expires_at=link.expires_at)

    def set_password(self, command: SetPassword) -> None:
        """Set the password of the link's account, once; every session of the account ends.
        InvalidRequest (param `token`) for a link that does not work, naming no reason."""
        account_id, _, _ = command.token.partition(".")
        presented = token_hash(command.token)
        link = self._links.get(account_id) if account_id else None
        account = self._accounts.get(account_id) if link else None
        now = self._now_ms()
        if (link is None or account is None or link.expires_at <= now
                or not hmac.compare_digest(link.link_hash, presented)):
            raise InvalidRequest(_INVALID, param="token", code="invalid_token")
        # Checked before the link is used up, so that a weak password costs no new link.
        check_strength(command.password, account.email, param="password")
        password_hash = self._hasher.hash(command.password)
        if not self._links.consume(account_id, presented, self._now_ms()):
            raise InvalidRequest(_INVALID, param="token", code="invalid_token")
        self._accounts.set_password(account_id, password_hash)
