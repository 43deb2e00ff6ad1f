"""Translation between OpenAI chat completions and Anthropic's Messages API, both ways.

Request (OpenAI → Anthropic):
- system and developer messages → `system`, their texts joined;
- user, assistant and tool messages → alternating turns, consecutive turns of one
  role merged: assistant `tool_calls` → `tool_use` blocks, `tool` messages →
  `tool_result` blocks of a user turn, image parts → `image` blocks (a data URL as
  base64, any other URL by reference);
- `tools`, `tool_choice` (required → any, a named function → tool),
  `parallel_tool_calls: false` → `disable_parallel_tool_use`, `stop` →
  `stop_sequences`, the output cap → `max_tokens`, `temperature`, `top_p`,
  `user` → `metadata.user_id`; fields Anthropic has no counterpart for are dropped;
- `cache_control` (Anthropic's prompt-caching breakpoint) on a content part, a tool or a
  whole message (its last block) is kept, so that clients can have the prompt cached.

Answer (Anthropic → OpenAI): text blocks → `content`, `tool_use` → `tool_calls`
(arguments as JSON text), the stop reason → `finish_reason`, and usage as OpenAI
counts it (the prompt includes cache reads and writes) with Anthropic's cache
counts kept beside it.
"""

from __future__ import annotations

import json
import time
from typing import Any

from chalicelib.core.domain import CAP_FIELDS
from chalicelib.core.errors import UpstreamRejected

FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                  "pause_turn": "stop", "refusal": "content_filter"}


def to_messages_body(body: dict[str, Any]) -> dict[str, Any]:
    """The Messages API request of an OpenAI chat body (without `stream`, which the caller sets)."""
    if isinstance(body.get("n"), int) and body["n"] > 1:
        raise _refused("Anthropic channels answer one choice per request; `n` must be 1.", "n")
    cap = next((body[name] for name in CAP_FIELDS if isinstance(body.get(name), int)), None)
    if cap is None:
        raise _refused("An output cap (`max_tokens`) is required.", "max_tokens")
    system, messages = _turns(body.get("messages") or [])
    payload: dict[str, Any] = {"model": body.get("model"), "messages": messages, "max_tokens": cap}
    if system:
        payload["system"] = system
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            payload[name] = body[name]
    stop = body.get("stop")
    if stop:
        payload["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if isinstance(body.get("user"), str):
        payload["metadata"] = {"user_id": body["user"]}
    tools = body.get("tools")
    if tools:
        payload["tools"] = [_tool(tool) for tool in tools]
    choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
    if choice is not None and (tools or choice["type"] == "none"):
        payload["tool_choice"] = choice
    return payload


def _turns(messages: list[Any]) -> tuple[str | list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        if not isinstance(message, dict):
            raise _refused("Each message must be an object.", "messages")
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_cached(_text_blocks(message.get("content")), message))
            continue
        if role == "user":
            role, blocks = "user", _user_blocks(message.get("content"))
        elif role == "assistant":
            blocks = _assistant_blocks(message)
        elif role == "tool":
            role, blocks = "user", [_tool_result(message)]
        else:
            raise _refused(f"Anthropic channels do not take messages of role `{role}`.", "messages")
        blocks = _cached(blocks, message)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)  # Anthropic's turns alternate: same-role turns are one
        else:
            turns.append({"role": role, "content": blocks})
    if any("cache_control" in block for block in system):
        return system, turns  # as blocks, to keep their cache breakpoints
    return "\n\n".join(block["text"] for block in system), turns


def _cached(blocks: list[dict[str, Any]], source: dict[str, Any]) -> list[dict[str, Any]]:
    """The blocks, the last one marked with the message's (or part's) cache breakpoint if it has one."""
    if blocks and isinstance(source.get("cache_control"), dict):
        blocks[-1] = {**blocks[-1], "cache_control": source["cache_control"]}
    return blocks


def _text_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        return []
    return [_cached([{"type": "text", "text": part["text"]}], part)[0] for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str) and part["text"]]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(part["text"] for part in content
                         if isinstance(part, dict) and isinstance(part.get("text"), str))
    return ""


def _user_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        return []
    blocks = []
    for part in content:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text" and isinstance(part.get("text"), str):
            blocks.extend(_cached([{"type": "text", "text": part["text"]}], part))
        elif part.get("type") == "image_url":
            blocks.extend(_cached([_image(part.get("image_url"))], part))
        else:
            raise _refused(f"Anthropic channels do not take content parts of type `{part.get('type')}`.",
                           "messages")
    return blocks


def _image(image_url: Any) -> dict[str, Any]:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str) or not url:
        raise _refused("An image part needs a URL.", "messages")
    if url.startswith("data:"):
        header, _, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if encoding != "base64" or not data:
            raise _refused("An image data URL must be base64 (`data:image/png;base64,…`).", "messages")
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _assistant_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = _text_blocks(message.get("content"))
    for call in message.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            raise _refused("A tool call needs a function.", "messages")
        arguments = function.get("arguments") or "{}"
        try:
            parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
        except ValueError:
            raise _refused("A tool call's arguments must be JSON text.", "messages") from None
        blocks.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"),
                       "input": parsed if isinstance(parsed, dict) else {}})
    return blocks


def _tool_result(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    result = _text(content) if isinstance(content, list) else content if isinstance(content, str) else ""
    return {"type": "tool_result", "tool_use_id": message.get("tool_call_id"), "content": result}


def _tool(tool: Any) -> dict[str, Any]:
    function = tool.get("function") if isinstance(tool, dict) and tool.get("type", "function") == "function" else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise _refused("Anthropic channels take only function tools, each with a name.", "tools")
    out: dict[str, Any] = {"name": function["name"],
                           "input_schema": function.get("parameters") or {"type": "object", "properties": {}}}
    if isinstance(function.get("description"), str):
        out["description"] = function["description"]
    if isinstance(tool.get("cache_control"), dict):
        out["cache_control"] = tool["cache_control"]
    return out


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    if choice is None:
        mapped = {"type": "auto"} if parallel is False else None
    elif choice == "none":
        return {"type": "none"}
    elif choice == "auto":
        mapped = {"type": "auto"}
    elif choice == "required":
        mapped = {"type": "any"}
    elif isinstance(choice, dict) and isinstance((choice.get("function") or {}).get("name"), str):
        mapped = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise _refused("`tool_choice` must be none, auto, required or a named function.", "tool_choice")
    if mapped is not None and parallel is False:
        mapped["disable_parallel_tool_use"] = True
    return mapped


def _refused(message: str, param: str) -> UpstreamRejected:
    return UpstreamRejected(400, message, param=param, code="invalid_value")


# Answers.


def openai_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Anthropic's usage as OpenAI counts it: the prompt is uncached input, cache reads and
    cache writes; the two cache counts stay beside it, for pricing."""
    uncached, read, written, output = (_count(usage.get(name)) for name in (
        "input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "output_tokens"))
    prompt = uncached + read + written
    return {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output,
            "prompt_tokens_details": {"cached_tokens": read},
            "cache_read_input_tokens": read, "cache_creation_input_tokens": written}


def to_completion(message: dict[str, Any]) -> dict[str, Any]:
    """A `chat.completion` of a Messages API answer."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message["content"]:
        if block.get("type") == "text":
            texts.append(block["text"])
        elif block.get("type") == "tool_use":
            calls.append({"id": block["id"], "type": "function",
                          "function": {"name": block["name"], "arguments": json.dumps(block.get("input") or {})}})
    answer: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        answer["tool_calls"] = calls
    completion = {
        "id": message.get("id"), "object": "chat.completion", "created": int(time.time()),
        "model": message.get("model"),
        "choices": [{"index": 0, "message": answer, "logprobs": None,
                     "finish_reason": FINISH_REASONS.get(message.get("stop_reason") or "end_turn", "stop")}],
    }
    if isinstance(message.get("usage"), dict):
        completion["usage"] = openai_usage(message["usage"])
    return completion


class StreamTranslator:
    """Anthropic stream events in, OpenAI chunks out: a role chunk, content and tool-call deltas,
    a finish chunk, then a usage-only chunk (`choices: []`). `done` once `message_stop` came."""

    def __init__(self) -> None:
        self.done = False
        self._id: str | None = None
        self._model: str | None = None
        self._created = int(time.time())
        self._usage: dict[str, Any] = {}
        self._stop_reason: str | None = None
        self._tools: dict[int, int] = {}  # content block index → tool call index

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        if kind == "message_start":
            message = event["message"]
            self._id, self._model = message.get("id"), message.get("model")
            self._usage.update(message.get("usage") or {})
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = event["content_block"]
            if block.get("type") == "tool_use":
                index = self._tools[event["index"]] = len(self._tools)
                return [self._chunk({"tool_calls": [{"index": index, "id": block["id"], "type": "function",
                                                     "function": {"name": block["name"], "arguments": ""}}]})]
            if block.get("type") == "text" and block.get("text"):
                return [self._chunk({"content": block["text"]})]
            return []
        if kind == "content_block_delta":
            delta = event["delta"]
            if delta.get("type") == "text_delta":
                return [self._chunk({"content": delta["text"]})]
            if delta.get("type") == "input_json_delta" and event["index"] in self._tools:
                return [self._chunk({"tool_calls": [{"index": self._tools[event["index"]],
                                                     "function": {"arguments": delta["partial_json"]}}]})]
            return []  # thinking and signature deltas have no OpenAI counterpart
        if kind == "message_delta":
            self._stop_reason = (event.get("delta") or {}).get("stop_reason") or self._stop_reason
            # The counts are cumulative: the output so far, and the input again when it is sent.
            self._usage.update({name: value for name, value in (event.get("usage") or {}).items()
                                if value is not None})
            return []
        if kind == "message_stop":
            self.done = True
            finish = FINISH_REASONS.get(self._stop_reason or "end_turn", "stop")
            return [self._chunk({}, finish_reason=finish),
                    {**self._base(), "choices": [], "usage": openai_usage(self._usage)}]
        return []  # ping, and event types added later

    def _base(self) -> dict[str, Any]:
        return {"id": self._id, "object": "chat.completion.chunk", "created": self._created, "model": self._model}

    def _chunk(self, delta: dict[str, Any], *, finish_reason: str | None = None) -> dict[str, Any]:
        return {**self._base(), "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                             "finish_reason": finish_reason}]}


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
