"""Typed values of console sign-in: a stored session and the principal a request acts for."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConsoleSession:
    """A session as stored: SHA-256 hashes of its token and CSRF token, never the tokens."""

    session_hash: str
    account_id: str
    session_epoch: int  # the account's epoch at login; the session dies when it moves on
    csrf_hash: str
    created_at: int  # epoch ms
    expires_at: int  # epoch ms


@dataclass(frozen=True)
class Principal:
    """Who a console request acts for, and how it proved it."""

    account_id: str
    role: str
    session_hash: str
    via_cookie: bool
