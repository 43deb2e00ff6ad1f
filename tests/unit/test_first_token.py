"""The first-token watch's parts: the deadline thread, and what counts as a token."""

from __future__ import annotations

import threading
import time

from chalicelib.providers.first_token import Deadlines, has_token


def test_deadlines_run_in_deadline_order_and_a_cancelled_one_never_runs():
    deadlines = Deadlines()
    ran: list[str] = []
    done = threading.Event()
    now = time.monotonic()
    deadlines.at(now + 0.3, lambda: (ran.append("late"), done.set()))
    cancel = deadlines.at(now + 0.1, lambda: ran.append("cancelled"))
    deadlines.at(now + 0.2, lambda: ran.append("early"))
    cancel()

    assert done.wait(5)
    assert ran == ["early", "late"]


def test_a_failing_callback_does_not_stop_the_others():
    deadlines = Deadlines()
    done = threading.Event()
    now = time.monotonic()
    deadlines.at(now, lambda: 1 / 0)
    deadlines.at(now + 0.05, done.set)

    assert done.wait(5)


def chunk(**delta: object) -> dict:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}


def test_a_token_is_text_reasoning_a_refusal_or_a_tool_call():
    assert not has_token(chunk(role="assistant", content=""))
    assert not has_token({"choices": [], "usage": {"prompt_tokens": 3}})
    assert not has_token({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    assert has_token(chunk(content="Hi"))
    assert has_token(chunk(reasoning_content="Let me think"))
    assert has_token(chunk(refusal="No"))
    assert has_token(chunk(tool_calls=[{"index": 0, "function": {"name": "f", "arguments": ""}}]))
