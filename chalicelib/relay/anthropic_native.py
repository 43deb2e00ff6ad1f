"""Anthropic's Messages API served natively: a `/v1/messages` request goes to an Anthropic channel as the
client sent it, and its answer comes back as Anthropic sent it.

A base class of the Relay: it uses the relay's own steps (check, admit, hold, settle or release, record),
so a Messages request is admitted, held, charged and recorded exactly as a chat is. What differs:

    client's body ──► models checked ──► admitted once (prompt estimate + output cap, as for a chat)
        per model, in turn: hold ──► its channels, by priority (routing.Dispatcher):
            Anthropic channel:  the body as sent, but `model` → the channel's upstream model,
                                `max_tokens` → what was held for, the gateway's `models` left out
            any other channel:  translated to a chat (anthropic_inbound), its answer translated back
        ──► settled from the usage the upstream reports: input, output, cache reads and cache
            writes, each at its own price; one usage event

What reaches the client from an Anthropic channel is Anthropic's answer with two changes: `model` names
the model that answered (the one asked for, or the fallback that served), and `usage.cost_usd` says what
the wallet was charged. A stream's events go on one by one as they arrive, their text untouched:

    message_start           `model` rewritten; its usage read (input, cache reads and writes)
    content_block_* / ping  passed on as they came; their text (text, thinking, tool input) counted
    message_delta           its usage read; held until message_stop, then sent with `usage.cost_usd`
    message_stop            passed on once the stream is settled
    error                   where the upstream failed mid-stream: its own event, else one in its envelope

Charge policy (the relay's, see relay.py): a stream that ends is charged its usage (message_start's
counts updated by message_delta's); one cut after content reached the client, by the client or the
upstream, costs the prompt as reported and the content delivered (estimated, or the output reported if
more), never more than was held; cut before any content, nothing, and its hold is released.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from chalicelib.billing import pricing
from chalicelib.billing.holds import Quote
from chalicelib.billing.pricing import Usage
from chalicelib.catalog.catalog import ResolvedRoute
from chalicelib.core.domain import CAP_FIELDS, ApiKey
from chalicelib.core.errors import InvalidRequest, ProviderError, UpstreamRejected
from chalicelib.core.money import units_to_usd
from chalicelib.providers.first_token import has_message_token
from chalicelib.providers.port import MessagesAdapter, MessagesEvent, Operation
from chalicelib.relay.anthropic_inbound import to_anthropic_message, to_openai_chat
from chalicelib.relay.anthropic_stream import AnthropicStream, anthropic_error, sse
from chalicelib.relay.fields import choice_text, refuse_unpriced_messages_fields
from chalicelib.relay.result import RelayResult, failure
from chalicelib.relay.routing import until_first_token
from chalicelib.relay.schemas import MessagesRequest

if TYPE_CHECKING:
    from chalicelib.relay.candidates import Checked
    from chalicelib.relay.limits import Ticket
    from chalicelib.relay.relay import Relay, _Call


def messages_prompt_tokens(body: dict[str, Any]) -> int:
    """The prompt estimate of a Messages body: that of the chat it translates to, or, when it holds what a
    chat cannot say (documents, server tools), that of the body itself."""
    try:
        return pricing.chat_prompt_tokens(to_openai_chat(body))
    except InvalidRequest:
        return pricing.chat_prompt_tokens(body)


@dataclass(frozen=True)
class _Answer:
    """What a channel answered: Anthropic's own message (or events), or an OpenAI chat's completion (or chunks)."""

    native: bool
    payload: Any


class NativeMessages:
    """`messages`, the Relay's service for Anthropic's Messages API (see the module's docstring). A base of
    the Relay, holding nothing of its own: its methods are the Relay's, and use the Relay's steps."""

    def messages(self: Relay, key: ApiKey, request: MessagesRequest, request_id: str, *,
                 client_ip: str | None = None) -> RelayResult:
        """An Anthropic message, plain or streamed, from the first of the request's models that answers."""
        return self._in_turn(key, request, request_id, client_ip, messages_prompt_tokens, self._messages_on)

    def _messages_on(self: Relay, checked: Checked, key: ApiKey, request: MessagesRequest, request_id: str, *,
                     started: float, fallback: bool, ticket: Ticket | None) -> RelayResult:
        call, body = self._start(request_id, key, Operation.CHAT, request, checked, started=started,
                                  refuse=refuse_unpriced_messages_fields)
        call.ticket = ticket
        call.prompt_estimate = messages_prompt_tokens(body)
        quote = Quote(call.prices, Usage(prompt_tokens=call.prompt_estimate),
                      # A cap above the model's maximum is not held for: the model cannot use it.
                      output_tokens=min(request.max_tokens, call.model.max_output_tokens or request.max_tokens),
                      multiplier_ppm=call.multiplier_ppm)
        reservation = self._reserve(call, quote)
        with self._closing(call, fallback=fallback):
            # The upstream may write no more than was held for, whatever the client asked.
            body["max_tokens"] = reservation.output_tokens
            routes, chat = call.routes, None
            try:
                chat = to_openai_chat(body)
            except InvalidRequest as exc:
                # What a chat cannot say goes only to the channels that take it natively.
                routes = [route for route in routes if isinstance(self._dispatcher.adapter(route), MessagesAdapter)]
                if not routes:
                    refused = UpstreamRejected(400, exc.message, param=exc.param, code=exc.code)
                    refused.retryable = True  # another of the request's models may take it natively
                    raise refused from exc

            def on_route(route: ResolvedRoute) -> None:
                call.route = route

            answer = self._dispatcher.send_each(routes, lambda route: self._send(call, route, body, chat),
                                                 model=call.model.name, on_route=on_route)
            if call.stream:
                return self._streamed(call, answer, body)
            return self._answered(call, answer, body)

    def _send(self: Relay, call: _Call, route: ResolvedRoute, body: dict[str, Any],
              chat: dict[str, Any] | None) -> _Answer:
        """One channel's answer: natively from an Anthropic channel, through `chat` (the body translated)
        from any other."""
        adapter = self._dispatcher.adapter(route)
        timeout_s, first_token_s = self._timeout(call.model), self._first_token_s(call.model)
        if isinstance(adapter, MessagesAdapter):
            native = {**body, "model": route.upstream_model}
            if call.stream:
                # Read up to its first token before it is handed out: until then the next channel may answer.
                return _Answer(True, until_first_token(
                    adapter.messages_stream(route.channel, native, timeout_s=timeout_s, first_token_s=first_token_s),
                    has_message_token))
            return _Answer(True, adapter.messages(route.channel, native, timeout_s=timeout_s))
        assert chat is not None  # the routes were left to those that take the body natively
        chat = {name: value for name, value in chat.items() if name not in CAP_FIELDS}
        chat[call.model.cap_field] = body["max_tokens"]
        chat["model"] = route.upstream_model
        if call.stream:
            return _Answer(False, until_first_token(adapter.stream(route.channel, Operation.CHAT, chat,
                                                                   timeout_s=timeout_s, first_token_s=first_token_s)))
        return _Answer(False, adapter.call(route.channel, Operation.CHAT, chat, timeout_s=timeout_s))

    def _answered(self: Relay, call: _Call, answer: _Answer, body: dict[str, Any]) -> RelayResult:
        """A plain answer, settled: Anthropic's message with `model` and `usage.cost_usd` set."""
        if not answer.native:
            completion = answer.payload
            usage = pricing.read_usage(completion.get("usage")) or Usage(
                prompt_tokens=call.prompt_estimate,
                completion_tokens=sum(pricing.text_tokens(choice_text(c)) for c in completion.get("choices") or []))
            result = self._complete(call, completion, usage)
            assert result.body is not None
            result.body = to_anthropic_message(result.body, message_id=_message_id(call),
                                               stop_sequences=body.get("stop_sequences"))
            return result
        message = answer.payload
        usage = pricing.read_usage(message.get("usage")) or Usage(
            prompt_tokens=call.prompt_estimate,
            completion_tokens=sum(pricing.text_tokens(_block_text(block)) for block in message.get("content") or []))
        charged = self._settle(call, usage, status=200)
        message["model"] = call.model.name
        if isinstance(message.get("usage"), dict):
            message["usage"]["cost_usd"] = units_to_usd(charged)
        return RelayResult(call.request_id, body=message, cost_units=charged)

    def _streamed(self: Relay, call: _Call, answer: _Answer, body: dict[str, Any]) -> RelayResult:
        """A stream of Anthropic events, stepped once (see Relay._chat_on): closing it at any point settles it."""
        result = RelayResult(call.request_id)
        if answer.native:
            native = self._relay_messages(call, answer.payload, result)
            next(native)
            result.events = native
            return result
        chunks = self._relay_stream(call, answer.payload, result, wants_usage=True)
        next(chunks)
        result.events = AnthropicStream(chunks, message_id=_message_id(call), model=call.model.name,
                                        stop_sequences=body.get("stop_sequences"))
        return result

    def _relay_messages(self: Relay, call: _Call, events: Iterator[MessagesEvent],
                        result: RelayResult) -> Iterator[str]:
        reported: dict[str, Any] = {}  # the usage counts so far: message_start's, updated by message_delta's
        delivered: list[str] = []
        held: dict[str, Any] | None = None  # message_delta, until the stream is settled and its cost known
        status, error_type = 499, "client_closed_request"
        try:
            yield ""  # the step `_streamed` takes before handing the stream out; nobody sees it
            ending: list[str] = []
            try:
                for event in events:
                    if event.type == "message_start" and isinstance(event.data.get("message"), dict):
                        reported.update(_counts(event.data["message"].get("usage")))
                        event.data["message"]["model"] = call.model.name
                        yield sse(event.data)
                    elif event.type == "message_delta":
                        reported.update(_counts(event.data.get("usage")))
                        held = event.data
                    elif event.type == "message_stop":
                        ending = [event.raw]
                    else:
                        text = _delivered(event)
                        if text:
                            if call.ttft_ms is None:
                                call.ttft_ms = self._elapsed_ms(call)
                            delivered.append(text)
                        yield event.raw
                status, error_type, finished = 200, None, True
            except ProviderError as exc:
                status, error_type, finished = exc.status, exc.type, False
                ending = [sse(exc.upstream_envelope or anthropic_error(exc.status, exc.message))]
            result.cost_units = self._settle_messages(call, reported, delivered, finished=finished, status=status,
                                                      error_type=error_type)
            if held is not None:
                usage = held["usage"] if isinstance(held.get("usage"), dict) else held.setdefault("usage", {})
                usage["cost_usd"] = result.cost_usd
                yield sse(held)
            yield from ending
        except Exception as exc:
            status, error_type = failure(exc)
            raise
        finally:
            # Runs also when the consumer stops early (a client that hung up), or on an
            # unexpected error, which propagates once the hold is closed.
            try:
                if not call.closed:
                    result.cost_units = self._settle_messages(call, reported, delivered, finished=False,
                                                              status=status, error_type=error_type)
            finally:
                close = getattr(events, "close", None)
                if close is not None:
                    close()  # the upstream connection goes now, not whenever the iterator is collected

    def _settle_messages(self: Relay, call: _Call, reported: dict[str, Any], delivered: list[str], *, finished: bool,
                         status: int, error_type: str | None) -> int:
        assert call.reservation is not None
        usage = pricing.read_usage(reported)
        written = sum(pricing.text_tokens(text) for text in delivered)
        if finished:
            usage = usage or Usage(prompt_tokens=call.prompt_estimate, completion_tokens=written)
            return self._settle(call, usage, status=status, error_type=error_type)
        if not written:
            self._release(call, status=status, error_type=error_type)
            return 0
        usage = usage or Usage(prompt_tokens=call.prompt_estimate)
        usage = replace(usage, completion_tokens=max(usage.completion_tokens, written))
        return self._settle(call, usage, status=status, error_type=error_type, cap=call.reservation.hold.amount)


def _message_id(call: _Call) -> str:
    """The id of a message the gateway translated (Anthropic's own keep theirs)."""
    return "msg_" + call.request_id.removeprefix("req_")


def _counts(usage: Any) -> dict[str, Any]:
    return {name: value for name, value in usage.items() if value is not None} if isinstance(usage, dict) else {}


def _block_text(block: Any) -> str:
    """The text of an answer's content block (text, thinking, a tool call's input), for estimates."""
    if not isinstance(block, dict):
        return ""
    for name in ("text", "thinking"):
        if isinstance(block.get(name), str):
            return str(block[name])
    return json.dumps(block["input"]) if block.get("type") == "tool_use" and block.get("input") else ""


def _delivered(event: MessagesEvent) -> str:
    """The content an event carries to the client (text, thinking, a tool call's input), for estimates."""
    if event.type == "content_block_delta" and isinstance(event.data.get("delta"), dict):
        delta = event.data["delta"]
        return next((delta[name] for name in ("text", "thinking", "partial_json")
                     if isinstance(delta.get(name), str)), "")
    if event.type == "content_block_start" and isinstance(event.data.get("content_block"), dict):
        text = event.data["content_block"].get("text")
        return text if isinstance(text, str) else ""
    return ""
