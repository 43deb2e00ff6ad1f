"""A fake of Anthropic's Messages API on loopback for tests: a real HTTP server that logs every
request and answers `POST /v1/messages` plainly or as Anthropic's SSE stream.

    upstream = FakeAnthropic()
    upstream.start()
    upstream.usage = {"input_tokens": 20, "cache_read_input_tokens": 1000, ...}
    upstream.fail_next(529, "Overloaded", type="overloaded_error")
    upstream.reply_with_tool("get_weather", {"city": "Paris"})
    upstream.reply("Answer.", thinking="Let me think.", interval_s=0.2, fail_after=3)
    ...
    upstream.requests[-1].json["max_tokens"], upstream.requests[-1].raw
    upstream.streamed[-1]  # the text of each event of the last stream, as sent
    upstream.stop()

The answer echoes the last user text (`Echo: …`), with the usage set on the fake. Scripted
errors serve the next request each, in order, with Anthropic's error envelope. A reply may open
with a thinking block (streamed as `thinking_delta`s and a `signature_delta`), pace its stream,
or break it with an `error` event after some content events.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SIGNATURE = "EqQBCkYIARgCIkD0signature"  # what Anthropic signs a thinking block with, opaque to clients
DEFAULT_USAGE = {"input_tokens": 12, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0,
                 "output_tokens": 7}


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    json: Any
    raw: bytes = b""  # the body as received


@dataclass
class _Error:
    status: int
    message: str
    type: str


@dataclass
class _Reply:
    text: str = ""
    tools: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # (id, name, input)
    stop_reason: str | None = None
    thinking: str | None = None  # a thinking block before the text
    interval_s: float = 0  # between the events of a stream
    fail_after: int | None = None  # content events streamed before an overloaded `error` event


class FakeAnthropic:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.requests: list[RecordedRequest] = []
        self.streamed: list[list[str]] = []  # per stream answered, the text of each event sent
        self.usage: dict[str, int] = dict(DEFAULT_USAGE)
        self._errors: list[_Error] = []
        self._replies: list[_Reply] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.streamed.clear()
            self._errors.clear()
            self._replies.clear()
            self.usage = dict(DEFAULT_USAGE)

    def fail_next(self, status: int, message: str = "scripted upstream error", *, type: str | None = None) -> None:
        """Answer the next request with `status` and Anthropic's error envelope."""
        kind = type or {429: "rate_limit_error", 529: "overloaded_error", 400: "invalid_request_error"}.get(
            status, "api_error")
        with self._lock:
            self._errors.append(_Error(status, message, kind))

    def reply(self, text: str = "", *, stop_reason: str | None = None, thinking: str | None = None,
              interval_s: float = 0, fail_after: int | None = None) -> None:
        """Answer the next successful request with this text (and stop reason) instead of the echo: after a
        thinking block if `thinking`; streamed an event every `interval_s`; broken by an overloaded `error`
        event after `fail_after` content events."""
        with self._lock:
            self._replies.append(_Reply(text=text, stop_reason=stop_reason, thinking=thinking, interval_s=interval_s,
                                        fail_after=fail_after))

    def reply_with_tool(self, name: str, arguments: dict[str, Any], *, text: str = "",
                        tool_id: str = "toolu_01") -> None:
        """Answer the next successful request with a `tool_use` block (after `text`, if any)."""
        with self._lock:
            self._replies.append(_Reply(text=text, tools=[(tool_id, name, arguments)], stop_reason="tool_use"))

    # The server.

    def _take(self, request: RecordedRequest) -> tuple[_Error | None, _Reply | None, dict[str, int]]:
        with self._lock:
            self.requests.append(request)
            if self._errors:
                return self._errors.pop(0), None, dict(self.usage)
            return None, self._replies.pop(0) if self._replies else None, dict(self.usage)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                request = RecordedRequest("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                                          raw)
                error, reply, usage = fake._take(request)
                if self.path != "/v1/messages":
                    return self._json(404, _error("not_found_error", f"No route {self.path}"))
                if error is not None:
                    return self._json(error.status, _error(error.type, error.message))
                if not isinstance(body, dict) or not isinstance(body.get("max_tokens"), int):
                    return self._json(400, _error("invalid_request_error", "max_tokens: Field required"))
                reply = reply or _Reply(text=f"Echo: {_last_user_text(body)}")
                message = _message(body, reply, usage)
                if body.get("stream"):
                    return self._stream(message, reply)
                return self._json(200, message)

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, message: dict[str, Any], reply: _Reply) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                sent: list[str] = []
                with fake._lock:
                    fake.streamed.append(sent)
                content = 0
                self.close_connection = True
                for event in _events(message):
                    if reply.fail_after is not None and content == reply.fail_after:
                        event = _error("overloaded_error", "Overloaded")
                    text = f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"
                    sent.append(text)  # before it is written: the client may compare as soon as it reads it
                    try:
                        self.wfile.write(text.encode())
                        self.wfile.flush()
                    except OSError:
                        sent.pop()
                        return  # the gateway hung up
                    if event["type"] == "error":
                        return
                    content += event["type"] == "content_block_delta"
                    time.sleep(reply.interval_s)

        return Handler


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        texts = [block.get("text", "") for block in content if block.get("type") == "text"]
        if texts:
            return " ".join(texts)
    return ""


def _message(body: dict[str, Any], reply: _Reply, usage: dict[str, int]) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "thinking", "thinking": reply.thinking,
                                      "signature": SIGNATURE}] if reply.thinking else []
    content += [{"type": "text", "text": reply.text}] if reply.text else []
    content += [{"type": "tool_use", "id": tool_id, "name": name, "input": arguments}
                for tool_id, name, arguments in reply.tools]
    return {"id": "msg_fake01", "type": "message", "role": "assistant", "model": body.get("model"),
            "content": content, "stop_reason": reply.stop_reason or "end_turn", "stop_sequence": None,
            "usage": usage}


def _events(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The message as Anthropic streams it: the input usage first, the output count at the end."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None,
             "usage": {**usage, "output_tokens": 1}}
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}, {"type": "ping"}]
    for index, block in enumerate(message["content"]):
        if block["type"] in ("text", "thinking"):
            kind = block["type"]
            events.append({"type": "content_block_start", "index": index,
                           "content_block": {"type": kind, kind: ""} if kind == "text" else
                           {"type": kind, kind: "", "signature": ""}})
            words = block[kind].split(" ")
            for position, word in enumerate(words):
                piece = word if position == len(words) - 1 else word + " "
                events.append({"type": "content_block_delta", "index": index,
                               "delta": {"type": f"{kind}_delta", kind: piece}})
            if kind == "thinking":
                events.append({"type": "content_block_delta", "index": index,
                               "delta": {"type": "signature_delta", "signature": block["signature"]}})
        else:
            events.append({"type": "content_block_start", "index": index,
                           "content_block": {**block, "input": {}}})
            arguments = json.dumps(block["input"])
            middle = len(arguments) // 2
            for piece in (arguments[:middle], arguments[middle:]):
                events.append({"type": "content_block_delta", "index": index,
                               "delta": {"type": "input_json_delta", "partial_json": piece}})
        events.append({"type": "content_block_stop", "index": index})
    events.append({"type": "message_delta", "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                   "usage": {"output_tokens": usage["output_tokens"]}})
    events.append({"type": "message_stop"})
    return events
