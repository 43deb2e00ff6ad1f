"""The relay's request bodies, validated: the typed commands its services take.

Unknown fields are kept (pydantic `extra="allow"`) and passed upstream; `upstream_body`
gives back what the client sent, without defaults it did not send.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator, model_validator

from chalicelib.core.errors import InvalidRequest

# OpenAI's limit on the items of an embeddings `input` array.
MAX_EMBEDDING_INPUTS = 2048

# The most models one chat may name (`models`, with `model`), or try (a model and its fallbacks).
MAX_MODELS = 5


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: StrictStr = Field(min_length=1)

    def upstream_body(self) -> dict[str, Any]:
        """The body as the client sent it, unknown fields included."""
        return self.model_dump(exclude_unset=True)


class ChatRequest(_Body):
    # `model`, `models` or both (`model` first): the models to try in turn, as OpenRouter takes them.
    model: StrictStr | None = Field(None, min_length=1)  # type: ignore[assignment]
    models: list[StrictStr] | None = Field(None, min_length=1, max_length=MAX_MODELS)
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: StrictBool = False
    stream_options: dict[str, Any] | None = None
    max_tokens: StrictInt | None = Field(None, gt=0)
    max_completion_tokens: StrictInt | None = Field(None, gt=0)
    n: StrictInt = Field(1, ge=1, le=128)
    tools: list[Any] | None = None

    @model_validator(mode="after")
    def _some_model(self) -> ChatRequest:
        # Raised as the gateway's own error (pydantic passes it through): it names its parameter.
        if self.model is None and not self.models:
            raise InvalidRequest("Missing required parameter: 'model' (or 'models').", param="model",
                                 code="missing_required_parameter")
        if len(self.model_names) > MAX_MODELS:
            raise InvalidRequest(f"At most {MAX_MODELS} models may be named, `model` included.", param="models",
                                 code="invalid_value")
        return self

    @property
    def model_names(self) -> list[str]:
        """The models named, in the order they are tried, each once."""
        return list(dict.fromkeys([*([self.model] if self.model else []), *(self.models or [])]))

    def upstream_body(self) -> dict[str, Any]:
        # Which model answers is the gateway's choice: the upstream is told only its own model.
        body = super().upstream_body()
        body.pop("models", None)
        return body

    @property
    def wants_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.get("include_usage"))

    @property
    def output_cap(self) -> int | None:
        """The output cap the client asked for, in whichever field it used."""
        return self.max_completion_tokens or self.max_tokens


class MessagesRequest(ChatRequest):
    """Anthropic's Messages request (`POST /v1/messages`), sent as it is to Anthropic channels: `model` and
    `models` as a chat takes them, `max_tokens` required as Anthropic requires it, every other field kept."""

    max_tokens: StrictInt = Field(gt=0)  # type: ignore[assignment]


class EmbeddingsRequest(_Body):
    # A non-empty string, or 1 to 2048 non-empty strings, token ids, or non-empty arrays of token ids.
    input: Any

    @field_validator("input")
    @classmethod
    def _openai_input(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value:
                raise ValueError("must not be an empty string")
            return value
        if not isinstance(value, list):
            raise ValueError("must be a string, an array of strings, an array of token ids, or an array of "
                             "token id arrays")
        if not value:
            raise ValueError("must not be an empty array")
        if len(value) > MAX_EMBEDDING_INPUTS:
            raise ValueError(f"must have at most {MAX_EMBEDDING_INPUTS} items")
        if all(isinstance(item, str) for item in value):
            if not all(value):
                raise ValueError("must not contain empty strings")
        elif all(_is_token(item) for item in value):
            pass
        elif all(isinstance(item, list) for item in value):
            if not all(item and all(_is_token(token) for token in item) for item in value):
                raise ValueError("token id arrays must be non-empty arrays of non-negative integers")
        else:
            raise ValueError("must be a string, an array of strings, an array of token ids, or an array of "
                             "token id arrays")
        return value


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class ImagesRequest(_Body):
    prompt: StrictStr = Field(min_length=1)
    n: StrictInt = Field(1, ge=1, le=10)
    size: StrictStr | None = None
    quality: StrictStr | None = None
