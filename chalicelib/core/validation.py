"""Validating decoded JSON into typed commands, with the OpenAI error for the first bad field."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.core.errors import InvalidRequest
from chalicelib.core.money import usd_to_units

if TYPE_CHECKING:
    from pydantic import BaseModel


def parse(model: type[BaseModel], body: Any) -> Any:
    """Validate a decoded JSON body; InvalidRequest naming the first bad field."""
    from pydantic import ValidationError  # imported already with `model`: importing the app needs none of pydantic

    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        param = str(error["loc"][0]) if error["loc"] else None
        if error["type"] == "missing":
            raise InvalidRequest(f"Missing required parameter: '{param}'.", param=param,
                                 code="missing_required_parameter") from None
        where = ".".join(str(part) for part in error["loc"])
        raise InvalidRequest(f"Invalid value for '{where}': {error['msg']}.", param=param,
                             code="invalid_value") from None


def parse_usd(value: str | int, field: str) -> int:
    """A USD amount from a request, in units; InvalidRequest naming `field` if it is not one."""
    try:
        return usd_to_units(value, field=field)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param=field, code="invalid_value") from None
