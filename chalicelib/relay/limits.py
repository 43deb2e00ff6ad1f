"""Request limits in the relay: requests and tokens per minute and requests in flight, per key.

    checked model ──► admit (one LimitRepo.admit) ──► hold ──► upstream ──► settle / release
                        │ refused: 429, Retry-After,                          │
                        │ nothing held                                        ▼
                        │ storage down: 503 (never admitted uncounted)     finish: the slots back,
                        ▼                                                  tokens corrected by
                     no limits for the key's scopes: no storage call       (actual - estimate)

A request counts in scope `key#<id>` (its plan's limits, each capped by the key's own) and, when the
plan limits its model, in `key#<id>#model#<model>` (the plan's limits for that model, capped by the
key's own). It is admitted once, under its first model, whichever model answers. `finish` runs on
every way out, once: the answer returned, a stream exhausted or closed, any error; a finish that
fails is left to the sweeper, which finishes the lease once it expires.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from chalicelib.core.domain import ApiKey, Group, Limits
from chalicelib.core.errors import RateLimited, StorageError
from chalicelib.storage.ports import Admission, LimitCharge, LimitRepo, ScopeCount

if TYPE_CHECKING:
    from chalicelib.relay.relay import RelayResult

log = logging.getLogger(__name__)
WINDOW_S = 60
LEASE_GRACE_S = 60  # beyond the request's timeout: a lease outlives any request still running
_NAMES = {"rpm": "requests per minute", "tpm": "tokens per minute", "concurrency": "requests in flight"}


@dataclass
class Ticket:
    """An admitted request: what it was counted as, and the headers that say so."""

    request_id: str
    charges: list[LimitCharge]
    minute: int
    estimate: int
    headers: dict[str, str] = field(default_factory=dict)
    used: int | None = None  # the tokens the answer used, once settled; None: nothing used
    finished: bool = False


def key_scope(key: ApiKey) -> str:
    return f"key#{key.key_id}"


def scopes(key: ApiKey, group: Group, model: str | None = None) -> list[tuple[str, Limits]]:
    """The scopes a request of `key` on `model` counts in, with their limits (unlimited ones left out)."""
    own = key.own_limits
    found = [(key_scope(key), group.limits.capped(own))]
    if model is not None and not group.model_limit(model).unlimited:
        found.append((f"{key_scope(key)}#model#{model}", group.model_limit(model).capped(own)))
    return [(scope, limits) for scope, limits in found if not limits.unlimited]


class RequestLimits:
    def __init__(self, repo: LimitRepo | None, *, wall_clock: Callable[[], float] = time.time) -> None:
        self._repo = repo
        self._wall_clock = wall_clock

    def admit(self, request_id: str, key: ApiKey, group: Group, model: str, tokens: int, *,
              timeout_s: float) -> Ticket | None:
        """Count the request (None when nothing limits it: no storage call); RateLimited if a limit is
        reached, StorageError if the counters cannot be written (the request is refused, never let by)."""
        charges = [LimitCharge(scope, tokens, limits.rpm, limits.tpm, limits.concurrency)
                   for scope, limits in scopes(key, group, model)]
        if not charges or self._repo is None:
            return None
        now_s = int(self._wall_clock())
        admission = self._repo.admit(request_id, charges, now_s + int(timeout_s) + LEASE_GRACE_S, now_s=now_s)
        headers = _headers(charges, admission, key_scope(key))
        if not admission.admitted:
            limit = admission.refused_limit or "rpm"
            refused = RateLimited(
                f"Rate limit reached for {_NAMES.get(limit, limit)} on this key. "
                f"Try again in {admission.retry_after_s}s.", retry_after_s=max(1, admission.retry_after_s))
            refused.limit_headers = headers  # type: ignore[attr-defined]
            raise refused
        return Ticket(request_id, charges, now_s // WINDOW_S, tokens, headers)

    def serve(self, ticket: Ticket | None, answer: Callable[[], RelayResult]) -> RelayResult:
        """The answer, with the request finished on every way out: now, or when its stream ends."""
        try:
            result = answer()
        except BaseException as exc:
            self.finish(ticket)
            if ticket is not None and isinstance(exc, Exception):
                exc.limit_headers = ticket.headers  # type: ignore[attr-defined]
            raise
        if ticket is None:
            return result
        result.limit_headers = ticket.headers
        if result.events is None:
            self.finish(ticket)
        else:
            result.events = _Finishing(result.events, lambda: self.finish(ticket))
        return result

    def finish(self, ticket: Ticket | None) -> None:
        """Give the slots back and correct the tokens counted, once."""
        if ticket is None or ticket.finished or self._repo is None:
            return
        ticket.finished = True
        delta = (ticket.used or 0) - ticket.estimate
        corrections = [(f"{charge.scope}#{ticket.minute}", delta) for charge in ticket.charges] if delta else []
        try:
            self._repo.finish(ticket.request_id, corrections)
        except StorageError:
            log.exception("could not finish the limits of %s; the sweeper will", ticket.request_id)


class _Finishing:
    """A stream's events that finish the request once exhausted, failed or closed (a class, not a
    generator: closing a generator that never ran skips its `finally`)."""

    def __init__(self, events: Iterator[str], on_end: Callable[[], None]) -> None:
        self._events = events
        self._on_end = on_end

    def __iter__(self) -> _Finishing:
        return self

    def __next__(self) -> str:
        try:
            return next(self._events)
        except BaseException:
            self._on_end()
            raise

    def close(self) -> None:
        try:
            close = getattr(self._events, "close", None)
            if close is not None:
                close()
        finally:
            self._on_end()


def _headers(charges: list[LimitCharge], admission: Admission, scope: str) -> dict[str, str]:
    """The x-ratelimit-* headers of the key scope, for the limits it has."""
    charge = next((c for c in charges if c.scope == scope), None)
    if charge is None:
        return {}
    count = next((c for c in admission.counts if c.scope == scope), None) or ScopeCount(scope, "", 0, 0, 0, 0)
    reset = f"{count.reset_s or admission.retry_after_s}s"
    headers: dict[str, str] = {}
    for kind, limit, used in (("requests", charge.rpm, count.requests), ("tokens", charge.tpm, count.tokens)):
        if limit is not None:
            headers[f"x-ratelimit-limit-{kind}"] = str(limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, limit - used))
            headers[f"x-ratelimit-reset-{kind}"] = reset
    return headers
