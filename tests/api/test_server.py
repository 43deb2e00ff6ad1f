"""The one-machine server over real sockets: streams written as the upstream sends them, settled when
they end or the client hangs up; a stop that lets requests in flight finish and settle (or cuts and
settles them when the graceful timeout runs out); and the same answers as chalice's local server."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import pytest
from openai import OpenAI

from chalicelib.billing.pricing import text_tokens
from devstack.demo_upstream import REPLY_PREFIX
from devstack.local_server import LocalGateway
from tests.api.conftest import ADMIN_TOKEN, Stack
from tests.api.servers import Server, listening
from tests.fakes import upstream as faults

WORDS = "one two three four five six seven eight nine ten eleven twelve"
CHAT = {"model": "deepseek-chat", "messages": [{"role": "user", "content": WORDS}]}
# The pieces the demo upstream streams its reply in, as the relay estimates a cut stream's output.
PIECES = [word + " " for word in (REPLY_PREFIX + WORDS).split(" ")]
PIECES[-1] = PIECES[-1].strip()
# deepseek-chat's list prices in nano-USD per token: input $0.28 / 1M, output $0.42 / 1M.
INPUT_NANO, OUTPUT_NANO = 280, 420


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def content(line: str) -> str | None:
    """The text of an SSE `data:` line's first choice, if it has any."""
    if not line.startswith("data: {"):
        return None
    choices = json.loads(line[6:]).get("choices") or [{}]
    return choices[0].get("delta", {}).get("content") or None


def settled_wallet(stack: Stack, account_id: str, within_s: float) -> dict[str, str]:
    deadline = time.monotonic() + within_s
    while True:
        wallet = stack.wallet(account_id)
        if wallet["held_usd"] == "0.00" or time.monotonic() > deadline:
            return wallet
        time.sleep(0.05)


def usage_event(stack: Stack, request_id: str) -> dict[str, Any]:
    events = stack.usage_events(request_id)
    assert events, f"no usage event for {request_id}"
    return events[0]


def assert_charged_as_recorded(event: dict[str, Any], wallet: dict[str, str], funded: str) -> None:
    """What left the wallet is the recorded usage at deepseek-chat's prices, exactly."""
    spent = Decimal(funded) - Decimal(wallet["balance_usd"])
    units = event["prompt_tokens"] * INPUT_NANO + event["completion_tokens"] * OUTPUT_NANO
    assert spent == Decimal(event["cost_usd"]) == Decimal(units) / 10**9 > 0


def test_each_event_reaches_the_sdk_client_when_the_upstream_sends_it(stack, upstream):
    account_id, key = stack.customer("1")
    upstream.fail_next(faults.paced(0.2), path="/chat/completions")
    client = OpenAI(base_url=stack.url + "/v1", api_key=key, max_retries=0)
    arrivals, text = [], ""
    sent = time.monotonic()
    with client.chat.completions.with_streaming_response.create(**CHAT, stream=True) as response:
        # Chunked as it comes: no length is known before the stream ends.
        assert response.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in response.headers
        assert response.headers["content-type"] == "text/event-stream"
        for chunk in response.parse():
            arrivals.append(time.monotonic() - sent)
            text += (chunk.choices[0].delta.content or "") if chunk.choices else ""
    assert text == REPLY_PREFIX + WORDS
    # The upstream sends an event every 200 ms, for about 3.4 s: the first reaches the client at
    # once, and the others one by one, not all together at the end.
    assert arrivals[0] < 1.0 and arrivals[-1] > 2.5, arrivals
    assert sum(arrivals[-1] - arrival > 1.0 for arrival in arrivals) >= 5, arrivals
    assert settled_wallet(stack, account_id, 0)["held_usd"] == "0.00"


def test_a_client_that_hangs_up_mid_stream_is_settled_at_once_for_what_was_delivered(stack, upstream):
    account_id, key = stack.customer("1")
    upstream.fail_next(faults.paced(0.2), path="/chat/completions")
    received: list[str] = []
    with httpx.Client(timeout=30) as http, http.stream("POST", stack.url + "/v1/chat/completions",
                                                       json={**CHAT, "stream": True}, headers=auth(key)) as response:
        request_id = response.headers["x-request-id"]
        for line in response.iter_lines():
            if text := content(line):
                received.append(text)
            if len(received) == 2:
                break  # and hang up: leaving the block closes the connection
    hung_up = time.monotonic()

    wallet = settled_wallet(stack, account_id, within_s=5)
    assert wallet["held_usd"] == "0.00" and time.monotonic() - hung_up < 3  # not the sweeper's 5 minutes
    event = usage_event(stack, request_id)
    assert (event["status"], event["error_type"], event["stream"]) == (499, "client_closed_request", True)
    # Charged the prompt and the content delivered, as estimated: at least what the client read,
    # less than the whole reply (the server noticed within an event or two).
    assert received == PIECES[:2]
    delivered = event["completion_tokens"]
    assert sum(map(text_tokens, received)) <= delivered < sum(map(text_tokens, PIECES))
    assert_charged_as_recorded(event, wallet, "1")


@pytest.mark.parametrize("stop", ["SIGTERM", "Ctrl-C"])
def test_a_stop_lets_the_requests_in_flight_finish_and_settle(stack, upstream, tmp_path, stop):
    server = Server(stack.settings, tmp_path / "server.log")
    (account_id, key), (_, other_key) = stack.customer("1"), stack.customer("1")
    upstream.fail_next(faults.paced(0.2), path="/chat/completions")
    upstream.fail_next(faults.delay(1.5), path="/chat/completions")
    stopped: list[float] = []
    with httpx.Client(timeout=30) as http, http.stream("POST", server.url + "/v1/chat/completions",
                                                       json={**CHAT, "stream": True}, headers=auth(key)) as response:
        request_id = response.headers["x-request-id"]
        lines = response.iter_lines()
        assert next(line for line in lines if content(line))
        with ThreadPoolExecutor(1) as pool:
            plain = pool.submit(httpx.post, server.url + "/v1/chat/completions", json=CHAT,
                                headers=auth(other_key), timeout=30)
            time.sleep(0.5)  # in flight too, waiting on its upstream
            stopping = threading.Thread(target=lambda: stopped.append(
                server.stop(signal.SIGTERM) if stop == "SIGTERM" else server.stop(signal.SIGINT, group=True)))
            stopping.start()
            rest = [line for line in lines if line]
            assert plain.result().status_code == 200
    stopping.join()

    assert rest[-1] == "data: [DONE]" and "".join(filter(None, map(content, rest))).endswith("twelve")
    wallet = stack.wallet(account_id)
    assert wallet["held_usd"] == "0.00"
    event = usage_event(stack, request_id)
    assert event["status"] == 200
    assert_charged_as_recorded(event, wallet, "1")
    assert stopped[0] < 10 and not listening(server.port)
    assert "Traceback" not in server.output(), server.output()


def test_a_stream_still_running_when_the_graceful_timeout_ends_is_cut_and_settled(stack, upstream, tmp_path):
    server = Server(stack.settings, tmp_path / "server.log", server_graceful_timeout_s=1)
    account_id, key = stack.customer("1")
    upstream.fail_next(faults.paced(0.4), path="/chat/completions")  # about 7 s of stream
    received: list[str] = []
    stopped: list[float] = []
    with httpx.Client(timeout=30) as http, http.stream("POST", server.url + "/v1/chat/completions",
                                                       json={**CHAT, "stream": True}, headers=auth(key)) as response:
        request_id = response.headers["x-request-id"]
        lines = response.iter_lines()
        received.append(next(filter(None, map(content, lines))))
        stopping = threading.Thread(target=lambda: stopped.append(server.stop(signal.SIGTERM)))
        stopping.start()
        with pytest.raises(httpx.RemoteProtocolError):  # cut: no end of the chunked body
            received.extend(filter(None, map(content, lines)))
    stopping.join()

    # Settled by the server before it exited, for what it had delivered.
    assert 1 < stopped[0] < 5 and len(received) < len(PIECES)
    wallet = stack.wallet(account_id)
    assert wallet["held_usd"] == "0.00"
    event = usage_event(stack, request_id)
    assert event["status"] == 499 and event["completion_tokens"] >= sum(map(text_tokens, received))
    assert_charged_as_recorded(event, wallet, "1")
    assert "cutting 1 request(s) still in flight" in server.output()


def test_an_idle_server_stops_at_once_and_its_processes_are_gone(stack, tmp_path):
    server = Server(stack.settings, tmp_path / "server.log")
    _, key = stack.customer("0")
    with httpx.Client(base_url=server.url) as kept_alive:
        assert kept_alive.get("/v1/models", headers=auth(key)).status_code == 200
        assert server.stop(signal.SIGINT, group=True) < 5
    with pytest.raises(ProcessLookupError):
        server.signal_group(0)  # no worker left behind


def _normalized(response: httpx.Response) -> tuple[int, dict[str, str], Any]:
    """Status, the headers that carry meaning, and the body without what differs per call (ids, times)."""
    headers = {name: response.headers[name] for name in ("content-type", "allow", "x-tokenway-cost-usd")
               if name in response.headers}
    headers["x-request-id"] = "present" if "x-request-id" in response.headers else "absent"

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("id", "created", "system_fingerprint")}
        if isinstance(value, list):
            return [strip(item) for item in value]
        return value

    text = response.text
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        body: Any = [strip(json.loads(event[6:])) if event.startswith("data: {") else event
                     for event in text.split("\n\n") if event]
        headers.pop("x-tokenway-cost-usd", None)  # a streamed answer's headers go out before its cost is known
    else:
        body = strip(json.loads(text)) if text else ""
    return response.status_code, headers, body


def test_the_server_answers_as_chalices_local_server_does(stack, upstream):
    from app import app

    reference = LocalGateway(app, stage="test").start()
    _, key = stack.customer("1")
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/v1/models", {"headers": auth(key)}),
        ("GET", "/models", {}),
        ("GET", "/v1/models/deepseek-chat", {"headers": auth(key)}),
        ("GET", "/v1/models/no-such-model", {"headers": auth(key)}),
        ("GET", "/v1/models", {"headers": auth("sk-not-a-key")}),
        ("POST", "/v1/chat/completions", {"headers": auth(key), "json": CHAT}),
        ("POST", "/chat/completions", {"headers": auth(key), "json": {**CHAT, "stream": True}}),
        ("POST", "/v1/chat/completions", {"headers": auth(key), "content": b'{"model": '}),
        ("POST", "/v1/chat/completions", {"headers": auth(key), "json": {"model": "deepseek-chat"}}),
        ("POST", "/v1/embeddings", {"headers": auth(key), "json": {"model": "text-embedding-3-small", "input": []}}),
        ("GET", "/v1/completions", {"headers": auth(key)}),
        ("POST", "/", {}),
        ("DELETE", "/v1/models", {"headers": auth(key)}),
        ("HEAD", "/v1/chat/completions", {}),
        ("PUT", "/v1/models/deepseek-chat/x?y=1", {}),
        ("GET", "/api/auth/me", {}),
        ("POST", "/api/auth/signup", {"content": b"email=a@example.com", "headers": {
            "Content-Type": "application/x-www-form-urlencoded"}}),
        ("GET", "/api/groups", {}),
        ("GET", "/admin/accounts?search=nobody-at-all", {"headers": admin}),
        ("GET", "/admin/accounts", {"headers": auth(key)}),
        ("POST", "/admin/accounts", {"headers": admin, "json": {"email": "not an email"}}),
        ("PATCH", "/admin/groups", {"headers": admin}),
    ]
    try:
        with httpx.Client(base_url=stack.url, timeout=30) as server, \
                httpx.Client(base_url=reference.url, timeout=30) as local:
            for method, path, options in requests:
                answers = [_normalized(client.request(method, path, **options)) for client in (local, server)]
                assert answers[0] == answers[1], (method, path)
                assert answers[1][0] != 500, (method, path)
    finally:
        reference.stop()


def _raw(stack: Stack, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes that are not (quite) HTTP to the server; its status, headers and body."""
    host, port = stack.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize(("request_bytes", "status", "code"), [
    (b"GET /v1/models" + b"x" * 5000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "request_line_too_long"),
    (b"GET /v1/models HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer sk-secret" + b"y" * 9000 + b"\r\n\r\n", 431,
     "headers_too_large"),
    (b"HELLO sk-secret\r\n\r\n", 400, "invalid_http"),
    (b"GET /v1/models HTTP/1.1\r\nHost: t\r\nBad Header sk-secret: 1\r\n\r\n", 400, "invalid_http"),
], ids=["long-line", "huge-header", "not-http", "bad-header-name"])
def test_what_is_not_http_is_answered_in_the_envelope_without_echoing_it(stack, request_bytes, status, code):
    got, headers, body = _raw(stack, request_bytes)
    assert got == status and headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["code"] == code and set(error) == {"message", "type", "param", "code"}
    assert b"sk-secret" not in body and b"xxxx" not in body and b"yyyy" not in body
