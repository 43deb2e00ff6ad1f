"""The relay under request limits, over SQLite storage: admitted before the hold, finished on every way out."""

from __future__ import annotations

import httpx
import pytest

from chalicelib.core.errors import RateLimited, StorageError, UpstreamUnavailable
from chalicelib.keys.plans import KeyPlans
from chalicelib.providers.openai_compat import OpenAICompatAdapter
from chalicelib.relay.limits import RequestLimits
from chalicelib.relay.relay import Relay
from chalicelib.storage.sqlite.limit_repo import SqliteLimitRepo
from tests.unit.conftest import World, chat_reply, chunk, sse
from tests.unit.relay_requests import chat, embed, images


@pytest.fixture
def limited(world: World) -> World:
    """The world's relay, counting its key's limits in the world's database."""
    world.fund("1")
    world.limit_repo = SqliteLimitRepo(world.store.db)
    http = httpx.Client(transport=httpx.MockTransport(world._answer))
    world.relay = Relay(world.catalog, world.billing, {"openai": OpenAICompatAdapter(http)}, world.usage,
                        plans=KeyPlans(world.catalog, world.accounts), default_timeout_s=5,
                        limits=RequestLimits(world.limit_repo, wall_clock=lambda: world.time_ms / 1000))
    return world


def break_the_limit_counters(world: World) -> None:
    with world.store.db.write() as tx:
        tx.execute("DROP TABLE limit_counters")


def test_a_refused_request_holds_nothing_and_never_reaches_the_upstream(limited):
    limited.change_key(rpm_limit=1)
    assert chat(limited, "req_1").body is not None
    with pytest.raises(RateLimited) as refused:
        chat(limited, "req_2")
    assert refused.value.retry_after_s >= 1
    assert refused.value.limit_headers["x-ratelimit-remaining-requests"] == "0"
    assert len(limited.sent) == 1 and limited.balance().held == 0
    assert [event.request_id for event in limited.usage.events] == ["req_1"]


def test_limits_that_cannot_be_counted_refuse_the_request(limited):
    limited.change_key(concurrency_limit=5)
    break_the_limit_counters(limited)
    with pytest.raises(StorageError):
        chat(limited)
    assert limited.sent == [] and limited.balance().held == 0


def test_an_unlimited_key_makes_no_limiter_call(limited):
    break_the_limit_counters(limited)  # any call to the counters would fail
    assert chat(limited).body is not None
    assert embed(limited, input="hi").body is not None


def test_the_tokens_counted_are_corrected_to_what_the_answer_used(limited):
    limited.handler = lambda request: httpx.Response(200, json=chat_reply(prompt=10, completion=5))
    limited.change_key(tpm_limit=2_100)
    first = chat(limited, "req_1")
    estimated = 2_100 - int(first.limit_headers["x-ratelimit-remaining-tokens"])
    assert estimated > 1_000  # the prompt and the model's output cap
    # The first used 15 tokens: the second's headers count those and its own estimate.
    second = chat(limited, "req_2")
    assert int(second.limit_headers["x-ratelimit-remaining-tokens"]) == 2_100 - 15 - estimated
    # Uncorrected, three estimates would not fit; corrected, they do.
    assert chat(limited, "req_3").body is not None


def test_embeddings_count_their_input_and_images_no_tokens(limited):
    limited.handler = lambda request: httpx.Response(200, json={
        "data": [{"embedding": [0.1], "index": 0}] if "embeddings" in str(request.url) else [{"url": "u"}],
        "usage": {"prompt_tokens": 3, "total_tokens": 3}})
    limited.change_key(tpm_limit=1_000, rpm_limit=10)
    answered = embed(limited, "req_1", input="hello there")
    assert int(answered.limit_headers["x-ratelimit-remaining-tokens"]) < 1_000
    pictured = images(limited, "req_2")
    assert pictured.limit_headers["x-ratelimit-remaining-requests"] == "8"


def test_a_failed_upstream_and_a_closed_stream_give_the_slot_back(limited):
    limited.change_key(concurrency_limit=1)
    limited.handler = lambda request: httpx.Response(500, json={"error": {"message": "down"}})
    with pytest.raises(UpstreamUnavailable):
        chat(limited, "req_1")
    limited.handler = lambda request: httpx.Response(
        200, content=sse(chunk("Hel"), chunk("lo"), chunk(finish="stop", choices=True)),
        headers={"content-type": "text/event-stream"})
    streamed = chat(limited, "req_2", stream=True)
    with pytest.raises(RateLimited):
        chat(limited, "req_3")  # one in flight: the stream
    next(streamed.events)
    streamed.events.close()  # the client hung up
    limited.handler = lambda request: httpx.Response(200, json=chat_reply())
    assert chat(limited, "req_4").body is not None
    assert limited.balance().held == 0
