"""A relay chat stream (OpenAI chunks as SSE) turned into Anthropic's Messages stream.

The relay's events, for a request that asked for usage (anthropic_inbound sets include_usage):

    chunk (role) → chunks (content / tool_call deltas) → chunk (finish_reason)
        → chunk (usage, cost_usd; sent once the stream is settled) → [DONE]
    or, when the upstream fails mid-stream: … → {"error": …}

and what the client reads, each as `event: <type>\\ndata: <json>\\n\\n`:

    message_start (usage known so far: none)
      content_block_start / content_block_delta* / content_block_stop   per text run or tool call
    message_delta (stop_reason, stop_sequence; usage: input, output, cache reads, cost_usd)
    message_stop
    or `error` in Anthropic's envelope, where the relay ended with an error.

`AnthropicStream` wraps the relay's iterator and closes it when closed itself, so a client that
hangs up settles the stream as it does on the OpenAI routes.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator
from typing import Any

from chalicelib.relay.anthropic_inbound import anthropic_usage, stop_of

# The status an upstream error carries → Anthropic's error type (see error_type).
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                429: "rate_limit_error", 529: "overloaded_error"}


def error_type(status: int) -> str:
    """Anthropic's error type for an HTTP status."""
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    """Anthropic's error envelope."""
    return {"type": "error", "error": {"type": error_type(status), "message": message}}


def sse(event: dict[str, Any]) -> str:
    return f"event: {event['type']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n"


class AnthropicStream:
    """An iterator of Anthropic SSE events over a relay stream of OpenAI chunks."""

    def __init__(self, events: Iterator[str], *, message_id: str, model: str,
                 stop_sequences: list[str] | None = None) -> None:
        self._events = events
        self._id = message_id
        self._model = model
        self._stops = stop_sequences
        self._pending: deque[str] = deque()
        self._started = False
        self._ended = False
        self._index = -1  # the content block open or last closed
        self._open: str | None = None  # "text", or the tool call's chat index as "tool:<n>"
        self._tool_id: str | None = None
        self._stop: tuple[str | None, str | None] = (None, None)
        self._usage: dict[str, Any] = anthropic_usage(None)

    def __iter__(self) -> AnthropicStream:
        return self

    def __next__(self) -> str:
        while not self._pending:
            if self._ended:
                raise StopIteration
            try:
                event = next(self._events)
            except StopIteration:
                self._ended = True
                raise
            self._translate(event)
        return self._pending.popleft()

    def close(self) -> None:
        """Close the relay's stream too: closing it settles it."""
        close = getattr(self._events, "close", None)
        if close is not None:
            close()

    def _translate(self, raw: str) -> None:
        data = raw.strip()
        if not data.startswith("data:"):
            return  # the relay yields nothing else, but an empty step is harmless
        data = data[len("data:"):].strip()
        if data == "[DONE]":
            self._finish()
            return
        chunk = json.loads(data)
        if "error" in chunk and "choices" not in chunk:
            self._fail(chunk["error"])
            return
        if not self._started and isinstance(chunk.get("model"), str):
            self._model = chunk["model"]  # the model that answered: a fallback names itself
        self._start()
        if isinstance(chunk.get("usage"), dict):
            self._usage = anthropic_usage(chunk["usage"])
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) == 0:
                self._choice(choice)

    def _start(self) -> None:
        if self._started:
            return
        self._started = True
        self._emit({"type": "message_start", "message": {
            "id": self._id, "type": "message", "role": "assistant", "model": self._model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": anthropic_usage(None)}})

    def _choice(self, choice: dict[str, Any]) -> None:
        delta = choice.get("delta") or {}
        if delta.get("content"):
            if self._open != "text":
                self._open_block("text", {"type": "text", "text": ""})
            self._emit({"type": "content_block_delta", "index": self._index,
                        "delta": {"type": "text_delta", "text": delta["content"]}})
        for call in delta.get("tool_calls") or []:
            function = call.get("function") or {}
            which = f"tool:{call.get('index', 0)}"
            # A new call has a new index; a provider that numbers every call 0 still gives each its own id.
            if self._open != which or call.get("id") not in (None, "", self._tool_id):
                self._tool_id = call.get("id")
                self._open_block(which, {"type": "tool_use", "id": call.get("id") or "",
                                         "name": function.get("name") or "", "input": {}})
            if function.get("arguments"):
                self._emit({"type": "content_block_delta", "index": self._index,
                            "delta": {"type": "input_json_delta", "partial_json": function["arguments"]}})
        if choice.get("finish_reason"):
            self._close_block()
            self._stop = stop_of(choice, self._stops)

    def _open_block(self, which: str, block: dict[str, Any]) -> None:
        self._close_block()
        self._index += 1
        self._open = which
        self._emit({"type": "content_block_start", "index": self._index, "content_block": block})

    def _close_block(self) -> None:
        if self._open is not None:
            self._emit({"type": "content_block_stop", "index": self._index})
            self._open = None

    def _finish(self) -> None:
        self._start()
        self._close_block()
        stop_reason, stop_sequence = self._stop
        self._emit({"type": "message_delta", "delta": {"stop_reason": stop_reason or "end_turn",
                                                       "stop_sequence": stop_sequence},
                    "usage": self._usage})
        self._emit({"type": "message_stop"})

    def _fail(self, error: Any) -> None:
        error = error if isinstance(error, dict) else {}
        status = 529 if error.get("type") == "overloaded_error" else _status_of(error)
        self._emit(anthropic_error(status, str(error.get("message") or "The upstream failed.")))

    def _emit(self, event: dict[str, Any]) -> None:
        self._pending.append(sse(event))


def _status_of(error: dict[str, Any]) -> int:
    """The status an OpenAI error envelope's type stands for (the relay's stream ends with the envelope alone)."""
    kind = error.get("type")
    return {"invalid_request_error": 400, "authentication_error": 401, "insufficient_quota": 402,
            "permission_error": 403, "rate_limit_error": 429}.get(str(kind), 502)
