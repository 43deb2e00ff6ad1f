"""Console sessions: opened at login, presented as a Bearer token or a cookie, checked on every request.

A session's token (`sess_…`) and CSRF token are shown once, in the login
response; storage keeps only their SHA-256. A session is valid while it has
not expired (checked here: DynamoDB's TTL removes items lazily, up to days
later) and while it carries its account's current `session_epoch`.

    login            session stored with the account's epoch e, expires_at = now + TTL
      │
      ├── logout     that one session item is deleted
      ├── password   changed, or set with a link: the account's epoch becomes e + 1, and
      │              every session of it dies at once
      └── TTL        expired: refused from `expires_at` on; the item goes later
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from chalicelib.core.domain import Account, ConsoleSession, Principal
from chalicelib.core.errors import InvalidSession, PermissionDenied
from chalicelib.keys.auth import KEY_PREFIX, bearer_token
from chalicelib.storage.ports import AccountRepo, SessionRepo

SESSION_PREFIX = "sess_"
COOKIE_NAME = "tokenway_session"
CSRF_HEADER = "x-csrf-token"
# Methods a browser may send cross-site without the page's say-so; anything
# else carrying the cookie must prove it comes from the console (CSRF token).
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_MAX_TOKEN_LENGTH = 200

_NO_SESSION = ("You are not logged in. Log in with POST /api/auth/login and send the session token as "
               "`Authorization: Bearer sess_…` or the `tokenway_session` cookie.")
_DEAD_SESSION = "Invalid or expired session; log in again."


@dataclass(frozen=True)
class OpenedSession:
    """A new session's secrets, for the login response only."""

    token: str = field(repr=False)
    csrf_token: str = field(repr=False)
    expires_at: int  # epoch ms


def token_hash(token: str) -> str:
    """How a session or CSRF token is stored and looked up."""
    return hashlib.sha256(token.encode()).hexdigest()


class ConsoleAuth:
    """Opens, checks and closes console sessions."""

    def __init__(self, sessions: SessionRepo, accounts: AccountRepo, now_ms: Callable[[], int], *,
                 ttl_s: int) -> None:
        self._sessions = sessions
        self._accounts = accounts
        self._now_ms = now_ms
        self._ttl_ms = ttl_s * 1000

    def open(self, account: Account) -> OpenedSession:
        """A new session for `account`, valid until its epoch moves on or it expires."""
        token = SESSION_PREFIX + secrets.token_urlsafe(32)
        csrf_token = secrets.token_urlsafe(32)
        now = self._now_ms()
        session = ConsoleSession(session_hash=token_hash(token), account_id=account.account_id,
                                 session_epoch=account.session_epoch, csrf_hash=token_hash(csrf_token),
                                 created_at=now, expires_at=now + self._ttl_ms)
        self._sessions.create(session)
        return OpenedSession(token=token, csrf_token=csrf_token, expires_at=session.expires_at)

    def authenticate(self, headers: Mapping[str, str], method: str) -> Principal:
        """Who the request acts for: InvalidSession (401) without a live session, PermissionDenied
        (403) for a cookie-borne unsafe request without its CSRF token, or a disabled account."""
        headers = {name.lower(): value for name, value in headers.items()}
        token, via_cookie = _presented_token(headers)
        if not token.startswith(SESSION_PREFIX) or len(token) > _MAX_TOKEN_LENGTH:
            raise InvalidSession(_DEAD_SESSION)
        session = self._sessions.get(token_hash(token))
        if session is None or session.expires_at <= self._now_ms():
            raise InvalidSession(_DEAD_SESSION)
        account = self._accounts.get(session.account_id)
        if account is None or account.session_epoch != session.session_epoch:
            raise InvalidSession(_DEAD_SESSION)
        # A Bearer token is never attached by a browser on its own, so only the
        # cookie needs proof that the console page sent the request.
        if via_cookie and method.upper() not in _SAFE_METHODS:
            presented = headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(token_hash(presented), session.csrf_hash):
                raise PermissionDenied("Missing or incorrect X-CSRF-Token header: a request authenticated by the "
                                       "session cookie must send the csrf_token from the login response.",
                                       code="csrf_failed")
        if account.status != "active":
            raise PermissionDenied("This account is disabled.", code="account_disabled")
        return Principal(account_id=account.account_id, role=account.role, session_hash=session.session_hash,
                         via_cookie=via_cookie)

    def close(self, principal: Principal) -> None:
        """End the principal's session (logout)."""
        self._sessions.delete(principal.session_hash)

    @staticmethod
    def require_admin(principal: Principal) -> None:
        """PermissionDenied (403) unless the principal is an operator."""
        if principal.role != "admin":
            raise PermissionDenied("This endpoint is for administrators.", code="admin_required")


def _presented_token(headers: Mapping[str, str]) -> tuple[str, bool]:
    """The session token and whether it came in the cookie; a Bearer token comes first."""
    authorization = headers.get("authorization", "").strip()
    if authorization:
        token = bearer_token(authorization)
        if token is None:
            raise InvalidSession("Malformed Authorization header. Send the session token as "
                                 "`Authorization: Bearer sess_…`.")
        if token.startswith(KEY_PREFIX):
            raise InvalidSession("Console endpoints take a session token from POST /api/auth/login, "
                                 "not an API key.")
        return token, False
    token = _cookie(headers.get("cookie", ""), COOKIE_NAME)
    if token is None:
        raise InvalidSession(_NO_SESSION)
    return token, True


def _cookie(header: str, name: str) -> str | None:
    for pair in header.split(";"):
        key, sep, value = pair.strip().partition("=")
        if sep and key == name and value:
            return value.strip('"')
    return None
