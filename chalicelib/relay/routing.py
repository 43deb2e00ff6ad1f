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
from chalicelib.providers.port import Operation, ProviderAdapter
from chalicelib.relay.health import BreakerState, ChannelBreakers

T = TypeVar("T")


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
             timeout_s: float, model: str, on_route: Callable[[ResolvedRoute], None]) -> Any:
        """Send an OpenAI-format body to the first channel that answers (see `send_each`)."""
        def attempt(route: ResolvedRoute) -> Any:
            routed = {**body, "model": route.upstream_model}
            adapter = self._adapters[route.channel.kind]
            if stream:
                return adapter.stream(route.channel, operation, routed, timeout_s=timeout_s)
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
