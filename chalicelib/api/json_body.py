"""Reading a request's JSON body within documented bounds.

A body is refused with 400 (413 for its size) before any service sees it when it:
- is larger than the configured limit (413), empty, not UTF-8, or not JSON;
- nests arrays and objects more than MAX_JSON_DEPTH levels deep (checked before decoding,
  so no decoder, validator or estimator down the line ever recurses that far);
- holds NaN, Infinity or -Infinity (not JSON, though Python's decoder takes them), or a
  number too large for a float (1e309);
- holds a \\u escape of half a UTF-16 surrogate pair, which no store or upstream can encode.
"""

from __future__ import annotations

import json
import operator
import re
from itertools import accumulate, count
from typing import Any

from chalicelib.core.errors import InvalidRequest, PayloadTooLarge

MAX_JSON_DEPTH = 64

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
# An opening bracket as 2 and a closing one as 0: the running sum less the count is the depth.
_STEPS = str.maketrans({"[": "\x02", "{": "\x02", "]": "\x00", "}": "\x00"})
_TOKEN = re.compile(r'("[^"\\]*(?:\\.[^"\\]*)*")(\s*:)?|[\[\]{}]')
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SHOWN = 40  # characters of a rejected number shown back


def read_json(raw_body: bytes | None, *, max_bytes: int) -> Any:
    """The request's JSON body; 413 above `max_bytes`, 400 if it is not JSON within the bounds above."""
    raw = raw_body or b""
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"The request body is larger than the limit of {max_bytes} bytes.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("The request body is not valid UTF-8.", code="invalid_encoding") from None
    if not text.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.")
    _check_depth(text)
    try:
        value = json.loads(text, parse_constant=_not_a_number, parse_float=_finite_float)
    except RecursionError:  # not reached after the depth check; kept as the last line of defence
        raise _too_deep(None) from None
    except ValueError:
        raise InvalidRequest("The request body is not valid JSON.") from None
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequest("The request body has a \\u escape of an unpaired UTF-16 surrogate.",
                                 code="invalid_encoding") from None
    return value


def _check_depth(text: str) -> None:
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return  # cannot be deeper than its brackets; most bodies stop here
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text)).translate(_STEPS).encode("latin-1")
    if max(map(operator.sub, accumulate(brackets), count(1)), default=0) > MAX_JSON_DEPTH:
        raise _too_deep(_deep_field(text))


def _deep_field(text: str) -> str | None:
    """The top-level field under which the body first nests too deep (None for a top-level array)."""
    depth, field = 0, None
    for token in _TOKEN.finditer(text):
        bracket = token.group()
        if bracket in ("[", "{"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return field
        elif bracket in ("]", "}"):
            depth -= 1
        elif token.group(2) and depth == 1:
            try:
                field = json.loads(token.group(1))
            except ValueError:
                field = None
    return field


def _too_deep(field: str | None) -> InvalidRequest:
    where = f" (in '{field[:_SHOWN]}')" if field else ""
    field = field[:_SHOWN] if field else None
    return InvalidRequest(f"The request body nests arrays and objects more than {MAX_JSON_DEPTH} levels "
                          f"deep{where}.", param=field, code="json_too_deep")


def _not_a_number(name: str) -> Any:
    raise InvalidRequest(f"The request body is not valid JSON: {name} is not a JSON number.",
                         code="invalid_json_number")


def _finite_float(text: str) -> float:
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise InvalidRequest(f"The request body is not valid JSON: the number {text[:_SHOWN]} is out of range.",
                             code="invalid_json_number")
    return number
