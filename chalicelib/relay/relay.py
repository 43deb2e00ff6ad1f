"""The relay: price, hold, call the upstream, settle, record — for chat, embeddings and images.

Nothing here knows about Chalice. A streamed chat returns an iterator of SSE
events; whoever serves it may buffer it (Lambda behind API Gateway) or send
each event as it comes. Settlement happens when that iterator finishes or is
closed, so the charge is exact either way.

Charge policy:
- a call that fails before the upstream answers costs nothing, and its hold is released;
- a completed call costs its usage as the upstream reports it, at the model's prices;
  when the upstream reports none, the gateway's own estimate of prompt and output;
- a stream cut after content reached the client costs the prompt and the content
  delivered (estimated), never more than was held; cut before any content, nothing.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chalicelib.billing import pricing
from chalicelib.billing.holds import Billing, Quote, Reservation
from chalicelib.billing.pricing import Usage
from chalicelib.catalog.catalog import Catalog, ResolvedRoute
from chalicelib.core.domain import PPM, ApiKey, ModelEntry, ModelKind, UsageEvent
from chalicelib.core.errors import InvalidRequest, PermissionDenied, ProviderError
from chalicelib.core.money import TOKENS_PER_PRICE, units_to_usd
from chalicelib.core.validation import parse
from chalicelib.keys.auth import check_allowed
from chalicelib.keys.plans import KeyPlans
from chalicelib.providers.port import ProviderAdapter
from chalicelib.relay.schemas import ChatRequest, EmbeddingsRequest, ImagesRequest
from chalicelib.storage.ports import UsageSink
from chalicelib.usage.events import emit

DEFAULT_MAX_OUTPUT_TOKENS = 4096


@dataclass
class RelayResult:
    """A relay answer: a JSON body, or a stream of SSE events. `cost_units` is known
    once the body is returned or the stream is exhausted."""

    request_id: str
    body: dict[str, Any] | None = None
    events: Iterator[str] | None = None
    cost_units: int | None = None

    @property
    def cost_usd(self) -> str | None:
        return None if self.cost_units is None else units_to_usd(self.cost_units)


@dataclass
class _Call:
    """One relay request in flight."""

    request_id: str
    key: ApiKey
    endpoint: str
    model: ModelEntry
    stream: bool
    started: float
    routes: list[ResolvedRoute]
    reservation: Reservation | None = None
    route: ResolvedRoute | None = None
    ttft_ms: int | None = None
    prompt_estimate: int = 0
    multiplier_ppm: int = PPM


class Relay:
    def __init__(self, catalog: Catalog, billing: Billing, adapters: Mapping[str, ProviderAdapter],
                 usage_sink: UsageSink, *, plans: KeyPlans,
                 default_timeout_s: float, monotonic: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self._catalog = catalog
        self._plans = plans
        self._billing = billing
        self._adapters = adapters  # by channel kind
        self._usage_sink = usage_sink
        self._default_timeout_s = default_timeout_s
        self._monotonic = monotonic
        self._wall_clock = wall_clock

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

    def chat(self, key: ApiKey, body: Any, request_id: str, *, client_ip: str | None = None) -> RelayResult:
        request: ChatRequest = parse(ChatRequest, body)
        call = self._start(request_id, key, client_ip, "chat.completions", request.model, ModelKind.CHAT,
                           request.stream)
        prices = call.model.prices
        prompt_estimate = pricing.prompt_tokens(request.messages)
        if request.tools:
            prompt_estimate += pricing.text_tokens(json.dumps(request.tools))
        model_cap = call.model.max_output_tokens or DEFAULT_MAX_OUTPUT_TOKENS
        asked = request.max_completion_tokens or request.max_tokens
        quote = Quote(
            fixed=prompt_estimate * prices.input_per_1m,
            output_rate=prices.output_per_1m * request.n,
            # A cap above the model's maximum is not held for: the model cannot use it.
            output_tokens=min(asked, model_cap) if asked else model_cap,
            multiplier_ppm=call.multiplier_ppm,
        )
        call.prompt_estimate = prompt_estimate
        reservation = self._reserve(call, quote)

        upstream_body = dict(body)
        if reservation.output_tokens < quote.output_tokens:
            # The wallet affords less output than asked: ask the upstream for no more.
            cap_field = "max_completion_tokens" if request.max_completion_tokens else "max_tokens"
            upstream_body[cap_field] = reservation.output_tokens
        if request.stream:
            # Always ask for usage, so that a stream is charged exactly.
            upstream_body["stream_options"] = {**(request.stream_options or {}), "include_usage": True}
            events = self._call_upstream(call, "/chat/completions", upstream_body)
            result = RelayResult(request_id)
            result.events = self._relay_stream(call, events, result, wants_usage=request.wants_usage)
            return result

        payload = self._call_upstream(call, "/chat/completions", upstream_body)
        usage = pricing.usage_from_openai(payload.get("usage")) or Usage(
            prompt_tokens=prompt_estimate,
            completion_tokens=sum(pricing.text_tokens(_choice_text(c)) for c in payload.get("choices") or []),
        )
        return self._complete(call, payload, usage)

    def embeddings(self, key: ApiKey, body: Any, request_id: str, *, client_ip: str | None = None) -> RelayResult:
        request: EmbeddingsRequest = parse(EmbeddingsRequest, body)
        call = self._start(request_id, key, client_ip, "embeddings", request.model, ModelKind.EMBEDDING,
                           stream=False)
        estimate = pricing.embedding_input_tokens(request.input)
        self._reserve(call, Quote(fixed=estimate * call.model.prices.input_per_1m,
                                  multiplier_ppm=call.multiplier_ppm))
        payload = self._call_upstream(call, "/embeddings", dict(body))
        usage = pricing.usage_from_openai(payload.get("usage")) or Usage(prompt_tokens=estimate)
        return self._complete(call, payload, usage)

    def images(self, key: ApiKey, body: Any, request_id: str, *, client_ip: str | None = None) -> RelayResult:
        request: ImagesRequest = parse(ImagesRequest, body)
        call = self._start(request_id, key, client_ip, "images.generations", request.model, ModelKind.IMAGE,
                           stream=False)
        self._reserve(call, Quote(fixed=request.n * call.model.prices.per_image * TOKENS_PER_PRICE,
                                  multiplier_ppm=call.multiplier_ppm))
        payload = self._call_upstream(call, "/images/generations", dict(body))
        data = payload.get("data")
        images = min(len(data), request.n) if isinstance(data, list) else request.n
        return self._complete(call, payload, Usage(images=images))

    # The steps every request shares.

    def _start(self, request_id: str, key: ApiKey, client_ip: str | None, endpoint: str, model_name: str,
               kind: ModelKind, stream: bool) -> _Call:
        model = self._catalog.model(model_name)
        if model.kind is not kind:
            raise InvalidRequest(f"The model `{model.name}` is a {model.kind.value} model and cannot serve "
                                 f"{endpoint}.", param="model", code="model_not_supported")
        routes = self._catalog.routes(model)  # ModelNotFound before anything is held
        group = self._plans.of_key(key)  # 403 once the plan is gone or taken from the account
        if not group.allows(model.name):
            raise PermissionDenied(f"The plan `{group.name}` does not include the model `{model.name}`.",
                                   param="model", code="model_not_allowed")
        check_allowed(key, model=model.name, client_ip=client_ip)
        return _Call(request_id, key, endpoint, model, stream, started=self._monotonic(), routes=routes,
                     multiplier_ppm=group.multiplier_ppm)

    def _reserve(self, call: _Call, quote: Quote) -> Reservation:
        call.reservation = self._billing.reserve(call.request_id, call.key, quote, timeout_s=self._timeout(call))
        return call.reservation

    def _timeout(self, call: _Call) -> float:
        return call.model.timeout_s or self._default_timeout_s

    def _call_upstream(self, call: _Call, path: str, body: dict[str, Any]) -> Any:
        """Try each channel of the model in order; the first answer wins. A failure
        that another channel might not have (5xx, timeout, 429) moves on to it."""
        routes = call.routes
        for index, route in enumerate(routes):
            call.route = route
            routed = {**body, "model": route.upstream_model}
            try:
                adapter = self._adapters[route.channel.kind]
                if call.stream:
                    return adapter.stream(route.channel, path, routed, timeout_s=self._timeout(call))
                return adapter.post(route.channel, path, routed, timeout_s=self._timeout(call))
            except ProviderError as exc:
                if exc.retryable and index + 1 < len(routes):
                    continue
                self._release(call, status=exc.status, error_type=exc.type)
                raise
        raise AssertionError("catalog.routes() never returns an empty list")

    def _release(self, call: _Call, *, status: int, error_type: str) -> None:
        """A request that delivered nothing: its hold goes back, and it is recorded at no cost."""
        assert call.reservation is not None
        self._billing.release(call.reservation)
        self._record(call, status=status, error_type=error_type, usage=Usage(), cost=0, shortfall=0)

    def _complete(self, call: _Call, payload: dict[str, Any], usage: Usage) -> RelayResult:
        cost = self._settle(call, usage, status=200)
        payload["model"] = call.model.name
        if isinstance(payload.get("usage"), dict):
            payload["usage"]["cost_usd"] = units_to_usd(cost)
        return RelayResult(call.request_id, body=payload, cost_units=cost)

    def _settle(self, call: _Call, usage: Usage, *, status: int, error_type: str | None = None,
                cap: int | None = None) -> int:
        assert call.reservation is not None
        cost = pricing.cost(call.model.prices, usage, call.multiplier_ppm)
        if cap is not None:
            cost = min(cost, cap)
        settlement = self._billing.settle(call.reservation, cost, model=call.model.name, key_id=call.key.key_id,
                                          prompt_tokens=usage.prompt_tokens,
                                          completion_tokens=usage.completion_tokens)
        self._record(call, status=status, error_type=error_type, usage=usage, cost=cost,
                     shortfall=settlement.shortfall)
        return cost

    def _relay_stream(self, call: _Call, events: Iterator[dict[str, Any]], result: RelayResult, *,
                      wants_usage: bool) -> Iterator[str]:
        usage: Usage | None = None
        delivered: list[str] = []
        error: ProviderError | None = None
        finished = False
        try:
            for event in events:
                reported = pricing.usage_from_openai(event.get("usage"))
                if reported is not None:
                    usage = reported
                    if wants_usage:
                        event["usage"]["cost_usd"] = units_to_usd(
                            pricing.cost(call.model.prices, usage, call.multiplier_ppm))
                if not wants_usage:
                    event.pop("usage", None)
                    if not event.get("choices"):
                        continue  # the usage-only chunk the client did not ask for
                texts = [_choice_text(choice) for choice in event.get("choices") or []]
                if call.ttft_ms is None and any(texts):
                    call.ttft_ms = self._elapsed_ms(call)
                delivered.extend(texts)
                event["model"] = call.model.name
                yield f"data: {json.dumps(event, separators=(',', ':'))}\n\n"
            finished = True
            yield "data: [DONE]\n\n"
        except ProviderError as exc:
            error = exc
            yield f"data: {json.dumps(exc.envelope(), separators=(',', ':'))}\n\n"
        finally:
            # Runs also when the consumer stops early (a client that hung up).
            result.cost_units = self._settle_stream(call, usage, delivered, finished, error)

    def _settle_stream(self, call: _Call, usage: Usage | None, delivered: list[str], finished: bool,
                       error: ProviderError | None) -> int:
        assert call.reservation is not None
        status, error_type = (200, None) if finished else (
            (error.status, error.type) if error else (499, "client_closed_request"))
        completion_estimate = sum(pricing.text_tokens(text) for text in delivered)
        if usage is None and not finished and not completion_estimate:
            self._release(call, status=status, error_type=error_type)
            return 0
        if usage is None:
            usage = Usage(prompt_tokens=call.prompt_estimate, completion_tokens=completion_estimate)
        cap = None if finished else call.reservation.hold.amount
        return self._settle(call, usage, status=status, error_type=error_type, cap=cap)

    def _record(self, call: _Call, *, status: int, error_type: str | None, usage: Usage, cost: int,
                shortfall: int) -> None:
        emit(self._usage_sink, UsageEvent(
            time=datetime.fromtimestamp(self._wall_clock(), tz=UTC).isoformat(timespec="milliseconds"),
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
            cost_units=cost,
            shortfall_units=shortfall,
            latency_ms=self._elapsed_ms(call),
            ttft_ms=call.ttft_ms,
        ))

    def _elapsed_ms(self, call: _Call) -> int:
        return int((self._monotonic() - call.started) * 1000)


def _choice_text(choice: Any) -> str:
    """The text a chat choice carries (a full message or a stream delta), for estimates."""
    if not isinstance(choice, dict):
        return ""
    part = choice.get("delta") or choice.get("message") or {}
    if not isinstance(part, dict):
        return ""
    texts = [part.get("content"), part.get("reasoning_content")]
    for call in part.get("tool_calls") or []:
        if isinstance(call, dict) and isinstance(call.get("function"), dict):
            texts.append(call["function"].get("arguments"))
    return "".join(text for text in texts if isinstance(text, str))
