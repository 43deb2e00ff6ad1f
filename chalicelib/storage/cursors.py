"""Opaque page cursors: the position after a page's last item, as urlsafe base64 of JSON.

A cursor is only read back by the listing that wrote it; anything that does not decode to the
fields it expects is the caller's mistake (InvalidRequest, param `cursor`), never a storage error."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from chalicelib.core.errors import InvalidRequest


def encode_cursor(position: dict[str, Any]) -> str:
    text = json.dumps(position, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, fields: dict[str, type]) -> dict[str, Any]:
    """The position, with exactly `fields` of their types; InvalidRequest if `cursor` is not one."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        position = None
    if (not isinstance(position, dict) or set(position) != set(fields)
            # bool is an int to Python, never a position's number
            or any(not isinstance(position[name], kind) or isinstance(position[name], bool)
                   for name, kind in fields.items())):
        raise InvalidRequest("The cursor is not one this listing returned.", param="cursor")
    return position


def page_limit(limit: int) -> int:
    if limit < 1:
        raise InvalidRequest("A page holds at least one item.", param="limit")
    return limit
