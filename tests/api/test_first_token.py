"""A stream's first token within TOKENWAY_FIRST_TOKEN_TIMEOUT_S (3 s in these tests), over HTTP: a silent
upstream moves on to the next model before any byte reached the client, or fails with 504, its hold released."""

from __future__ import annotations

import json
import time
from decimal import Decimal

from tests.api.test_fallback import CHAT, HELLO, backup, pair, spare  # noqa: F401 (fixtures)
from tests.api.test_relay_charges import charges, post, spent
from tests.fakes import upstream as faults

STREAM = {"messages": HELLO, "stream": True, "stream_options": {"include_usage": True}}


def events(text: str) -> list[dict]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


def test_a_stream_with_no_first_token_fails_with_504_and_costs_nothing(stack, upstream):
    account_id, key = stack.customer("1")
    upstream.fail_next(faults.silent_first(8), path="/chat/completions")

    began = time.monotonic()
    response = post(stack, key, CHAT, {**STREAM, "model": "deepseek-chat"})

    assert response.status_code == 504, response.text
    error = response.json()["error"]
    assert error["code"] == "upstream_timeout" and "sent no token in 3 s" in error["message"]
    assert time.monotonic() - began < 7  # cut at the deadline, not when the upstream would have written
    assert response.headers["x-tokenway-cost-usd"] == "0.00"
    assert spent(stack, account_id, "1") == 0 and charges(stack, account_id) == []


def test_answer_headers_that_do_not_come_count_against_the_first_token(stack, upstream):
    account_id, key = stack.customer("1")
    upstream.fail_next(faults.delay(8), path="/chat/completions")

    response = post(stack, key, CHAT, {**STREAM, "model": "deepseek-chat"})

    assert response.status_code == 504, response.text
    assert "sent no token in 3 s" in response.json()["error"]["message"]
    assert spent(stack, account_id, "1") == 0


def test_a_silent_primary_falls_back_and_the_backup_is_charged_once(stack, upstream, request):
    primary, backup_model = request.getfixturevalue("pair")
    second = request.getfixturevalue("spare")
    account_id, key = stack.customer("1")
    upstream.fail_next(faults.silent_first(8), path="/chat/completions")
    second.fail_next(faults.usage(prompt=1000, completion=500), path="/chat/completions")

    response = post(stack, key, CHAT, {**STREAM, "models": [primary, backup_model]})

    assert response.status_code == 200, response.text
    assert {event["model"] for event in events(response.text)} == {backup_model}
    assert events(response.text)[-1]["usage"]["cost_usd"] == "0.004"
    assert spent(stack, account_id, "1") == Decimal("0.004")
    [charge] = charges(stack, account_id)
    assert (charge["amount"], charge["model"]) == (-4_000_000, backup_model)


def test_keep_alives_before_a_token_within_the_limit_and_slow_tokens_after_it_are_served(stack, upstream):
    account_id, key = stack.customer("1")
    upstream.fail_next(faults.silent_first(1.5), path="/chat/completions")
    first = post(stack, key, CHAT, {**STREAM, "model": "deepseek-chat"})
    # Tokens 0.5 s apart for longer than the first-token limit: only the first one is bound by it.
    upstream.fail_next(faults.paced(0.5), path="/chat/completions")
    second = post(stack, key, CHAT, {**STREAM, "model": "deepseek-chat",
                                     "messages": [{"role": "user", "content": "Count from one to ten in words."}]})

    for response in (first, second):
        assert response.status_code == 200, response.text
        assert response.text.rstrip().endswith("data: [DONE]")
    assert len(events(second.text)) > 8  # more than 3 s of events
    assert spent(stack, account_id, "1") > 0


def test_a_call_that_is_not_streamed_waits_for_the_models_timeout(stack, upstream):
    _, key = stack.customer("1")
    upstream.fail_next(faults.delay(4), path="/chat/completions")

    response = post(stack, key, CHAT, {"messages": HELLO, "model": "deepseek-chat"})

    assert response.status_code == 200, response.text
