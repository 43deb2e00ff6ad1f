"""Fallback across models and channels, over HTTP: which model answers, what it costs, and each channel's breaker."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal

import pytest

from chalicelib import deps
from tests.api.conftest import Stack
from tests.api.test_relay_charges import charges, post, spent
from tests.fakes import upstream as faults
from tests.fakes.upstream import FakeUpstream

HELLO = [{"role": "user", "content": "Hello"}]
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def backup(stack: Stack) -> Iterator[FakeUpstream]:
    """A second upstream, for the channel that answers when the first fails."""
    server = FakeUpstream()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def spare(backup: FakeUpstream) -> Iterator[FakeUpstream]:
    backup.reset()
    yield backup
    backup.reset()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def channel(stack: Stack, upstream: FakeUpstream, **extra: object) -> str:
    name = unique("ch")
    stack.admin("POST", "/admin/channels", {"name": name, "base_url": upstream.base_url, "api_key": "up-key",
                                            **extra})
    return name


def model(stack: Stack, channel_name: str, *, input_usd: str = "1", output_usd: str = "1", **extra: object) -> str:
    name = extra.pop("name", None) or unique("m")
    stack.admin("POST", "/admin/models", {"name": name, "channel": channel_name, "input_per_1m": input_usd,
                                          "output_per_1m": output_usd, "max_output_tokens": 100, **extra})
    return str(name)


@pytest.fixture
def pair(stack: Stack, upstream: FakeUpstream, spare: FakeUpstream) -> tuple[str, str]:
    """(primary, backup): the primary on the scripted upstream at $1/$1 per 1M tokens, the backup on the
    other at $2 input, $4 output."""
    return (model(stack, channel(stack, upstream)),
            model(stack, channel(stack, spare), input_usd="2", output_usd="4"))


def test_a_failing_primary_falls_back_and_the_backup_is_charged_once_at_its_own_price(stack, upstream, spare, pair):
    primary, backup = pair
    account_id, key = stack.customer("1")
    upstream.fail_next(faults.http_error(500))
    spare.fail_next(faults.usage(prompt=1000, completion=500))

    response = post(stack, key, CHAT, {"models": [primary, backup], "messages": HELLO})

    assert response.status_code == 200, response.text
    assert response.json()["model"] == backup
    assert "models" not in spare.requests[-1].json and "models" not in upstream.requests[-1].json
    # 1000 × $2/1M + 500 × $4/1M, once.
    assert Decimal(response.headers["x-tokenway-cost-usd"]) == Decimal("0.004") == spent(stack, account_id, "1")
    [charge] = charges(stack, account_id)
    assert (charge["amount"], charge["model"]) == (-4_000_000, backup)


def test_model_and_models_together_try_model_first(stack, upstream, spare, pair):
    primary, backup = pair
    _, key = stack.customer("1")

    response = post(stack, key, CHAT, {"model": primary, "models": [backup], "messages": HELLO})

    assert response.json()["model"] == primary
    assert len(upstream.requests) == 1 and spare.requests == []


def test_a_refusal_by_the_primary_does_not_fall_back(stack, upstream, spare, pair):
    primary, backup = pair
    account_id, key = stack.customer("1")
    upstream.fail_next(faults.http_error(400, "bad temperature", param="temperature"))

    response = post(stack, key, CHAT, {"models": [primary, backup], "messages": HELLO})

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "temperature"
    assert spare.requests == []
    assert spent(stack, account_id, "1") == 0 and charges(stack, account_id) == []


def test_a_stream_falls_back_before_its_first_byte(stack, upstream, spare, pair):
    primary, backup = pair
    account_id, key = stack.customer("1")
    upstream.fail_next(faults.http_error(503))
    spare.fail_next(faults.usage(prompt=1000, completion=500))

    response = post(stack, key, CHAT, {"models": [primary, backup], "messages": HELLO, "stream": True,
                                       "stream_options": {"include_usage": True}})

    assert response.status_code == 200, response.text
    events = [json.loads(line[6:]) for line in response.text.splitlines()
              if line.startswith("data: {")]
    assert {event["model"] for event in events} == {backup}
    assert response.text.rstrip().endswith("data: [DONE]")
    assert events[-1]["usage"]["cost_usd"] == "0.004"
    assert spent(stack, account_id, "1") == Decimal("0.004")
    [charge] = charges(stack, account_id)
    assert (charge["amount"], charge["model"]) == (-4_000_000, backup)


def test_the_operators_fallbacks_serve_a_request_naming_one_model(stack, upstream, spare):
    primary_channel = channel(stack, upstream)
    backup = model(stack, channel(stack, spare))
    primary = model(stack, primary_channel)
    updated = stack.admin("POST", "/admin/models", {"name": primary, "channel": primary_channel,
                                                    "fallbacks": [backup]})
    assert updated["fallbacks"] == [backup]
    account_id, key = stack.customer("1")
    upstream.fail_next(faults.http_error(429))

    response = post(stack, key, CHAT, {"model": primary, "messages": HELLO})

    assert response.json()["model"] == backup
    [charge] = charges(stack, account_id)
    assert charge["model"] == backup


@pytest.mark.parametrize("models, status, code", [
    (["nope"], 404, "model_not_found"),
    (["text-embedding-3-small"], 400, "model_not_supported"),
    ([f"m{i}" for i in range(6)], 400, "invalid_value"),
])
def test_the_models_named_are_checked_before_anything_is_held(stack, upstream, pair, models, status, code):
    primary, _ = pair
    account_id, key = stack.customer("1")

    response = post(stack, key, CHAT, {"models": [primary, *models], "messages": HELLO})

    assert response.status_code == status, response.text
    assert (response.json()["error"]["param"], response.json()["error"]["code"]) == ("models", code)
    assert upstream.requests == []
    assert spent(stack, account_id, "1") == 0


def test_a_model_the_key_may_not_use_is_refused_naming_models(stack, upstream, pair):
    primary, backup = pair
    account = stack.admin("POST", "/admin/accounts", {"email": f"{uuid.uuid4().hex[:8]}@example.com"})
    key = stack.admin("POST", f"/admin/accounts/{account['account_id']}/keys",
                      {"name": "only-primary", "models": [primary]})["key"]

    response = post(stack, key, CHAT, {"models": [primary, backup], "messages": HELLO})

    assert response.status_code == 403
    assert response.json()["error"]["param"] == "models"
    assert upstream.requests == []


def test_routes_go_by_priority_then_share_by_weight(stack, upstream):
    first, second = channel(stack, upstream), channel(stack, upstream)
    name = model(stack, first, upstream_model="route-a", priority=0)
    stack.admin("POST", "/admin/models", {"name": name, "channel": second, "upstream_model": "route-b",
                                          "priority": 1})
    _, key = stack.customer("1")
    for _ in range(5):
        assert post(stack, key, CHAT, {"model": name, "messages": HELLO}).status_code == 200
    assert [r.json["model"] for r in upstream.requests] == ["route-b"] * 5

    upstream.reset()
    stack.admin("POST", "/admin/models", {"name": name, "channel": first, "priority": 1, "weight": 9})
    for _ in range(40):
        assert post(stack, key, CHAT, {"model": name, "messages": HELLO}).status_code == 200
    served = Counter(r.json["model"] for r in upstream.requests)
    # Weights 9 and 1: about 36 of 40 on route-a (fewer than 28 has a chance below one in ten thousand).
    assert served["route-a"] >= 28 and sum(served.values()) == 40


def test_a_channels_extra_headers_go_upstream(stack, upstream):
    name = model(stack, channel(stack, upstream, extra_headers={"X-Org": "acme", "X-Region": "eu"}))
    _, key = stack.customer("1")

    post(stack, key, CHAT, {"model": name, "messages": HELLO})

    sent = upstream.requests[-1].headers
    assert (sent["x-org"], sent["x-region"]) == ("acme", "eu")
    assert sent["authorization"] == "Bearer up-key"


def test_a_channel_may_not_override_the_gateways_credential(stack, upstream):
    response = stack.http.post("/admin/channels", json={
        "name": unique("ch"), "base_url": upstream.base_url, "api_key": "k", "extra_headers": {"Authorization": "x"},
    }, headers={"Authorization": f"Bearer {stack.settings.admin_token.get_secret_value()}"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "extra_headers"


# Long enough for the steps that expect the breaker still open on a busy machine; the test waits it out.
COOLDOWN_S = 3


@pytest.fixture
def quick_breakers(stack: Stack) -> Iterator[None]:
    """The in-process gateway with breakers that open after 2 failures and cool down in COOLDOWN_S."""
    original = deps.get_gateway()
    deps.use_gateway(deps.build_gateway(stack.settings.model_copy(update={
        "breaker_failures": 2, "breaker_window_s": 60, "breaker_cooldown_s": COOLDOWN_S})))
    yield
    deps.use_gateway(original)


def channel_row(stack: Stack, name: str) -> dict:
    return next(row for row in stack.admin("GET", "/admin/channels")["data"] if row["name"] == name)


def test_the_breaker_opens_after_k_failures_skips_the_channel_and_closes_after_the_cool_down(
        stack, upstream, spare, quick_breakers):
    flaky, steady = channel(stack, upstream), channel(stack, spare)
    name = model(stack, flaky, priority=1)
    stack.admin("POST", "/admin/models", {"name": name, "channel": steady, "priority": 0})
    _, key = stack.customer("1")
    upstream.fail_next(faults.http_error(502), times=2)

    for _ in range(2):
        assert post(stack, key, CHAT, {"model": name, "messages": HELLO}).status_code == 200
    row = channel_row(stack, flaky)
    assert (row["state"], row["failures_in_window"], row["success_rate"]) == ("open", 2, 0.0)
    assert len(upstream.requests) == 2 and len(spare.requests) == 2

    # Open: the flaky channel is skipped while the steady one serves.
    assert post(stack, key, CHAT, {"model": name, "messages": HELLO}).status_code == 200
    assert len(upstream.requests) == 2 and len(spare.requests) == 3

    time.sleep(COOLDOWN_S + 0.1)  # the cool-down: one trial goes to the flaky channel, its success closes it
    assert post(stack, key, CHAT, {"model": name, "messages": HELLO}).status_code == 200
    assert len(upstream.requests) == 3 and len(spare.requests) == 3
    assert channel_row(stack, flaky)["state"] == "closed"


def test_the_operator_forces_a_channel_open_closed_or_back_to_auto(stack, upstream, spare):
    first, second = channel(stack, upstream), channel(stack, spare)
    name = model(stack, first, priority=1)
    stack.admin("POST", "/admin/models", {"name": name, "channel": second, "priority": 0})
    _, key = stack.customer("1")

    forced = stack.admin("POST", f"/admin/channels/{first}/state", {"state": "open"})
    assert (forced["state"], forced["forced"]) == ("open", "open")
    post(stack, key, CHAT, {"model": name, "messages": HELLO})
    assert upstream.requests == [] and len(spare.requests) == 1

    stack.admin("POST", f"/admin/channels/{first}/state", {"state": "auto"})
    post(stack, key, CHAT, {"model": name, "messages": HELLO})
    assert len(upstream.requests) == 1
    # Adding the channel again keeps the state the operator forced.
    stack.admin("POST", f"/admin/channels/{second}/state", {"state": "closed"})
    stack.admin("POST", "/admin/channels", {"name": second, "base_url": spare.base_url, "api_key": "up-key"})
    assert channel_row(stack, second)["forced"] == "closed"

    missing = stack.http.post("/admin/channels/nowhere/state", json={"state": "open"},
                              headers={"Authorization": f"Bearer {stack.settings.admin_token.get_secret_value()}"})
    assert missing.status_code == 404
    bad = stack.http.post(f"/admin/channels/{first}/state", json={"state": "half"},
                          headers={"Authorization": f"Bearer {stack.settings.admin_token.get_secret_value()}"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "state"


def test_every_channel_forced_open_answers_unavailable_and_costs_nothing(stack, upstream):
    only = channel(stack, upstream)
    name = model(stack, only)
    account_id, key = stack.customer("1")
    stack.admin("POST", f"/admin/channels/{only}/state", {"state": "open"})

    response = post(stack, key, CHAT, {"model": name, "messages": HELLO})

    assert response.status_code == 502
    assert upstream.requests == []
    assert spent(stack, account_id, "1") == 0
