"""Anthropic's Messages API, spoken by the gateway to channels that do not speak it: a request turned
into an OpenAI chat body, and the chat completion that answers it turned back into an Anthropic message.
(Anthropic channels take the request as the client sent it: see anthropic_native.py.)

Pure translation: nothing here does I/O, holds or charges; the relay serves the translated body as
it serves any chat. A request is refused with 400 (as an InvalidRequest naming the field) when it
cannot be said in the chat format without changing its meaning:
- `max_tokens` is required, as Anthropic requires it;
- content blocks other than text, image, tool_use and tool_result (documents, server tools'
  blocks) and tools other than client tools (name, description, input_schema) are refused.

Dropped, because the chat format has no place for them and they do not change what is charged:
`top_k` (OpenAI's API refuses it, and the gateway sends every model the OpenAI format),
`metadata`, `thinking`, `service_tier`, the `cache_control` of any block, and `thinking`
blocks of earlier assistant turns. An image inside a tool result goes to a user message right
after the tool messages, since a chat tool message holds text only.

Streams are translated in anthropic_stream.py.
"""

from __future__ import annotations

import json
from typing import Any

from chalicelib.core.errors import InvalidRequest

# OpenAI's finish_reason → Anthropic's stop_reason.
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                "content_filter": "refusal"}
_TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}


def check_messages_body(body: Any) -> dict[str, Any]:
    """The fields the gateway itself reads, checked as Anthropic checks them: a positive `max_tokens`,
    a non-empty list of `messages` (the rest is the upstream's to judge, natively)."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise InvalidRequest("max_tokens: Field required", param="max_tokens", code="missing_required_parameter")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise InvalidRequest("max_tokens: Input should be a positive integer", param="max_tokens",
                             code="invalid_value")
    turns = body.get("messages")
    if not isinstance(turns, list) or not turns:
        raise InvalidRequest("messages: Input should be a non-empty list", param="messages", code="invalid_value")
    return body


def to_openai_chat(body: Any) -> dict[str, Any]:
    """The OpenAI chat body that asks what the Anthropic Messages request `body` asks."""
    body = check_messages_body(body)
    max_tokens = body["max_tokens"]
    messages = _system(body.get("system"))
    turns = body["messages"]
    for index, turn in enumerate(turns):
        messages.extend(_turn(turn, f"messages.{index}"))
    chat: dict[str, Any] = {"model": body.get("model"), "messages": messages, "max_tokens": max_tokens}
    for field in ("temperature", "top_p"):
        if body.get(field) is not None:
            chat[field] = body[field]
    stops = body.get("stop_sequences")
    if stops:
        if not isinstance(stops, list) or not all(isinstance(stop, str) for stop in stops):
            raise InvalidRequest("stop_sequences: Input should be a list of strings", param="stop_sequences",
                                 code="invalid_value")
        chat["stop"] = stops
    if body.get("tools"):
        chat["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        chat.update(_tool_choice(body["tool_choice"]))
    if body.get("stream") is not None:
        chat["stream"] = body["stream"]
    if body.get("stream") is True:
        # The usage chunk, which the relay yields only to a client that asks, ends the Anthropic stream.
        chat["stream_options"] = {"include_usage": True}
    return chat


def to_anthropic_message(completion: dict[str, Any], *, message_id: str, stop_sequences: list[str] | None = None,
                         ) -> dict[str, Any]:
    """The Anthropic message of a chat completion (its first choice; Anthropic has no `n`)."""
    choices = completion.get("choices") or [{}]
    choice = choices[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        content.append({"type": "tool_use", "id": call.get("id") or "", "name": function.get("name") or "",
                        "input": tool_input(function.get("arguments"))})
    stop_reason, stop_sequence = stop_of(choice, stop_sequences)
    return {"id": message_id, "type": "message", "role": "assistant", "model": completion.get("model"),
            "content": content, "stop_reason": stop_reason, "stop_sequence": stop_sequence,
            "usage": anthropic_usage(completion.get("usage"))}


def stop_of(choice: dict[str, Any], stop_sequences: list[str] | None) -> tuple[str | None, str | None]:
    """Anthropic's stop_reason and stop_sequence for a choice's finish_reason. The chat format does not say
    which stop sequence ended the text; servers that do (vLLM's `stop_reason`, SGLang's `matched_stop`) are read."""
    finish = choice.get("finish_reason")
    if finish is None:
        return None, None
    matched = choice.get("stop_reason") or choice.get("matched_stop")
    if finish == "stop" and isinstance(matched, str) and matched in (stop_sequences or []):
        return "stop_sequence", matched
    return STOP_REASONS.get(finish, "end_turn"), None


def anthropic_usage(usage: Any) -> dict[str, Any]:
    """Anthropic's usage of an OpenAI one: its `input_tokens` leave out the tokens read from the cache."""
    usage = usage if isinstance(usage, dict) else {}
    prompt = _count(usage.get("prompt_tokens"))
    details = usage.get("prompt_tokens_details")
    cached = min(prompt, _count(details.get("cached_tokens"))) if isinstance(details, dict) else 0
    counted = {"input_tokens": prompt - cached, "output_tokens": _count(usage.get("completion_tokens")),
               "cache_creation_input_tokens": 0, "cache_read_input_tokens": cached}
    if usage.get("cost_usd") is not None:
        counted["cost_usd"] = usage["cost_usd"]
    return counted


def tool_input(arguments: Any) -> dict[str, Any]:
    """A tool call's arguments as the object Anthropic's `input` is; arguments that are not a JSON object
    (a model's malformed output) are kept whole under `arguments`, not lost."""
    if not arguments:
        return {}
    try:
        parsed = json.loads(arguments)
    except (TypeError, ValueError):
        return {"arguments": arguments}
    return parsed if isinstance(parsed, dict) else {"arguments": parsed}


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _system(system: Any) -> list[dict[str, Any]]:
    if system is None or system == "" or system == []:
        return []
    if isinstance(system, str):
        return [{"role": "system", "content": system}]
    if isinstance(system, list) and all(isinstance(b, dict) and b.get("type") == "text" for b in system):
        return [{"role": "system", "content": "\n\n".join(_text(block, "system") for block in system)}]
    raise InvalidRequest("system: Input should be a string or a list of text blocks", param="system",
                         code="invalid_value")


def _turn(turn: Any, where: str) -> list[dict[str, Any]]:
    """The chat messages of one Anthropic turn (a user turn's tool results become `tool` messages first)."""
    if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant"):
        raise InvalidRequest(f"{where}.role: Input should be 'user' or 'assistant'", param="messages",
                             code="invalid_value")
    content = turn.get("content")
    if isinstance(content, str):
        return [{"role": turn["role"], "content": content}]
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}.content: Input should be a string or a list of content blocks",
                             param="messages", code="invalid_value")
    blocks = [_block(block, f"{where}.content.{i}") for i, block in enumerate(content)]
    if turn["role"] == "assistant":
        return [_assistant(blocks, where)]
    return _user(blocks, where)


def _block(block: Any, where: str) -> dict[str, Any]:
    if not isinstance(block, dict) or block.get("type") not in ("text", "image", "tool_use", "tool_result",
                                                                "thinking", "redacted_thinking"):
        kind = block.get("type") if isinstance(block, dict) else None
        raise InvalidRequest(f"{where}: the content block type {json.dumps(kind)} is not supported; send text, "
                             "image, tool_use or tool_result blocks", param="messages", code="invalid_value")
    return block


def _assistant(blocks: list[dict[str, Any]], where: str) -> dict[str, Any]:
    texts = [_text(block, where) for block in blocks if block["type"] == "text"]
    calls = [{"id": _string(block, "id", where), "type": "function",
              "function": {"name": _string(block, "name", where),
                           "arguments": json.dumps(block.get("input") or {}, separators=(",", ":"))}}
             for block in blocks if block["type"] == "tool_use"]
    if any(block["type"] in ("image", "tool_result") for block in blocks):
        raise InvalidRequest(f"{where}: an assistant turn holds text and tool_use blocks only", param="messages",
                             code="invalid_value")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _user(blocks: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    tool_messages: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in blocks:
        if block["type"] == "tool_result":
            text, images = _tool_result(block, where)
            tool_messages.append({"role": "tool", "tool_call_id": _string(block, "tool_use_id", where),
                                  "content": text})
            parts.extend(images)
        elif block["type"] == "text":
            parts.append({"type": "text", "text": _text(block, where)})
        elif block["type"] == "image":
            parts.append(_image(block, where))
        elif block["type"] == "tool_use":
            raise InvalidRequest(f"{where}: a user turn cannot hold tool_use blocks", param="messages",
                                 code="invalid_value")
    if not parts:
        return tool_messages
    if all(part["type"] == "text" for part in parts):
        # Plain text as one string: every OpenAI-compatible upstream reads that.
        return [*tool_messages, {"role": "user", "content": "\n\n".join(part["text"] for part in parts)}]
    return [*tool_messages, {"role": "user", "content": parts}]


def _tool_result(block: dict[str, Any], where: str) -> tuple[str, list[dict[str, Any]]]:
    content = block.get("content")
    if content is None or isinstance(content, str):
        text, images = content or "", []
    elif isinstance(content, list):
        inner = [_block(item, f"{where}.content") for item in content]
        text = "\n\n".join(_text(item, where) for item in inner if item["type"] == "text")
        images = [_image(item, where) for item in inner if item["type"] == "image"]
    else:
        raise InvalidRequest(f"{where}.content: Input should be a string or a list of content blocks",
                             param="messages", code="invalid_value")
    if block.get("is_error") is True:
        # The chat format has no error flag on a tool message: the model reads it in the text.
        text = f"Error: {text}" if text else "Error"
    return text, images


def _image(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "base64" and isinstance(source.get("data"), str) \
            and isinstance(source.get("media_type"), str):
        url = f"data:{source['media_type']};base64,{source['data']}"
    elif isinstance(source, dict) and source.get("type") == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise InvalidRequest(f"{where}.source: an image source is base64 (media_type, data) or url",
                             param="messages", code="invalid_value")
    return {"type": "image_url", "image_url": {"url": url}}


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise InvalidRequest("tools: Input should be a list", param="tools", code="invalid_value")
    converted = []
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") not in (None, "custom") \
                or not isinstance(tool.get("name"), str) or not isinstance(tool.get("input_schema"), dict):
            raise InvalidRequest(f"tools.{index}: only client tools (name, description, input_schema) are "
                                 "supported", param="tools", code="invalid_value")
        function: dict[str, Any] = {"name": tool["name"], "parameters": tool["input_schema"]}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        converted.append({"type": "function", "function": function})
    return converted


def _tool_choice(choice: Any) -> dict[str, Any]:
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind in _TOOL_CHOICES:
        chosen: dict[str, Any] = {"tool_choice": _TOOL_CHOICES[kind]}
    elif kind == "tool" and isinstance(choice.get("name"), str):
        chosen = {"tool_choice": {"type": "function", "function": {"name": choice["name"]}}}
    else:
        raise InvalidRequest("tool_choice: Input should be auto, any, tool (with a name) or none",
                             param="tool_choice", code="invalid_value")
    if choice.get("disable_parallel_tool_use") is True and kind != "none":
        chosen["parallel_tool_calls"] = False
    return chosen


def _text(block: Any, where: str) -> str:
    text = block.get("text") if isinstance(block, dict) else None
    if not isinstance(text, str):
        raise InvalidRequest(f"{where}: a text block's text should be a string", param="messages",
                             code="invalid_value")
    return text


def _string(block: dict[str, Any], field: str, where: str) -> str:
    value = block.get(field)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{where}.{field}: Field required", param="messages", code="invalid_value")
    return value
