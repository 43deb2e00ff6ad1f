"""The model catalog: built-in models and providers, merged with what the operator configured.

A built-in model is served by the channel named after its provider. That
channel exists when the operator supplies the provider's key in the
environment (see config.PROVIDER_KEY_ENV), or adds a channel of that name
with the CLI. Operator-added channels and models replace built-ins of the
same name. Groups (plans) come from the operator too; the `default` group,
every model at list price, exists unless the operator redefines it. A model
is routable when one of its channels exists and speaks a protocol the gateway
has an adapter for.

Every chat model has a maximum output (DEFAULT_MAX_OUTPUT_TOKENS unless set)
and names the field its provider reads the output cap from: the gateway always
sends the cap it held for, in that field. Request fields that change a
provider's price beyond what the catalog's prices cover (PRICE_CHANGING_FIELDS)
are refused unless the model lists them in `pass_through`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from chalicelib.core.domain import (
    DEFAULT_GROUP,
    Channel,
    Group,
    ImagePrice,
    ModelEntry,
    ModelKind,
    Prices,
    Route,
)
from chalicelib.core.errors import InvalidRequest, ModelNotFound
from chalicelib.core.money import usd_to_units
from chalicelib.storage.ports import CatalogRepo

SUPPORTED_CHANNEL_KINDS = frozenset({"openai", "anthropic"})

# The output cap of a chat model added without one.
DEFAULT_MAX_OUTPUT_TOKENS = 4096

# Request fields with which a provider charges more (or differently) than the
# model's token and image prices say, by endpoint kind. Unless a model lists
# one in `pass_through`, a request carrying it is refused with 400.
PRICE_CHANGING_FIELDS: dict[ModelKind, frozenset[str]] = {
    ModelKind.CHAT: frozenset({"service_tier", "reasoning_effort", "audio", "modalities", "web_search_options",
                               "prediction"}),
    ModelKind.EMBEDDING: frozenset(),
    # Providers' own image counts; `n` is priced, these are not.
    ModelKind.IMAGE: frozenset({"num_images", "number_of_images", "num_outputs", "sample_count", "samples",
                                "batch_size", "image_num", "max_images", "sequential_image_generation"}),
}

# What Anthropic's Messages API prices beyond tokens when a request is sent to it as the client wrote it
# (relay/fields.py): fields, and server tools by the prefix of their type. A chat model may pass them through.
MESSAGES_PRICE_CHANGING = frozenset({"service_tier", "inference_geo", "speed", "web_search", "code_execution"})


@dataclass(frozen=True)
class Provider:
    name: str
    base_url: str
    key_env: str  # the environment variable whose key makes the provider live
    kind: str = "openai"
    # Where its chat API reads the output cap: DeepSeek, Qwen, Kimi, Doubao and GLM
    # read `max_tokens` and ignore `max_completion_tokens`.
    cap_field: str = "max_tokens"


PROVIDERS = {
    provider.name: provider
    for provider in (
        Provider("deepseek", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
        Provider("qwen", "https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "DASHSCOPE_API_KEY"),
        Provider("kimi", "https://api.moonshot.ai/v1", "MOONSHOT_API_KEY"),
        Provider("doubao", "https://ark.cn-beijing.volces.com/api/v3", "ARK_API_KEY"),
        Provider("glm", "https://open.bigmodel.cn/api/paas/v4", "ZHIPUAI_API_KEY"),
        Provider("openai", "https://api.openai.com/v1", "OPENAI_API_KEY", cap_field="max_completion_tokens"),
        Provider("anthropic", "https://api.anthropic.com/v1", "ANTHROPIC_API_KEY", kind="anthropic"),
    )
}


def default_cap_field(channel: str) -> str:
    """The cap field of a model added on `channel`: its provider's, if the channel is named after one."""
    provider = PROVIDERS.get(channel)
    return provider.cap_field if provider else "max_tokens"

GENERAL = "General chat / quick tasks"
REASONING = "Complex reasoning / coding"
LONG_CONTEXT = "Long context / document analysis"
CHINESE_WRITING = "Creative writing (Chinese)"
MULTI_TURN = "Multi-turn conversations"


def _model(name: str, provider: str, upstream: str, kind: ModelKind, *, input: str = "0", output: str = "0",
           cached: str | None = None, cache_write: str | None = None, per_image: str = "0",
           image_prices: dict[tuple[str, str], str] | None = None,
           context: int | None = None, max_output: int | None = None, use_case: str = "") -> ModelEntry:
    prices = Prices(
        input_per_1m=usd_to_units(input),
        output_per_1m=usd_to_units(output),
        cached_input_per_1m=usd_to_units(cached) if cached is not None else None,
        cache_write_per_1m=usd_to_units(cache_write) if cache_write is not None else None,
        per_image=usd_to_units(per_image),
        image_prices=tuple(ImagePrice(quality, size, usd_to_units(usd))
                           for (quality, size), usd in (image_prices or {}).items()),
    )
    return ModelEntry(name=name, kind=kind, prices=prices, routes=(Route(provider, upstream),),
                      context_window=context, max_output_tokens=max_output, use_case=use_case, owned_by=provider,
                      cap_field=PROVIDERS[provider].cap_field)


# DALL-E 3 list prices per image beyond the default (standard, 1024x1024: $0.04).
DALL_E_3_PRICES = {
    ("standard", "1024x1792"): "0.08",
    ("standard", "1792x1024"): "0.08",
    ("hd", "1024x1024"): "0.08",
    ("hd", "1024x1792"): "0.12",
    ("hd", "1792x1024"): "0.12",
}

# List prices in USD per 1M input / cached input / output tokens (and cache writes,
# where the provider bills them apart), or per image
# (by quality and size). Operators override any of them with `model add`.
BUILTIN_MODELS = {
    model.name: model
    for model in (
        _model("deepseek-chat", "deepseek", "deepseek-chat", ModelKind.CHAT, input="0.28", cached="0.028",
               output="0.42", context=128_000, max_output=8_192, use_case=GENERAL),
        _model("deepseek-reasoner", "deepseek", "deepseek-reasoner", ModelKind.CHAT, input="0.28", cached="0.028",
               output="0.42", context=128_000, max_output=65_536, use_case=REASONING),
        _model("qwen-plus", "qwen", "qwen-plus", ModelKind.CHAT, input="0.40", cached="0.08", output="1.20",
               context=131_072, max_output=8_192, use_case=f"{GENERAL}; {CHINESE_WRITING}"),
        _model("qwen-max", "qwen", "qwen-max", ModelKind.CHAT, input="1.60", cached="0.32", output="6.40",
               context=32_768, max_output=8_192, use_case=CHINESE_WRITING),
        _model("kimi-k2", "kimi", "kimi-k2-0905-preview", ModelKind.CHAT, input="0.60", cached="0.15",
               output="2.50", context=262_144, max_output=16_384, use_case=LONG_CONTEXT),
        _model("doubao-pro", "doubao", "doubao-1-5-pro-256k-250115", ModelKind.CHAT, input="0.70",
               output="1.25", context=262_144, max_output=12_288, use_case=LONG_CONTEXT),
        _model("glm-4", "glm", "glm-4-plus", ModelKind.CHAT, input="0.70", output="0.70", context=128_000,
               max_output=4_096, use_case=CHINESE_WRITING),
        _model("gpt-4o", "openai", "gpt-4o", ModelKind.CHAT, input="2.50", cached="1.25", output="10.00",
               context=128_000, max_output=16_384, use_case=MULTI_TURN),
        _model("claude-sonnet", "anthropic", "claude-sonnet-4-5", ModelKind.CHAT, input="3.00", cached="0.30",
               cache_write="3.75", output="15.00", context=200_000, max_output=64_000,
               use_case=f"{REASONING}; {MULTI_TURN}"),
        _model("text-embedding-3-small", "openai", "text-embedding-3-small", ModelKind.EMBEDDING, input="0.02",
               context=8_191, use_case="Embeddings for search and retrieval"),
        _model("dall-e-3", "openai", "dall-e-3", ModelKind.IMAGE, per_image="0.04", image_prices=DALL_E_3_PRICES,
               use_case="Image generation"),
    )
}


@dataclass(frozen=True)
class ResolvedRoute:
    channel: Channel
    upstream_model: str
    priority: int = 0
    weight: int = 1


class Catalog:
    """The effective catalog, re-read from the repository at most every `ttl_s` seconds."""

    def __init__(self, repo: CatalogRepo, provider_keys: dict[str, str], *, ttl_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic,
                 channel_kinds: frozenset[str] = SUPPORTED_CHANNEL_KINDS) -> None:
        self._repo = repo
        self._channel_kinds = channel_kinds  # the kinds an adapter exists for
        self._env_channels = {
            name: Channel(name=name, base_url=PROVIDERS[name].base_url, api_key=key, kind=PROVIDERS[name].kind)
            for name, key in provider_keys.items()
        }
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._loaded_at: float | None = None
        self._channels: dict[str, Channel] = {}
        self._models: dict[str, ModelEntry] = {}
        self._groups: dict[str, Group] = {}

    def model(self, name: str) -> ModelEntry:
        """The catalog entry of a public model name, routable or not."""
        self._refresh()
        model = self._models.get(name)
        if model is None:
            raise ModelNotFound(f"The model `{name}` does not exist.", param="model")
        return model

    def routes(self, model: ModelEntry) -> list[ResolvedRoute]:
        """The channels that can serve this model, in order; ModelNotFound if none can."""
        self._refresh()
        resolved = [
            ResolvedRoute(self._channels[route.channel], route.upstream_model, route.priority, route.weight)
            for route in model.routes
            if self._serves(route)
        ]
        if not resolved:
            raise ModelNotFound(f"The model `{model.name}` is not available on this gateway.", param="model")
        return resolved

    def routable_models(self) -> list[ModelEntry]:
        self._refresh()
        return [model for model in self._models.values() if any(self._serves(r) for r in model.routes)]

    def availability(self) -> list[tuple[ModelEntry, str | None]]:
        """Every model with None if it is routable now, else one line saying why not."""
        self._refresh()
        return [(model, None if any(self._serves(r) for r in model.routes) else self._why_not(model))
                for model in sorted(self._models.values(), key=lambda m: m.name)]

    def _why_not(self, model: ModelEntry) -> str:
        reasons = []
        for route in model.routes:
            channel = self._channels.get(route.channel)
            if channel is None:
                hint = (f"set {PROVIDERS[route.channel].key_env} or add the channel"
                        if route.channel in PROVIDERS else "add it with `tokenway channel add`")
                reasons.append(f"no channel `{route.channel}` ({hint})")
            else:
                reasons.append(f"channel `{route.channel}` speaks `{channel.kind}`, which has no adapter yet")
        return "; ".join(reasons) or "no channel serves it"

    def _serves(self, route: Route) -> bool:
        channel = self._channels.get(route.channel)
        return channel is not None and channel.kind in self._channel_kinds

    def group(self, name: str | None) -> Group | None:
        """A plan by name (None: the default plan), or None if there is no such plan."""
        self._refresh()
        return self._groups.get(name or DEFAULT_GROUP)

    def groups(self) -> list[Group]:
        self._refresh()
        return sorted(self._groups.values(), key=lambda g: g.name)

    def models(self) -> list[ModelEntry]:
        self._refresh()
        return sorted(self._models.values(), key=lambda m: m.name)

    def known_models(self, names: list[str], *, param: str = "models") -> tuple[str, ...]:
        """The names, each once, if every one is a catalog model; else 400 naming the first unknown."""
        self._refresh()
        unknown = [name for name in names if name not in self._models]
        if unknown:
            raise InvalidRequest(f"Unknown model `{unknown[0]}`.", param=param, code="invalid_value")
        return tuple(dict.fromkeys(names))

    def channel(self, name: str) -> Channel | None:
        self._refresh()
        return self._channels.get(name)

    def channels(self) -> list[Channel]:
        """Every channel: the operator's and those of providers whose key is in the environment."""
        self._refresh()
        return sorted(self._channels.values(), key=lambda c: c.name)

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = None

    def _refresh(self) -> None:
        with self._lock:
            now = self._clock()
            if self._loaded_at is not None and now - self._loaded_at < self._ttl_s:
                return
            channels, models, groups = self._repo.load()
            self._channels = {**self._env_channels, **{c.name: c for c in channels}}
            self._models = {**BUILTIN_MODELS, **{m.name: _with_max_output(m) for m in models}}
            self._groups = {DEFAULT_GROUP: Group(DEFAULT_GROUP, description="Every model at list price"),
                            **{g.name: g for g in groups}}
            self._loaded_at = now


def _with_max_output(model: ModelEntry) -> ModelEntry:
    """A chat model stored without a maximum output gets the default one: the gateway
    must always be able to tell the upstream, and hold for, an output cap."""
    if model.kind is ModelKind.CHAT and not model.max_output_tokens:
        return replace(model, max_output_tokens=DEFAULT_MAX_OUTPUT_TOKENS)
    return model
