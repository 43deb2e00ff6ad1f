"""The order in which the relay tries a model's channels, and the calls on them.

Highest `priority` first; among routes of one priority, a weighted random order (a route of
weight 3 comes first three times as often as one of weight 1); then the next priority. A
channel whose breaker is open goes after every other route, so it is skipped while another
route exists; when all are open, the one open longest is tried first (see health.py).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import groupby
from typing import Any, TypeVar

from chalicelib.catalog.catalog import ResolvedRoute
from chalicelib.core.errors import ProviderError, UpstreamUnavailable
from chalicelib.providers.first_token import has_token
from chalicelib.providers.port import Operation, ProviderAdapter
from chalicelib.relay.health import BreakerState, ChannelBreakers

T = TypeVar("T")
C = TypeVar("C")  # a chunk of a stream


def weighted_order(routes: Sequence[ResolvedRoute], rng: random.Random) -> list[ResolvedRoute]:
    """The routes by priority, highest first, each priority in a weighted random order."""
    ordered: list[ResolvedRoute] = []
    by_priority = sorted(routes, key=lambda route: -route.priority)
    for _, same in groupby(by_priority, key=lambda route: route.priority):
        pool = list(same)
        while pool:
            # One draw per place: the chance of coming next is the route's share of the weight left.
            point = rng.random() * sum(route.weight for route in pool)
            for index, route in enumerate(pool):
                point -= route.weight
                if point < 0 or index == len(pool) - 1:
                    ordered.append(pool.pop(index))
                    break
    return ordered


def healthy_first(routes: list[ResolvedRoute], breakers: ChannelBreakers) -> list[ResolvedRoute]:
    """The routes with those whose breaker is open moved last, the longest open first among them."""
    usable = [r for r in routes if breakers.state(r.channel.name, r.channel.state) != BreakerState.OPEN]
    shut = [r for r in routes if r not in usable]
    return usable + sorted(shut, key=lambda route: breakers.opened_at(route.channel.name))


class Dispatcher:
    """Sends one operation to a model's channels in turn until one answers."""

    def __init__(self, adapters: Mapping[str, ProviderAdapter], breakers: ChannelBreakers, rng: random.Random, *,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._adapters = adapters  # by channel kind
        self._breakers = breakers
        self._rng = rng
        self._monotonic = monotonic

    def send(self, routes: Sequence[ResolvedRoute], operation: Operation, body: dict[str, Any], *, stream: bool,
             timeout_s: float, model: str, on_route: Callable[[ResolvedRoute], None],
             first_token_s: float | None = None) -> Any:
        """Send an OpenAI-format body to the first channel that answers (see `send_each`); a stream
        once its first token came: until then nothing has reached the client, so a stream that
        breaks or keeps silent past `first_token_s` moves on too."""
        def attempt(route: ResolvedRoute) -> Any:
            routed = {**body, "model": route.upstream_model}
            adapter = self._adapters[route.channel.kind]
            if stream:
                return until_first_token(adapter.stream(route.channel, operation, routed, timeout_s=timeout_s,
                                                        first_token_s=first_token_s))
            return adapter.call(route.channel, operation, routed, timeout_s=timeout_s)

        return self.send_each(routes, attempt, model=model, on_route=on_route)

    def adapter(self, route: ResolvedRoute) -> ProviderAdapter:
        """The adapter of the route's channel."""
        return self._adapters[route.channel.kind]

    def send_each(self, routes: Sequence[ResolvedRoute], attempt: Callable[[ResolvedRoute], T], *, model: str,
                  on_route: Callable[[ResolvedRoute], None]) -> T:
        """Try the channels by priority, weighted among equals, skipping those whose breaker is open;
        the first answer of `attempt` wins (for a stream, once its status is known). A failure another
        channel might not have (5xx, timeout, 429, refused connection) moves on to the next. When every
        breaker is open, the channels the operator did not force open are tried anyway, the one open
        longest first. `on_route` hears of each channel as it is tried."""
        failure: ProviderError | None = None
        for route in self._to_try(healthy_first(weighted_order(routes, self._rng), self._breakers)):
            try:
                return self._attempt(route, attempt, on_route)
            except ProviderError as exc:
                if not exc.retryable:
                    raise
                failure = exc
        if failure is None:
            raise UpstreamUnavailable(f"Every channel of the model `{model}` is out of service.")
        raise failure

    def _to_try(self, ordered: list[ResolvedRoute]) -> Iterator[ResolvedRoute]:
        """The routes whose breakers let a call through, asked one at a time (asking may start a half-open
        breaker's one trial); if none does, the ones the operator did not force open, tried anyway."""
        skipped = []
        for route in ordered:
            if self._breakers.allows(route.channel.name, route.channel.state):
                yield route
            else:
                skipped.append(route)
        if len(skipped) == len(ordered):
            yield from (route for route in skipped if route.channel.state != "open")

    def _attempt(self, route: ResolvedRoute, attempt: Callable[[ResolvedRoute], T],
                 on_route: Callable[[ResolvedRoute], None]) -> T:
        """One call on one channel, its outcome told to the channel's breaker."""
        on_route(route)
        began = self._monotonic()
        healthy: bool | None = None  # None: the call ended some other way, which says nothing of the channel
        try:
            answer = attempt(route)
            healthy = True
            return answer
        except ProviderError as exc:
            # The upstream refusing this request (a 400) is a channel that works.
            healthy = not exc.retryable
            raise
        finally:
            elapsed_ms = int((self._monotonic() - began) * 1000)
            if healthy is True:
                self._breakers.succeeded(route.channel.name, elapsed_ms)
            elif healthy is False:
                self._breakers.failed(route.channel.name, elapsed_ms)
            else:
                self._breakers.abandoned(route.channel.name)


def until_first_token(chunks: Iterator[C], is_token: Callable[[C], bool] = has_token) -> Iterator[C]:
    """The stream, read up to its first chunk carrying a token (or its end) before it is handed out;
    what was read comes first. A failure until then is the channel's, and another may answer."""
    read: list[C] = []
    for chunk in chunks:
        read.append(chunk)
        if is_token(chunk):
            break
    return _Resumed(read, chunks)


class _Resumed(Iterator[C]):
    """Chunks already read, then the rest of the stream; closing it closes the stream (at once,
    even before the first chunk is asked for, which a generator would not)."""

    def __init__(self, read: list[C], rest: Iterator[C]) -> None:
        self._read = iter(read)
        self._rest = rest

    def __next__(self) -> C:
        for chunk in self._read:
            return chunk
        return next(self._rest)

    def close(self) -> None:
        close = getattr(self._rest, "close", None)
        if close is not None:
            close()
