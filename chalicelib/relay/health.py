"""Each channel's health as this process sees it: a circuit breaker, a success rate and a latency.

The breaker of a channel, driven by the outcome of each call the relay makes on it:

    closed ──(K retryable failures within W seconds)──► open
    open ──(C seconds later: one trial call let through)──► half-open
    half-open ──(the trial succeeds)──► closed
    half-open ──(the trial fails)──► open (for another C seconds)

One failure never opens it (K is at least 2); a non-retryable failure (the upstream refusing
this request) says nothing about the channel and is not counted. The operator may force a
channel `open` or `closed` (stored with the channel, so every process obeys it) or give it
back to the breaker (`auto`).

The state is kept in memory, per process: each container learns a failing channel from its
own calls within K failures, which is all a breaker needs; only the forced state is shared.
The success rate and mean latency are over the last WINDOW calls of the channel.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

# How many recent calls of a channel its success rate and mean latency are taken over.
STATS_WINDOW = 100


class BreakerState:
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerSettings:
    failures: int = 5  # K: retryable failures that open the breaker...
    window_s: float = 60.0  # W: ...within this many seconds
    cooldown_s: float = 30.0  # C: how long it stays open before one trial call

    def __post_init__(self) -> None:
        if self.failures < 2:
            raise ValueError("a breaker must not open on one failure")


@dataclass(frozen=True)
class ChannelHealth:
    """A channel's health as `GET /admin/channels` shows it."""

    name: str
    state: str  # closed, open or half_open: what the relay acts on, the forced state included
    forced: str  # auto, open or closed
    failures_in_window: int
    calls: int  # in the stats window
    success_rate: float | None  # None before the first call
    mean_latency_ms: float | None
    opened_at: float | None  # monotonic seconds, while open


@dataclass
class _Breaker:
    failures: deque[float] = field(default_factory=deque)  # when, for those within the window
    opened_at: float | None = None
    trial_started: bool = False  # half-open: the one trial call is under way
    outcomes: deque[tuple[bool, int]] = field(default_factory=lambda: deque(maxlen=STATS_WINDOW))


class ChannelBreakers:
    """The breakers of every channel this process has called. Thread-safe."""

    def __init__(self, settings: BreakerSettings | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings or BreakerSettings()
        self._clock = clock
        self._lock = threading.Lock()
        self._breakers: dict[str, _Breaker] = {}

    def state(self, channel: str, forced: str = "auto") -> str:
        """The breaker's state now (without taking the half-open trial)."""
        with self._lock:
            return self._state(self._breaker(channel), forced)

    def allows(self, channel: str, forced: str = "auto") -> bool:
        """Whether a call may go to the channel now. A half-open breaker lets one trial through:
        this call takes it, and the next ones wait for its outcome."""
        with self._lock:
            breaker = self._breaker(channel)
            state = self._state(breaker, forced)
            if state == BreakerState.CLOSED:
                return True
            if state == BreakerState.HALF_OPEN and not breaker.trial_started:
                breaker.trial_started = True
                return True
            return False

    def opened_at(self, channel: str) -> float:
        """When the channel's breaker last opened (0 if never): the longest open is tried first."""
        with self._lock:
            opened = self._breaker(channel).opened_at
            return 0.0 if opened is None else opened

    def succeeded(self, channel: str, latency_ms: int) -> None:
        with self._lock:
            breaker = self._breaker(channel)
            breaker.outcomes.append((True, latency_ms))
            # A success after the cool-down (the trial, or any call while every route was open) closes it.
            if breaker.opened_at is not None and self._cooled(breaker):
                breaker.opened_at = None
                breaker.failures.clear()
            breaker.trial_started = False

    def failed(self, channel: str, latency_ms: int) -> None:
        """A retryable failure of the channel (5xx, 429, timeout, refused connection)."""
        with self._lock:
            now = self._clock()
            breaker = self._breaker(channel)
            breaker.outcomes.append((False, latency_ms))
            self._forget_old(breaker, now)
            breaker.failures.append(now)
            if breaker.opened_at is not None:
                if self._cooled(breaker):
                    breaker.opened_at = now  # the trial failed: open for another cool-down
            elif len(breaker.failures) >= self._settings.failures:
                breaker.opened_at = now
            breaker.trial_started = False

    def abandoned(self, channel: str) -> None:
        """A call that ended without an outcome (the server's own error): a trial it took is free again."""
        with self._lock:
            self._breaker(channel).trial_started = False

    def health(self, channel: str, forced: str = "auto") -> ChannelHealth:
        with self._lock:
            breaker = self._breaker(channel)
            self._forget_old(breaker, self._clock())
            outcomes = list(breaker.outcomes)
            successes = sum(1 for ok, _ in outcomes if ok)
            return ChannelHealth(
                name=channel, state=self._state(breaker, forced), forced=forced,
                failures_in_window=len(breaker.failures), calls=len(outcomes),
                success_rate=successes / len(outcomes) if outcomes else None,
                mean_latency_ms=sum(ms for _, ms in outcomes) / len(outcomes) if outcomes else None,
                opened_at=breaker.opened_at,
            )

    def _state(self, breaker: _Breaker, forced: str) -> str:
        if forced == "open":
            return BreakerState.OPEN
        if forced == "closed" or breaker.opened_at is None:
            return BreakerState.CLOSED
        return BreakerState.HALF_OPEN if self._cooled(breaker) else BreakerState.OPEN

    def _cooled(self, breaker: _Breaker) -> bool:
        assert breaker.opened_at is not None
        return self._clock() - breaker.opened_at >= self._settings.cooldown_s

    def _forget_old(self, breaker: _Breaker, now: float) -> None:
        while breaker.failures and now - breaker.failures[0] > self._settings.window_s:
            breaker.failures.popleft()

    def _breaker(self, channel: str) -> _Breaker:
        return self._breakers.setdefault(channel, _Breaker())
