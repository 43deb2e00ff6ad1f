"""What a command asks of the admin API, and the pieces of a request it is built from."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

import httpx

# (method, path, JSON body or None).
Call = tuple[str, str, dict[str, Any] | None]


def segment(value: str) -> str:
    """A path parameter, URL-encoded (slashes included)."""
    return quote(value, safe="")


def query(**params: str | int | None) -> str:
    """`?name=value&…` of the parameters given, each value URL-encoded; "" when none is."""
    pairs = [f"{name}={quote(str(value), safe='')}" for name, value in params.items() if value is not None]
    return "?" + "&".join(pairs) if pairs else ""


def given(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    """The named options that were given on the command line."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def describe(response: httpx.Response) -> str:
    """The gateway's error message and status, from its envelope when it sent one."""
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text.strip()[:200] or response.reason_phrase
    return f"{' '.join(str(message).split())} (HTTP {response.status_code})"
