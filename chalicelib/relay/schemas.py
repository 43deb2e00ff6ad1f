"""The relay's request bodies, validated. Unknown fields are kept and passed upstream."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: StrictStr = Field(min_length=1)


class ChatRequest(_Body):
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: StrictBool = False
    stream_options: dict[str, Any] | None = None
    max_tokens: StrictInt | None = Field(None, gt=0)
    max_completion_tokens: StrictInt | None = Field(None, gt=0)
    n: StrictInt = Field(1, ge=1, le=128)
    tools: list[Any] | None = None

    @property
    def wants_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.get("include_usage"))


class EmbeddingsRequest(_Body):
    input: StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]]


class ImagesRequest(_Body):
    prompt: StrictStr = Field(min_length=1)
    n: StrictInt = Field(1, ge=1, le=10)

