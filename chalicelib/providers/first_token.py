"""The time-to-first-token limit of a stream: a connection whose first token has not come by its
deadline is cut, and the stream fails as timed out.

    start ──► headers ──► role chunk, keep-alives … ──► first token: watch disarmed
      │                                                  (later gaps: the per-read timeout)
      └──────────── first_token_s ────────────► no token yet: the socket is shut down,
                                                 the blocked read fails, UpstreamTimeout

A per-read timeout cannot bound this wait: an upstream sending keep-alive comments, or a role
chunk and then nothing, resets it at every byte. Nor can a read be given a new timeout once the
stream has begun. So one thread per process watches every stream's deadline and, when one passes
first, shuts the stream's socket down for reading and writing, which wakes the read blocked on it
(closing the file descriptor would not, and could let the number be reused under the read).

The stream is still the relay's to close: the watch only makes its blocked read fail. The relay
then releases the hold (or moves on to the next channel or model, since no byte reached the client:
see routing.Dispatcher, which waits for the first token before handing a stream out).
"""

from __future__ import annotations

import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx

from chalicelib.core.domain import Channel
from chalicelib.core.errors import ProviderError, UpstreamTimeout
from chalicelib.providers.port import MessagesEvent

T = TypeVar("T")


class Deadlines:
    """One daemon thread running callbacks at their deadlines (monotonic seconds); a callback
    cancelled first never runs. The thread starts with the first deadline, in the process that
    sets it (a worker forked after the app was imported starts its own)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._cancelled: set[int] = set()
        self._numbers = itertools.count()
        self._pid: int | None = None

    def at(self, deadline: float, callback: Callable[[], None]) -> Callable[[], None]:
        """Run `callback` at `deadline`; what it returns cancels it."""
        with self._lock:
            if self._pid != os.getpid():
                self._pid, self._heap, self._cancelled = os.getpid(), [], set()
                threading.Thread(target=self._run, name="first-token-deadlines", daemon=True).start()
            number = next(self._numbers)
            heapq.heappush(self._heap, (deadline, number, callback))
            if self._heap[0][1] == number:
                self._lock.notify()

        def cancel() -> None:
            with self._lock:
                self._cancelled.add(number)

        return cancel

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._heap or self._heap[0][0] > self._clock():
                    self._lock.wait(None if not self._heap else self._heap[0][0] - self._clock())
                _, number, callback = heapq.heappop(self._heap)
                if number in self._cancelled:
                    self._cancelled.discard(number)
                    continue
            try:
                callback()
            except Exception:  # noqa: BLE001 - a failed cut must not stop the other streams' watch
                pass


DEADLINES = Deadlines()


def has_token(chunk: dict[str, Any]) -> bool:
    """Whether an OpenAI-format chunk carries output: text, reasoning, a refusal or a tool call."""
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict) and any(delta.get(field) for field in
                                           ("content", "reasoning_content", "refusal", "tool_calls")):
            return True
    return False


def has_message_token(event: MessagesEvent) -> bool:
    """Whether a Messages API event carries output: a block's text, thinking or tool input, or the
    start of a block that is not text (a tool call)."""
    if event.type == "content_block_delta":
        delta = event.data.get("delta") or {}
        return any(delta.get(field) for field in ("text", "thinking", "partial_json", "signature"))
    if event.type == "content_block_start":
        return (event.data.get("content_block") or {}).get("type") not in (None, "text", "thinking")
    return False


def watched(chunks: Iterator[T], response: httpx.Response, channel: Channel,
            first_token_s: float | None, *, started: float, is_token: Callable[[T], bool] = has_token,
            deadlines: Deadlines = DEADLINES) -> Iterator[T]:
    """`chunks` as they come, the connection cut if the first one carrying a token (`is_token`) has
    not come within `first_token_s` of `started` (the call's monotonic time); that failure raised as
    UpstreamTimeout (retryable)."""
    if first_token_s is None:
        yield from chunks
        return
    state = threading.Lock()
    cut = False

    def cut_connection() -> None:
        nonlocal cut
        with state:
            cut = True
        _shut_down(response)

    cancel = deadlines.at(started + first_token_s, cut_connection)
    armed = True
    try:
        for chunk in chunks:
            if armed and is_token(chunk):
                with state:
                    if cut:
                        break  # the deadline won the race: the read after this one fails anyway
                    cancel()
                    armed = False
            yield chunk
    except ProviderError as exc:
        if cut:
            raise UpstreamTimeout(
                f"The upstream `{channel.name}` sent no token in {first_token_s:g} s.") from exc
        raise
    finally:
        if armed and not cut:  # a deadline that ran has nothing left to cancel
            cancel()
    if cut:
        raise UpstreamTimeout(f"The upstream `{channel.name}` sent no token in {first_token_s:g} s.")


def _shut_down(response: httpx.Response) -> None:
    """Wake the read blocked on the response's connection: shut its socket down if there is one
    (a real connection), else close the response (an in-process transport, which does not block)."""
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if isinstance(sock, socket.socket):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed: the read has ended
        return
    response.close()
