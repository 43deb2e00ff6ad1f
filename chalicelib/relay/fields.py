"""What a relay request may carry upstream, and how the fields of an answer are read."""

from __future__ import annotations

from typing import Any

from chalicelib.billing.pricing import Usage
from chalicelib.catalog.catalog import MESSAGES_PRICE_CHANGING, PRICE_CHANGING_FIELDS
from chalicelib.core.domain import DEFAULT_IMAGE_QUALITY, DEFAULT_IMAGE_SIZE, ModelEntry, ModelKind
from chalicelib.core.errors import InvalidRequest
from chalicelib.relay.schemas import ImagesRequest


def refuse_unpriced_fields(model: ModelEntry, body: dict[str, Any]) -> None:
    """Refuse a field with which the provider would charge more than the model's prices
    say, unless the operator lets the model pass it through."""
    fields = PRICE_CHANGING_FIELDS[model.kind]
    for name, value in body.items():
        if name not in fields or value is None or name in model.pass_through:
            continue
        if name == "modalities" and value == ["text"]:
            continue  # text only: what the token prices cover
        raise InvalidRequest(f"The parameter '{name}' changes the provider's price, and the prices of "
                             f"`{model.name}` do not cover it on this gateway.", param=name,
                             code="unsupported_parameter")


# Of MESSAGES_PRICE_CHANGING: the fields, with their values that cost no more than the token prices
# (Anthropic's own defaults); the rest are server tools charged per use, by the prefix of their type.
_PRICED_MESSAGES_FIELDS = {"service_tier": ("auto", "standard_only"), "inference_geo": ("global",),
                           "speed": ("standard",)}
_PRICED_SERVER_TOOLS = tuple(sorted(MESSAGES_PRICE_CHANGING - set(_PRICED_MESSAGES_FIELDS)))


def refuse_unpriced_messages_fields(model: ModelEntry, body: dict[str, Any]) -> None:
    """`refuse_unpriced_fields` for a Messages API body sent as it is: a field value or a server tool
    that Anthropic prices beyond tokens is refused, unless the model passes it through (by the field's
    name, or the tool type's prefix)."""
    for name, harmless in _PRICED_MESSAGES_FIELDS.items():
        value = body.get(name)
        if value is not None and value not in harmless and name not in model.pass_through:
            raise InvalidRequest(f"The parameter '{name}' changes the provider's price, and the prices of "
                                 f"`{model.name}` do not cover it on this gateway.", param=name,
                                 code="unsupported_parameter")
    for tool in body.get("tools") or []:
        kind = tool.get("type") if isinstance(tool, dict) else None
        priced = next((prefix for prefix in _PRICED_SERVER_TOOLS if str(kind or "").startswith(prefix)), None)
        if priced is not None and priced not in model.pass_through:
            raise InvalidRequest(f"The tool '{kind}' is charged per use by the provider, and the prices of "
                                 f"`{model.name}` do not cover it on this gateway.", param="tools",
                                 code="unsupported_parameter")


def image_price(model: ModelEntry, request: ImagesRequest) -> int:
    """The price of one image of the requested quality and size; 400 naming the one not priced."""
    price = model.prices.image_price(request.quality, request.size)
    if price is not None:
        return price
    quality = request.quality or DEFAULT_IMAGE_QUALITY
    sizes = sorted({entry.size for entry in model.prices.image_prices if entry.quality == quality}
                   | ({DEFAULT_IMAGE_SIZE} if quality == DEFAULT_IMAGE_QUALITY else set()))
    if not sizes:
        qualities = sorted({DEFAULT_IMAGE_QUALITY} | {entry.quality for entry in model.prices.image_prices})
        raise InvalidRequest(f"The model `{model.name}` has no quality '{quality}' here; one of: "
                             f"{', '.join(qualities)}.", param="quality", code="invalid_value")
    size = request.size or DEFAULT_IMAGE_SIZE
    raise InvalidRequest(f"The model `{model.name}` has no size '{size}' at quality '{quality}' here; one of: "
                         f"{', '.join(sizes)}.", param="size", code="invalid_value")


def openai_usage(reported: dict[str, Any], usage: Usage, kind: ModelKind) -> None:
    """Give a usage object in another provider's shape the OpenAI fields SDKs read."""
    if kind is ModelKind.IMAGE:
        return  # image usage has its own shape, and images are priced per image
    reported.setdefault("prompt_tokens", usage.prompt_tokens)
    if kind is ModelKind.CHAT:
        reported.setdefault("completion_tokens", usage.completion_tokens)
    reported.setdefault("total_tokens", usage.prompt_tokens + usage.completion_tokens)


def choice_text(choice: Any) -> str:
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
