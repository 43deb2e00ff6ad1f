"""Each channel's circuit breaker, on an injected clock, and the order the relay tries a model's channels in."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from chalicelib.catalog.catalog import ResolvedRoute
from chalicelib.core.domain import Channel
from chalicelib.relay.health import BreakerSettings, BreakerState, ChannelBreakers
from chalicelib.relay.routing import healthy_first, weighted_order


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breakers(clock: Clock) -> ChannelBreakers:
    return ChannelBreakers(BreakerSettings(failures=3, window_s=60, cooldown_s=30), clock=clock)


def test_one_failure_never_opens_a_breaker():
    with pytest.raises(ValueError):
        BreakerSettings(failures=1)


def test_it_opens_after_k_failures_within_the_window_and_not_before(breakers, clock):
    breakers.failed("a", 10)
    clock.now += 10
    breakers.failed("a", 10)
    assert breakers.state("a") == BreakerState.CLOSED and breakers.allows("a")
    clock.now += 10
    breakers.failed("a", 10)
    assert breakers.state("a") == BreakerState.OPEN
    assert not breakers.allows("a")
    assert breakers.health("a").failures_in_window == 3


def test_failures_spread_wider_than_the_window_do_not_open_it(breakers, clock):
    for _ in range(5):
        breakers.failed("a", 10)
        clock.now += 31  # never three within 60 s
    assert breakers.state("a") == BreakerState.CLOSED
    assert breakers.health("a").failures_in_window == 1  # the last; the one before is 62 s old


def test_after_the_cool_down_one_trial_goes_through_and_its_success_closes_it(breakers, clock):
    for _ in range(3):
        breakers.failed("a", 10)
    clock.now += 29
    assert not breakers.allows("a")
    clock.now += 1
    assert breakers.state("a") == BreakerState.HALF_OPEN
    assert breakers.allows("a")  # the trial
    assert not breakers.allows("a")  # the others wait for its outcome
    breakers.succeeded("a", 10)
    assert breakers.state("a") == BreakerState.CLOSED
    assert breakers.health("a").failures_in_window == 0
    breakers.failed("a", 10)  # one more failure does not re-open it
    assert breakers.allows("a")


def test_a_failed_trial_opens_it_for_another_cool_down(breakers, clock):
    for _ in range(3):
        breakers.failed("a", 10)
    clock.now += 30
    assert breakers.allows("a")
    breakers.failed("a", 10)
    assert breakers.state("a") == BreakerState.OPEN
    clock.now += 29
    assert not breakers.allows("a")
    clock.now += 1
    assert breakers.allows("a")


def test_a_trial_abandoned_without_an_outcome_frees_the_next_one(breakers, clock):
    for _ in range(3):
        breakers.failed("a", 10)
    clock.now += 30
    assert breakers.allows("a")
    breakers.abandoned("a")
    assert breakers.allows("a")


def test_forced_states_override_the_breaker(breakers):
    assert breakers.state("a", "open") == BreakerState.OPEN and not breakers.allows("a", "open")
    for _ in range(3):
        breakers.failed("a", 10)
    assert breakers.state("a", "closed") == BreakerState.CLOSED and breakers.allows("a", "closed")
    assert breakers.state("a", "auto") == BreakerState.OPEN
    assert breakers.health("a", "closed").forced == "closed"


def test_success_rate_and_mean_latency_are_over_recent_calls(breakers):
    assert breakers.health("a").success_rate is None
    breakers.succeeded("a", 100)
    breakers.succeeded("a", 300)
    breakers.failed("a", 200)
    breakers.succeeded("a", 200)
    health = breakers.health("a")
    assert (health.calls, health.success_rate, health.mean_latency_ms) == (4, 0.75, 200)
    assert breakers.health("b").calls == 0  # per channel


def route(name: str, priority: int = 0, weight: int = 1, state: str = "auto") -> ResolvedRoute:
    return ResolvedRoute(Channel(name, f"http://{name}.test/v1", "k", state=state), name, priority, weight)


def names(routes: list[ResolvedRoute]) -> list[str]:
    return [r.channel.name for r in routes]


def test_higher_priorities_come_first_whatever_the_draw():
    routes = [route("low", -1), route("b", 0), route("top", 5), route("a", 0)]
    for seed in range(20):
        ordered = names(weighted_order(routes, random.Random(seed)))
        assert ordered[0] == "top" and ordered[-1] == "low" and set(ordered[1:3]) == {"a", "b"}


class Draws(random.Random):
    """A random source that answers the given draws in turn."""

    def __init__(self, *draws: float) -> None:
        super().__init__(0)
        self._draws = list(draws)

    def random(self) -> float:
        return self._draws.pop(0)


def test_within_a_priority_the_draw_picks_by_weight():
    routes = [route("heavy", weight=3), route("light", weight=1)]
    # Weight 4 in all: a draw below 3/4 lands on `heavy`, above on `light`.
    assert names(weighted_order(routes, Draws(0.74, 0.0))) == ["heavy", "light"]
    assert names(weighted_order(routes, Draws(0.75, 0.0))) == ["light", "heavy"]


def test_weights_share_the_first_place_in_proportion():
    rng = random.Random(7)
    routes = [route("heavy", weight=3), route("light", weight=1)]
    firsts = Counter(names(weighted_order(routes, rng))[0] for _ in range(4000))
    assert 2800 < firsts["heavy"] < 3200


def test_open_channels_go_last_the_longest_open_first(breakers, clock):
    for _ in range(3):
        breakers.failed("late", 10)
    clock.now -= 5
    for _ in range(3):
        breakers.failed("early", 10)
    ordered = healthy_first([route("late"), route("early"), route("ok"), route("forced", state="open")], breakers)
    assert names(ordered) == ["ok", "forced", "early", "late"]
