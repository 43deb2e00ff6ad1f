"""Request limits per key over HTTP: exact under concurrent requests, told in headers, never charged."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import pytest

from tests.api.conftest import Stack
from tests.api.test_fallback import backup, pair, spare  # noqa: F401 (fixtures)
from tests.api.test_tokens_api import Customer
from tests.fakes import upstream as faults

HELLO = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "Hello"}], "max_completion_tokens": 16}


def limited_customer(stack: Stack, usd: str = "5", *, model: str | None = None, **limits) -> tuple[str, str, str]:
    """A new plan with `limits` per key (on `model`, if given), and a funded account with a key on it:
    (plan, account_id, key)."""
    plan = f"limited-{uuid.uuid4().hex[:8]}"
    stack.admin("POST", "/admin/groups", {"name": plan})
    stack.admin("PUT", f"/admin/groups/{plan}/limits", {**({"model": model} if model else {}), **limits})
    account_id, _ = stack.customer(usd)
    stack.admin("PATCH", f"/admin/accounts/{account_id}", {"groups": [plan]})
    key = stack.admin("POST", f"/admin/accounts/{account_id}/keys", {"name": "limited", "group": plan})["key"]
    return plan, account_id, key


def ask(http: httpx.Client, key: str, body=HELLO) -> httpx.Response:
    return http.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})


def away_from_a_minute_boundary(margin_s: float = 8) -> None:
    """Per-minute windows start at whole minutes: a burst must fall within one."""
    into = time.time() % 60
    if into > 60 - margin_s:
        time.sleep(60 - into + 0.5)


def test_100_concurrent_requests_against_an_rpm_of_20_serve_exactly_20(stack, upstream):
    for _ in range(3):  # a burst that a busy machine stretched over two minutes is tried again, on a new key
        _, account_id, key = limited_customer(stack, rpm=20)
        away_from_a_minute_boundary()
        began = time.time()
        with httpx.Client(base_url=stack.url, timeout=30, limits=httpx.Limits(max_connections=100)) as http:
            with ThreadPoolExecutor(100) as pool:
                responses = list(pool.map(ask, [http] * 100, [key] * 100))
        if began // 60 == time.time() // 60:
            break  # every request fell in one window
    served = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert (len(served), len(refused)) == (20, 80), sorted({r.status_code for r in responses})
    for response in refused:
        assert response.json()["error"]["code"] == "rate_limit_exceeded"
        assert 1 <= int(response.headers["retry-after"]) <= 60
        assert response.headers["x-ratelimit-limit-requests"] == "20"
        assert response.headers["x-ratelimit-remaining-requests"] == "0"
        assert response.headers["x-ratelimit-reset-requests"].endswith("s")
        assert response.headers["x-tokenway-cost-usd"] == "0.00"
    # Nothing is charged for a refusal: the wallet paid exactly what the served requests cost.
    wallet = stack.wallet(account_id)
    spent = Decimal("5") - Decimal(wallet["balance_usd"])
    assert wallet["held_usd"] == "0.00"
    assert spent == sum(Decimal(r.headers["x-tokenway-cost-usd"]) for r in served) and spent > 0


def test_a_served_request_says_what_is_left(stack, upstream):
    _, _, key = limited_customer(stack, rpm=5, tpm=100_000)
    away_from_a_minute_boundary()
    response = ask(stack.http, key)
    assert response.status_code == 200, response.text
    headers = response.headers
    assert (headers["x-ratelimit-limit-requests"], headers["x-ratelimit-remaining-requests"]) == ("5", "4")
    assert headers["x-ratelimit-limit-tokens"] == "100000"
    # The estimate (the prompt and the output cap held for) is counted until the answer corrects it.
    assert 100_000 - 16 - 100 < int(headers["x-ratelimit-remaining-tokens"]) <= 100_000 - 16
    reset = int(headers["x-ratelimit-reset-requests"].removesuffix("s"))
    assert 1 <= reset <= 60 and headers["x-ratelimit-reset-tokens"] == f"{reset}s"


def test_an_unlimited_key_gets_no_rate_limit_headers(stack, upstream):
    _, key = stack.customer("1")
    response = ask(stack.http, key)
    assert response.status_code == 200
    assert not [name for name in response.headers if name.startswith("x-ratelimit-")]


def test_a_keys_own_lower_limit_applies_and_is_shown(stack, upstream):
    plan = f"limited-{uuid.uuid4().hex[:8]}"
    stack.admin("POST", "/admin/groups", {"name": plan})
    stack.admin("PUT", f"/admin/groups/{plan}/limits", {"rpm": 100, "concurrency": 10})
    stack.admin("PUT", f"/admin/groups/{plan}/limits", {"model": "deepseek-chat", "rpm": 50})
    alice = Customer(stack)
    stack.admin("PATCH", f"/admin/accounts/{alice.account_id}", {"groups": [plan]})
    created = alice.new_key(group=plan, rpm_limit=2)
    assert created["rpm_limit"] == 2
    limits = alice.call("GET", f"/api/tokens/{created['id']}/limits").json()["data"]
    assert limits == [
        {"scope": "key", "rpm": 2, "tpm": None, "concurrency": 10},
        {"scope": "model", "model": "deepseek-chat", "rpm": 2, "tpm": None, "concurrency": None},
    ]
    away_from_a_minute_boundary()
    assert [ask(stack.http, created["key"]).status_code for _ in range(3)] == [200, 200, 429]
    # Cleared, the plan's limits apply again.
    patched = alice.call("PATCH", f"/api/tokens/{created['id']}", {"rpm_limit": None})
    assert patched.status_code == 200 and patched.json()["rpm_limit"] is None
    limits = alice.call("GET", f"/api/tokens/{created['id']}/limits").json()["data"]
    assert [scope["rpm"] for scope in limits] == [100, 50]
    assert stack.admin("GET", "/admin/limits")["data"] and any(
        entry["group"] == plan and entry["model_limits"] == {"deepseek-chat": {"rpm": 50, "tpm": None,
                                                                                 "concurrency": None}}
        for entry in stack.admin("GET", "/admin/limits")["data"])


def test_a_concurrency_of_2_refuses_a_third_request_while_two_are_slow(stack, upstream):
    _, _, key = limited_customer(stack, concurrency=2)
    upstream.fail_next(faults.delay(1.5), times=2)
    with httpx.Client(base_url=stack.url, timeout=30) as http, ThreadPoolExecutor(2) as pool:
        asked = len(upstream.requests)
        slow = [pool.submit(ask, http, key) for _ in range(2)]
        deadline = time.monotonic() + 10
        while len(upstream.requests) < asked + 2:  # both slow ones hold their slots at the upstream
            assert time.monotonic() < deadline, "the two slow requests never reached the upstream"
            time.sleep(0.02)
        third = ask(http, key)
        assert third.status_code == 429, third.text
        assert third.headers["retry-after"] == "1"
        assert [future.result().status_code for future in slow] == [200, 200]
        assert ask(http, key).status_code == 200


@pytest.mark.parametrize("fault", ["upstream_500", "timeout", "no_first_token", "client_hangs_up"])
def test_every_fault_gives_the_slot_back(stack, upstream, fault):
    _, account_id, key = limited_customer(stack, concurrency=1)
    http = stack.http  # in process (a 5xx logs its cause); the stream over a socket, to hang up on
    with httpx.Client(base_url=stack.url, timeout=30) as socket:
        if fault == "upstream_500":
            upstream.fail_next(faults.http_error(500, "down"))
            assert ask(http, key).status_code == 502
        elif fault == "timeout":
            stack.admin("POST", "/admin/models", {"name": "limits-slow", "channel": "fake", "upstream_model": "slow",
                                                  "input_per_1m": "1", "output_per_1m": "1", "timeout_s": 0.5})
            upstream.fail_next(faults.delay(2))
            assert ask(http, key, {**HELLO, "model": "limits-slow"}).status_code == 504
        elif fault == "no_first_token":
            upstream.fail_next(faults.silent_first(6), path="/chat/completions")
            assert ask(http, key, {**HELLO, "stream": True}).status_code == 504
        else:
            upstream.fail_next(faults.paced(0.3), path="/chat/completions")
            with socket.stream("POST", "/v1/chat/completions", json={**HELLO, "stream": True},
                             headers={"Authorization": f"Bearer {key}"}) as response:
                assert response.status_code == 200
                next(response.iter_raw())
            # The server notices the hang-up at its next write, and the stream is settled then.
        deadline = time.monotonic() + 5
        while (response := ask(http, key)).status_code == 429 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert response.status_code == 200, response.text
    assert stack.wallet(account_id)["held_usd"] == "0.00"


def test_a_request_that_falls_back_is_counted_once(stack, upstream, request):
    primary, fallback = request.getfixturevalue("pair")  # the fallback tests' models, on two upstreams
    _, _, key = limited_customer(stack, rpm=2)
    away_from_a_minute_boundary()
    upstream.fail_next(faults.http_error(500))
    body = {"models": [primary, fallback], "messages": HELLO["messages"]}
    answered = ask(stack.http, key, body)
    assert answered.status_code == 200 and answered.json()["model"] == fallback
    assert answered.headers["x-ratelimit-remaining-requests"] == "1"
    assert [ask(stack.http, key, body).status_code for _ in range(2)] == [200, 429]


def test_the_messages_route_is_counted_and_refused_in_anthropics_envelope(stack, upstream):
    _, _, key = limited_customer(stack, rpm=1)
    away_from_a_minute_boundary()
    body = {"model": "deepseek-chat", "max_tokens": 16, "messages": [{"role": "user", "content": "Hello"}]}
    served = stack.http.post("/v1/messages", json=body, headers={"x-api-key": key})
    assert served.status_code == 200, served.text
    assert (served.headers["x-ratelimit-limit-requests"], served.headers["x-ratelimit-remaining-requests"]) == (
        "1", "0")
    refused = stack.http.post("/v1/messages", json=body, headers={"x-api-key": key})
    assert refused.status_code == 429 and refused.json()["error"]["type"] == "rate_limit_error"
    assert int(refused.headers["retry-after"]) >= 1 and refused.headers["x-ratelimit-remaining-requests"] == "0"
