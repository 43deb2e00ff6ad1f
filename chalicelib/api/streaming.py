"""Handing a relay stream to a server that writes each event as it comes.

Behind API Gateway a Lambda answer is one buffered body, so the relay view joins a stream's
events into it. A server that can stream (the one-machine server, chalicelib/api/server.py)
serves each request inside `accepting_streams()`; the view then hands the events over un-joined
with `hand_off` and answers with the headers alone. The server writes each event as the relay
yields it and closes the iterator when the answer ends or the client goes away: the relay settles
the stream when its iterator finishes or is closed, so either way the charge is exact.

The hand-off is per thread (a context variable), so requests served at once on other threads
never see each other's streams.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class StreamHandOff:
    """Where a relay view leaves the events of the stream it answers with."""

    events: Iterator[str] | None = None


_current: ContextVar[StreamHandOff | None] = ContextVar("stream_hand_off", default=None)


@contextmanager
def accepting_streams() -> Iterator[StreamHandOff]:
    """Within this block (on this thread), a relay view hands its stream over instead of joining it."""
    hand_off_here = StreamHandOff()
    token = _current.set(hand_off_here)
    try:
        yield hand_off_here
    finally:
        _current.reset(token)


def hand_off(events: Iterator[str]) -> bool:
    """Leave `events` with the server serving this request if it streams; False if the caller must join them."""
    current = _current.get()
    if current is None or current.events is not None:
        return False
    current.events = events
    return True
