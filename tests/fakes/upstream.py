"""A controllable OpenAI-compatible upstream for tests: the demo upstream plus scripted faults and a request log.

    upstream = FakeUpstream()
    upstream.start()
    upstream.fail_next(http_error(429, "slow down"), times=2)
    upstream.fail_next(usage(prompt=10, completion=5, cached=4), path="/chat/completions")
    upstream.fail_next(writes(20_000, cap_field="max_tokens"), times=30)
    upstream.fail_next(paced(0.2), path="/chat/completions")
    upstream.fail_next(silent_first(3.0), path="/chat/completions")
    upstream.fail_next(tool_call("get_weather", {"city": "Paris"}), path="/chat/completions")
    ...
    upstream.requests[-1].json["model"]
    upstream.stop()

Faults are queued in order; each request takes the first queued fault whose
``path`` filter (if any) matches it, and a fault given ``times=k`` serves the
next ``k`` matching requests. Every request is logged, faulted or not.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from devstack.demo_upstream import DemoUpstream, Exchange, Headers, _Handler, content_text, count_tokens

_DEFAULT_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}


@dataclass(frozen=True)
class Fault:
    """Base of the scripted behaviours; build them with the functions below (or ``Fault.http_error(...)`` etc.)."""


@dataclass(frozen=True)
class HttpError(Fault):
    status: int
    message: str
    type: str
    code: str | None = None
    param: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Delay(Fault):
    seconds: float


@dataclass(frozen=True)
class Malformed(Fault):
    body: bytes


@dataclass(frozen=True)
class SilentFirst(Fault):
    seconds: float


@dataclass(frozen=True)
class CutStream(Fault):
    after_chunks: int


@dataclass(frozen=True)
class Close(Fault):
    pass


@dataclass(frozen=True)
class Usage(Fault):
    prompt: int
    completion: int
    cached: int
    total: int


@dataclass(frozen=True)
class NoUsage(Fault):
    pass


@dataclass(frozen=True)
class Writes(Fault):
    tokens: int
    cap_field: str


@dataclass(frozen=True)
class Images(Fault):
    count: int


@dataclass(frozen=True)
class Paced(Fault):
    interval_s: float


@dataclass(frozen=True)
class ToolCall(Fault):
    name: str
    arguments: str


def http_error(status: int, message: str = "scripted upstream error", type: str | None = None,
               code: str | None = None, param: str | None = None,
               headers: dict[str, str] | None = None) -> HttpError:
    """Answer with ``status`` and the OpenAI error envelope (``type`` defaults by status); extra response headers
    such as ``{"Retry-After": "1"}`` may be given."""
    if type is None:
        type = _DEFAULT_ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return HttpError(status, message, type, code, param, tuple((headers or {}).items()))


def delay(seconds: float) -> Delay:
    """Wait ``seconds`` before answering normally (stop() cuts the wait short and drops the connection)."""
    return Delay(seconds)


def malformed(body: bytes = b'{"id": "chatcmpl-broken", "choices": [') -> Malformed:
    """Answer 200 with ``Content-Type: application/json`` and a body that is not JSON."""
    return Malformed(body)


def cut_stream(after_chunks: int) -> CutStream:
    """Stream the role chunk and ``after_chunks`` content chunks, then drop the connection (no finish chunk, no
    [DONE]). A request that is not a stream gets its connection dropped with no response."""
    return CutStream(after_chunks)


def close() -> Close:
    """Read the request, then drop the connection without any response."""
    return Close()


def usage(prompt: int, completion: int = 0, cached: int = 0, total: int | None = None) -> Usage:
    """Answer normally but report exactly these usage numbers (``total`` defaults to prompt + completion)."""
    return Usage(prompt, completion, cached, prompt + completion if total is None else total)


def no_usage() -> NoUsage:
    """Answer normally with no ``usage`` at all (and no usage chunk, nor ``usage`` keys, in streams)."""
    return NoUsage()


def writes(tokens: int, cap_field: str = "max_tokens") -> Writes:
    """Answer a chat normally but report ``tokens`` completion tokens per choice, unless the request caps the
    output in ``cap_field`` (the only cap field this provider reads): then the cap. The prompt is counted as usual."""
    return Writes(tokens, cap_field)


def images(count: int) -> Images:
    """Answer an image request with ``count`` images, whatever ``n`` asked for (as a provider honouring its own
    count field would)."""
    return Images(count)


def paced(interval_s: float) -> Paced:
    """Answer a stream normally, but send its events one every ``interval_s`` seconds, as a model writing
    slowly would (stop() cuts the wait short and drops the connection)."""
    return Paced(interval_s)


def silent_first(seconds: float) -> SilentFirst:
    """Answer a stream with its role chunk at once, then only keep-alive comments for ``seconds``, then the
    answer, as a model slow to start writing does."""
    return SilentFirst(seconds)


def tool_call(name: str, arguments: dict[str, Any]) -> ToolCall:
    """Answer a chat, plain or streamed, with one call of the tool ``name`` with ``arguments`` (finish_reason
    ``tool_calls``; usage 12 prompt and 7 completion tokens), as a model calling a tool does. A stream sends the
    arguments in two pieces."""
    return ToolCall(name, json.dumps(arguments))


for _factory in (http_error, delay, malformed, cut_stream, close, usage, no_usage, writes, images, paced,
                 tool_call, silent_first):
    setattr(Fault, _factory.__name__, staticmethod(_factory))


@dataclass
class RecordedRequest:
    method: str
    path: str  # as received, e.g. "/v1/chat/completions"
    headers: Headers  # a dict with lower-case keys, looked up case-insensitively
    json: Any  # the parsed body, or None when empty or not JSON
    body: bytes = b""


@dataclass
class _Scripted:
    fault: Fault
    remaining: int
    route: str | None


def _normalize(path: str) -> str:
    path = path.split("?", 1)[0].rstrip("/") or "/"
    if path == "/v1" or path.startswith("/v1/"):
        path = path[3:] or "/"
    return path


class FakeUpstream(DemoUpstream):
    """The demo upstream with a script of faults and a log of what it received, for tests."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.requests: list[RecordedRequest] = []
        self._script: list[_Scripted] = []
        self._lock = threading.Lock()

    def fail_next(self, fault: Fault, times: int = 1, *, path: str | None = None) -> None:
        """Apply ``fault`` to the next ``times`` requests (only those to ``path``, with or without /v1, if given)."""
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._script.append(_Scripted(fault, times, _normalize(path) if path is not None else None))

    def reset(self) -> None:
        """Forget the scripted faults and the request log."""
        with self._lock:
            self._script.clear()
            self.requests.clear()

    @property
    def pending_faults(self) -> int:
        """How many scripted fault applications are still to come."""
        with self._lock:
            return sum(entry.remaining for entry in self._script)

    def _take_fault(self, exchange: Exchange) -> Fault | None:
        with self._lock:
            self.requests.append(RecordedRequest(exchange.method, exchange.path, exchange.headers, exchange.json,
                                                 exchange.body))
            for entry in self._script:
                if entry.route is None or entry.route == exchange.route:
                    entry.remaining -= 1
                    if entry.remaining == 0:
                        self._script.remove(entry)
                    return entry.fault
        return None

    def _intercept(self, handler: _Handler, exchange: Exchange) -> bool:
        fault = self._take_fault(exchange)
        if fault is None:
            return False
        if isinstance(fault, HttpError):
            handler.send_error_envelope(fault.status, fault.message, fault.type, fault.param, fault.code,
                                        dict(fault.headers))
            return True
        if isinstance(fault, Malformed):
            handler.send_bytes(200, fault.body, "application/json")
            return True
        if isinstance(fault, Close):
            handler.abort()
            return True
        if isinstance(fault, ToolCall):
            _answer_tool_call(handler, exchange.json, fault)
            return True
        if isinstance(fault, Delay):
            if self._stopping.wait(fault.seconds):
                handler.abort()
                return True
            return False
        if isinstance(fault, CutStream):
            exchange.cut_after_chunks = fault.after_chunks
        elif isinstance(fault, Usage):
            exchange.usage_override = {"prompt": fault.prompt, "completion": fault.completion,
                                       "cached": fault.cached, "total": fault.total}
        elif isinstance(fault, NoUsage):
            exchange.omit_usage = True
        elif isinstance(fault, Writes):
            exchange.usage_override = _written(exchange.json, fault)
        elif isinstance(fault, Images):
            exchange.images_override = fault.count
        elif isinstance(fault, Paced):
            exchange.event_interval_s = fault.interval_s
        elif isinstance(fault, SilentFirst):
            exchange.first_token_after_s = fault.seconds
        return False


def _written(body: Any, fault: Writes) -> dict[str, int]:
    """The usage of a provider that writes ``fault.tokens`` unless capped in the one field it reads."""
    body = body if isinstance(body, dict) else {}
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    prompt = sum(count_tokens(content_text(m.get("content"))) for m in messages if isinstance(m, dict))
    cap = body.get(fault.cap_field)
    n = body.get("n") if isinstance(body.get("n"), int) else 1
    completion = (min(cap, fault.tokens) if isinstance(cap, int) and not isinstance(cap, bool) else fault.tokens) * n
    return {"prompt": prompt, "completion": completion, "cached": 0, "total": prompt + completion}


def _answer_tool_call(handler: _Handler, body: Any, fault: ToolCall) -> None:
    body = body if isinstance(body, dict) else {}
    call_id = f"call_{uuid.uuid4().hex[:24]}"
    head = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": body.get("model")}
    usage = {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19,
             "prompt_tokens_details": {"cached_tokens": 0}}
    if body.get("stream") is not True:
        message = {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": fault.name, "arguments": fault.arguments}}]}
        handler.send_json(200, {**head, "object": "chat.completion", "usage": usage, "choices": [
            {"index": 0, "message": message, "finish_reason": "tool_calls", "logprobs": None}]})
        return
    half = len(fault.arguments) // 2
    deltas = [
        {"role": "assistant", "content": None, "tool_calls": [
            {"index": 0, "id": call_id, "type": "function", "function": {"name": fault.name, "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": fault.arguments[:half]}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": fault.arguments[half:]}}]},
    ]
    handler.start_stream()
    for delta in deltas:
        handler.send_event({**head, "object": "chat.completion.chunk", "usage": None,
                            "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    handler.send_event({**head, "object": "chat.completion.chunk", "usage": None,
                        "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    handler.send_event({**head, "object": "chat.completion.chunk", "choices": [], "usage": usage})
    handler.send_event("[DONE]")
    handler.end_stream()
