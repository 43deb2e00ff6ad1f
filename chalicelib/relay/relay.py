"""The relay: price, hold, call the upstream, settle, record — for chat, embeddings and images, and
Anthropic's Messages API (`messages`, in anthropic_native.py: a base of the Relay, using its steps).

Nothing here knows about Chalice. The services take validated requests (see
schemas.py). A streamed chat returns an iterator of SSE events; whoever serves
it may buffer it (Lambda behind API Gateway) or send each event as it comes,
and must exhaust or close it: settlement happens when that iterator finishes or
is closed, so the charge is exact either way.

What is sent upstream is what was held for:
- the prompt estimate covers every field of the body (see pricing.chat_prompt_tokens);
- the output cap held for is always sent, in the field the model's provider reads;
- a field that changes the provider's price beyond the model's prices is refused,
  unless the model passes it through (catalog.PRICE_CHANGING_FIELDS);
- images are priced by quality and size; an unpriced combination is refused.

Charge policy:
- a call that fails before the upstream answers costs nothing, and its hold is released;
- a completed call costs its usage as the upstream reports it, at the model's prices;
  when the upstream reports none, the gateway's own estimate of prompt and output;
- a stream cut after content reached the client costs the prompt and the content
  delivered (estimated), never more than was held; cut before any content, nothing;
- the client is told what the wallet was charged; usage beyond what the wallet
  holds is recorded as a shortfall in the ledger entry and the usage event.

Request limits (limits.py): a request is admitted under its key's limits after its model is checked
and before anything is held (refused: 429, nothing held); it is finished, once, on every way out —
its answer returned, its stream exhausted or closed, any error — with its tokens corrected to what
the answer used. A request that falls back is admitted once, under its first model.

Once a request is held, every way out of it settles or releases the hold at once
and records a usage event, an unexpected exception included (which then propagates).

Fallback, for a chat naming several models (`models`, or the model's operator-set `fallbacks`):

    model A: hold A ──► A's channels (see _call_upstream) ──► answer: settle A, done
                              │ retryable failure, nothing sent to the client
                              ▼
             release A (not recorded: it cost nothing and answered nothing)
    model B: hold B ──► B's channels ──► answer: settle B at B's prices; `model`, the usage
                              │                  event and the ledger entry name B
                              ▼
             … the last model's failure is the answer (released and recorded)

Each model is held for on its own, with its own prices and output cap, under the request's
id (a released hold is gone, so the next one may take the id): the charge is exactly the
answering model's. A non-retryable failure (the upstream refusing the request) ends the
request at once; a stream falls back only before it started (the adapter checks the status
before handing it out).
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from chalicelib.billing import pricing
from chalicelib.billing.holds import Billing, Quote, Reservation
from chalicelib.billing.pricing import Usage
from chalicelib.catalog.catalog import Catalog, ResolvedRoute
from chalicelib.core.domain import CAP_FIELDS, PPM, ApiKey, ModelEntry, Prices, UsageEvent
from chalicelib.core.errors import ProviderError
from chalicelib.core.money import units_to_usd
from chalicelib.core.usage import UsageDelta
from chalicelib.keys.plans import KeyPlans
from chalicelib.providers.port import Operation, ProviderAdapter
from chalicelib.relay.anthropic_native import NativeMessages
from chalicelib.relay.candidates import Checked, ModelChecker
from chalicelib.relay.fields import choice_text, image_price, openai_usage, refuse_unpriced_fields
from chalicelib.relay.health import ChannelBreakers
from chalicelib.relay.limits import RequestLimits, Ticket
from chalicelib.relay.result import RelayResult
from chalicelib.relay.result import failure as _failure
from chalicelib.relay.routing import Dispatcher
from chalicelib.relay.schemas import ChatRequest, EmbeddingsRequest, ImagesRequest
from chalicelib.storage.ports import UsageSink
from chalicelib.usage.events import emit


@dataclass
class _Call:
    """One relay request in flight."""

    request_id: str
    key: ApiKey
    endpoint: Operation
    model: ModelEntry
    prices: Prices  # the model's, with the image price of this request's quality and size
    stream: bool
    started: float
    routes: list[ResolvedRoute]
    reservation: Reservation | None = None
    closed: bool = False  # its hold settled or released
    route: ResolvedRoute | None = None
    ttft_ms: int | None = None
    prompt_estimate: int = 0
    multiplier_ppm: int = PPM
    ticket: Ticket | None = None  # its admission under the key's request limits


# Serves a request on one of its models: (checked, key, request, request_id, *, started, fallback, ticket).
_OnModel = Callable[..., RelayResult]


class Relay(NativeMessages):
    def __init__(self, catalog: Catalog, billing: Billing, adapters: Mapping[str, ProviderAdapter],
                 usage_sink: UsageSink, *, plans: KeyPlans,
                 default_timeout_s: float, first_token_timeout_s: float | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time, breakers: ChannelBreakers | None = None,
                 rng: random.Random | None = None, limits: RequestLimits | None = None) -> None:
        self._catalog = catalog
        self._limits = limits or RequestLimits(None, wall_clock=wall_clock)
        self._plans = plans
        self._billing = billing
        self._usage_sink = usage_sink
        self._default_timeout_s = default_timeout_s
        self._first_token_timeout_s = first_token_timeout_s
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._checker = ModelChecker(catalog, plans)
        self._dispatcher = Dispatcher(adapters, breakers or ChannelBreakers(clock=monotonic),
                                      rng or random.Random(), monotonic=monotonic)

    @staticmethod
    def new_request_id() -> str:
        return f"req_{uuid.uuid4().hex}"

    def models(self, key: ApiKey) -> dict[str, Any]:
        """`GET /v1/models`: the routable models this key may call, in the OpenAI list format."""
        group = self._plans.listed(key)
        allowed = [model for model in self._catalog.routable_models()
                   if group is not None and group.allows(model.name) and key.allows(model.name)]
        return {
            "object": "list",
            "data": [{"id": model.name, "object": "model", "created": 0, "owned_by": model.owned_by}
                     for model in sorted(allowed, key=lambda m: m.name)],
        }

    def chat(self, key: ApiKey, request: ChatRequest, request_id: str, *,
             client_ip: str | None = None) -> RelayResult:
        """A chat completion, plain or streamed, from the first of its models that answers."""
        return self._in_turn(key, request, request_id, client_ip, pricing.chat_prompt_tokens, self._chat_on)

    def _in_turn(self, key: ApiKey, request: ChatRequest, request_id: str, client_ip: str | None,
                 prompt_estimate: Callable[[dict[str, Any]], int], on_model: _OnModel) -> RelayResult:
        """The answer of the first of the request's models that answers, `on_model` serving each in turn."""
        started = self._monotonic()
        candidates = self._checker.chat_candidates(key, request, client_ip)
        first = candidates[0]
        # Admitted once, under the first model, with the estimate its hold will be made of.
        asked, model_cap = request.output_cap, first.model.max_output_tokens or 0
        estimate = prompt_estimate(request.upstream_body()) + (
            min(asked, model_cap) if asked else model_cap) * request.n
        ticket = self._limits.admit(request_id, key, first.group, first.model.name, estimate,
                                    timeout_s=self._timeout(first.model))

        def answer() -> RelayResult:
            for position, checked in enumerate(candidates):
                last = position + 1 == len(candidates)
                try:
                    return on_model(checked, key, request, request_id, started=started, fallback=not last,
                                    ticket=ticket)
                except ProviderError as exc:
                    if last or not exc.retryable:
                        raise
            raise AssertionError("a chat has at least one model")

        return self._limits.serve(ticket, answer)

    def _chat_on(self, checked: Checked, key: ApiKey, request: ChatRequest, request_id: str, *,
                 started: float, fallback: bool, ticket: Ticket | None) -> RelayResult:
        call, body = self._start(request_id, key, Operation.CHAT, request, checked, started=started)
        call.ticket = ticket
        call.prompt_estimate = pricing.chat_prompt_tokens(body)
        model_cap = call.model.max_output_tokens  # every chat model has one (catalog.py)
        asked = request.output_cap
        quote = Quote(
            call.prices, Usage(prompt_tokens=call.prompt_estimate),
            # A cap above the model's maximum is not held for: the model cannot use it.
            output_tokens=min(asked, model_cap) if asked else model_cap,
            choices=request.n, multiplier_ppm=call.multiplier_ppm,
        )
        reservation = self._reserve(call, quote)
        with self._closing(call, fallback=fallback):
            # The upstream may write no more than was held for, whatever the client asked
            # and in whichever field: the cap goes in the one field its provider reads.
            for field in CAP_FIELDS:
                body.pop(field, None)
            body[call.model.cap_field] = reservation.output_tokens
            if request.stream:
                # Always ask for usage, so that a stream is charged exactly.
                body["stream_options"] = {**(request.stream_options or {}), "include_usage": True}
                events = self._call_upstream(call, body)
                result = RelayResult(request_id)
                stream = self._relay_stream(call, events, result, wants_usage=request.wants_usage)
                # A generator closed before its first step runs none of its body, `finally` included:
                # stepped once, closing it at any point settles the stream.
                next(stream)
                result.events = stream
                return result
            payload = self._call_upstream(call, body)
            usage = pricing.read_usage(payload.get("usage")) or Usage(
                prompt_tokens=call.prompt_estimate,
                completion_tokens=sum(pricing.text_tokens(choice_text(c)) for c in payload.get("choices") or []),
            )
            return self._complete(call, payload, usage)

    def embeddings(self, key: ApiKey, request: EmbeddingsRequest, request_id: str, *,
                   client_ip: str | None = None) -> RelayResult:
        """Embeddings of a validated `input` (every item costs at least one token)."""
        checked = self._checker.check(request.model, Operation.EMBEDDINGS, key, client_ip)
        estimate = pricing.embedding_input_tokens(request.input)
        ticket = self._limits.admit(request_id, key, checked.group, checked.model.name, estimate,
                                    timeout_s=self._timeout(checked.model))
        return self._limits.serve(ticket, lambda: self._embeddings_on(checked, key, request, request_id, ticket))

    def _embeddings_on(self, checked: Checked, key: ApiKey, request: EmbeddingsRequest, request_id: str,
                       ticket: Ticket | None) -> RelayResult:
        call, body = self._start(request_id, key, Operation.EMBEDDINGS, request, checked)
        call.ticket = ticket
        call.prompt_estimate = pricing.embedding_input_tokens(request.input)
        self._reserve(call, Quote(call.prices, Usage(prompt_tokens=call.prompt_estimate),
                                  multiplier_ppm=call.multiplier_ppm))
        with self._closing(call):
            payload = self._call_upstream(call, body)
            usage = pricing.read_usage(payload.get("usage")) or Usage(prompt_tokens=call.prompt_estimate)
            return self._complete(call, payload, usage)

    def images(self, key: ApiKey, request: ImagesRequest, request_id: str, *,
               client_ip: str | None = None) -> RelayResult:
        """Image generation, priced per image of the requested quality and size."""
        checked = self._checker.check(request.model, Operation.IMAGES, key, client_ip)
        ticket = self._limits.admit(request_id, key, checked.group, checked.model.name, 0,
                                    timeout_s=self._timeout(checked.model))
        return self._limits.serve(ticket, lambda: self._images_on(checked, key, request, request_id, ticket))

    def _images_on(self, checked: Checked, key: ApiKey, request: ImagesRequest, request_id: str,
                   ticket: Ticket | None) -> RelayResult:
        call, body = self._start(request_id, key, Operation.IMAGES, request, checked)
        call.ticket = ticket
        call.prices = replace(call.prices, per_image=image_price(call.model, request))
        self._reserve(call, Quote(call.prices, Usage(images=request.n), multiplier_ppm=call.multiplier_ppm))
        with self._closing(call):
            payload = self._call_upstream(call, body)
            data = payload.get("data")
            # The images the upstream returned are what it charges for, whatever was asked.
            images = len(data) if isinstance(data, list) else request.n
            return self._complete(call, payload, Usage(images=images))

    # The steps every request shares.

    def _start(self, request_id: str, key: ApiKey, endpoint: Operation,
               request: ChatRequest | EmbeddingsRequest | ImagesRequest, checked: Checked, *,
               started: float | None = None,
               refuse: Callable[[ModelEntry, dict[str, Any]], None] = refuse_unpriced_fields,
               ) -> tuple[_Call, dict[str, Any]]:
        """The call of a checked model, and the body to send upstream (`refuse` checks its priced fields)."""
        model = checked.model
        body = request.upstream_body()
        refuse(model, body)
        stream = isinstance(request, ChatRequest) and request.stream
        return _Call(request_id, key, endpoint, model, model.prices, stream,
                     started=self._monotonic() if started is None else started,
                     routes=checked.routes, multiplier_ppm=checked.group.multiplier_ppm), body

    def _reserve(self, call: _Call, quote: Quote) -> Reservation:
        call.reservation = self._billing.reserve(call.request_id, call.key, quote, timeout_s=self._timeout(call.model))
        return call.reservation

    @contextmanager
    def _closing(self, call: _Call, *, fallback: bool = False) -> Iterator[None]:
        """Until the request is settled, any way out of it releases its hold and records it; with
        `fallback`, a retryable upstream failure only releases it, as another model will answer."""
        try:
            yield
        except BaseException as exc:
            if not call.closed:
                if fallback and isinstance(exc, ProviderError) and exc.retryable:
                    assert call.reservation is not None
                    call.closed = True
                    self._billing.release(call.reservation)
                else:
                    status, error_type = _failure(exc)
                    self._release(call, status=status, error_type=error_type)
            raise

    def _timeout(self, model: ModelEntry) -> float:
        return model.timeout_s or self._default_timeout_s

    def _first_token_s(self, model: ModelEntry) -> float | None:
        """How long a stream of `model` may wait for its first token (never longer than its timeout)."""
        first = self._first_token_timeout_s
        return None if first is None else min(first, self._timeout(model))

    def _call_upstream(self, call: _Call, body: dict[str, Any]) -> Any:
        """The first answer of the model's channels (see routing.Dispatcher), or its last failure."""
        def on_route(route: ResolvedRoute) -> None:
            call.route = route

        return self._dispatcher.send(call.routes, call.endpoint, body, stream=call.stream,
                                     timeout_s=self._timeout(call.model), first_token_s=self._first_token_s(call.model),
                                     model=call.model.name, on_route=on_route)

    def _release(self, call: _Call, *, status: int, error_type: str | None) -> None:
        """A request that delivered nothing: its hold goes back, and it is recorded at no cost."""
        assert call.reservation is not None
        call.closed = True
        at, latency = self._now_ms(), self._elapsed_ms(call)
        event = self._event(call, status=status, error_type=error_type, usage=Usage(), at=at, latency_ms=latency)
        if not self._billing.release(call.reservation, self._delta(call, Usage(), at, latency, error=True), event):
            emit(self._usage_sink, event)

    def _complete(self, call: _Call, payload: dict[str, Any], usage: Usage) -> RelayResult:
        charged = self._settle(call, usage, status=200)
        payload["model"] = call.model.name
        reported = payload.get("usage")
        if isinstance(reported, dict):
            openai_usage(reported, usage, call.model.kind)
            reported["cost_usd"] = units_to_usd(charged)
        return RelayResult(call.request_id, body=payload, cost_units=charged)

    def _settle(self, call: _Call, usage: Usage, *, status: int, error_type: str | None = None,
                cap: int | None = None) -> int:
        """Charge the usage (at most `cap`); what the wallet was actually charged."""
        assert call.reservation is not None
        cost = pricing.charge(call.prices, usage, call.multiplier_ppm)
        if cap is not None:
            cost = min(cost, cap)
        call.closed = True
        if call.ticket is not None:
            call.ticket.used = usage.prompt_tokens + usage.completion_tokens
        at, latency = self._now_ms(), self._elapsed_ms(call)
        event = self._event(call, status=status, error_type=error_type, usage=usage, at=at, latency_ms=latency)
        try:
            settlement = self._billing.settle(call.reservation, cost, model=call.model.name,
                                              key_id=call.key.key_id, prompt_tokens=usage.prompt_tokens,
                                              completion_tokens=usage.completion_tokens,
                                              usage=self._delta(call, usage, at, latency, error=status >= 400),
                                              event=event)
        except BaseException as exc:
            # Not charged: the hold goes back (or to the sweeper, if storage is down).
            failed_status, failed_type = _failure(exc)
            failed = replace(event, status=failed_status, error_type=failed_type)
            if not self._billing.release(call.reservation, self._delta(call, Usage(), at, latency, error=True),
                                         failed):
                emit(self._usage_sink, failed)
            raise
        if not settlement.recorded:
            emit(self._usage_sink, replace(event, cost_units=settlement.charged,
                                           shortfall_units=settlement.shortfall))
        return settlement.charged

    def _relay_stream(self, call: _Call, events: Iterator[dict[str, Any]], result: RelayResult, *,
                      wants_usage: bool) -> Iterator[str]:
        usage: Usage | None = None
        delivered: list[str] = []
        # The last event carrying usage, for a client that asked for it: held back until
        # the stream is settled, so that it can say what the wallet was charged.
        usage_event: dict[str, Any] | None = None
        status, error_type = 499, "client_closed_request"
        try:
            yield ""  # the step `chat` takes before handing the stream out; nobody sees it
            try:
                for event in events:
                    reported = pricing.read_usage(event.get("usage"))
                    if reported is not None:
                        usage = reported
                    texts = [choice_text(choice) for choice in event.get("choices") or []]
                    if call.ttft_ms is None and any(texts):
                        call.ttft_ms = self._elapsed_ms(call)
                    delivered.extend(texts)
                    event["model"] = call.model.name
                    if not wants_usage:
                        event.pop("usage", None)
                        if not event.get("choices"):
                            continue  # the usage-only chunk the client did not ask for
                    if usage_event is not None:
                        yield _sse(usage_event)
                        usage_event = None
                    if wants_usage and reported is not None:
                        usage_event = event
                        continue
                    yield _sse(event)
                status, error_type, finished, ending = 200, None, True, "data: [DONE]\n\n"
            except ProviderError as exc:
                status, error_type, finished, ending = exc.status, exc.type, False, _sse(exc.envelope())
            result.cost_units = self._settle_stream(call, usage, delivered, finished=finished, status=status,
                                                    error_type=error_type)
            if usage_event is not None:
                usage_event["usage"]["cost_usd"] = result.cost_usd
                yield _sse(usage_event)
            yield ending
        except Exception as exc:
            status, error_type = _failure(exc)
            raise
        finally:
            # Runs also when the consumer stops early (a client that hung up), or on an
            # unexpected error, which propagates once the hold is closed.
            try:
                if not call.closed:
                    result.cost_units = self._settle_stream(call, usage, delivered, finished=False, status=status,
                                                            error_type=error_type)
            finally:
                close = getattr(events, "close", None)
                if close is not None:
                    close()  # the upstream connection goes now, not whenever the iterator is collected

    def _settle_stream(self, call: _Call, usage: Usage | None, delivered: list[str], *, finished: bool,
                       status: int, error_type: str | None = None) -> int:
        assert call.reservation is not None
        completion_estimate = sum(pricing.text_tokens(text) for text in delivered)
        if usage is None and not finished and not completion_estimate:
            self._release(call, status=status, error_type=error_type)
            return 0
        if usage is None:
            usage = Usage(prompt_tokens=call.prompt_estimate, completion_tokens=completion_estimate)
        cap = None if finished else call.reservation.hold.amount
        return self._settle(call, usage, status=status, error_type=error_type, cap=cap)

    def _now_ms(self) -> int:
        return int(self._wall_clock() * 1000)

    def _delta(self, call: _Call, usage: Usage, at: int, latency_ms: int, *, error: bool) -> UsageDelta:
        """The request's contribution to the live rollups (its cost is filled in by the settlement)."""
        return UsageDelta(
            at=at, key_id=call.key.key_id, model=call.model.name,
            channel=call.route.channel.name if call.route else None, error=error,
            prompt_tokens=usage.prompt_tokens, cached_tokens=usage.cached_tokens,
            completion_tokens=usage.completion_tokens, images=usage.images,
            latency_ms=latency_ms, ttft_ms=call.ttft_ms,
        )

    def _event(self, call: _Call, *, status: int, error_type: str | None, usage: Usage, at: int,
               latency_ms: int) -> UsageEvent:
        """The request's usage event, at the time its rollup counts it (so the log and the rollups
        agree), at no cost: the settlement fills in what it charged."""
        return UsageEvent(
            time=datetime.fromtimestamp(at / 1000, tz=UTC).isoformat(timespec="milliseconds"),
            request_id=call.request_id,
            account_id=call.key.account_id,
            key_id=call.key.key_id,
            endpoint=call.endpoint,
            model=call.model.name,
            channel=call.route.channel.name if call.route else None,
            stream=call.stream,
            status=status,
            error_type=error_type,
            prompt_tokens=usage.prompt_tokens,
            cached_tokens=usage.cached_tokens,
            completion_tokens=usage.completion_tokens,
            images=usage.images,
            latency_ms=latency_ms,
            ttft_ms=call.ttft_ms,
        )

    def _elapsed_ms(self, call: _Call) -> int:
        return int((self._monotonic() - call.started) * 1000)


def _sse(event: dict[str, Any]) -> str:
    return f"data: {json.dumps(event, separators=(',', ':'))}\n\n"
