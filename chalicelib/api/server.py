"""The one-machine server: gunicorn's threaded workers serving the app through the WSGI adapter.

    python -m chalicelib.api.server [--host 127.0.0.1] [--port 8000] [--app app:app]

Gunicorn with `gthread` workers because the gateway's code is synchronous (a sync httpx client
upstream, blocking storage below): a thread per request in a few processes runs it as it is,
with no event loop to bridge, and a stream is a WSGI body written chunk by chunk as the relay
yields it. Settings (config.py): TOKENWAY_SERVER_WORKERS processes (default 2),
TOKENWAY_SERVER_THREADS requests at once in each, kept-alive connections for
TOKENWAY_SERVER_KEEPALIVE_S.

Stopping, on SIGTERM or SIGINT (Ctrl-C reaches every process of the terminal's group): the
server stops accepting, lets requests in flight run to their end for up to
TOKENWAY_SERVER_GRACEFUL_TIMEOUT_S, then cuts the connections of those still running, so that a
stream still being written is settled for what it delivered (the relay's cut-stream policy)
before the workers exit. A second SIGINT stops at once.

The app is imported once, before the workers are forked; each worker builds its gateway
(clients, connection pools) after the fork, before it serves.

With SQLite storage the server opens the data directory before it serves: it locks it itself, or,
with --data-dir-locked (`make run`, which locked it and passes its lock on), checks that it is
held; each worker checks it again without locking it (storage/data_dir.py).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import signal
import socket
import sys
import threading
import time
from typing import Any

from chalice import Chalice
from gunicorn import util as gunicorn_util
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.workers.gthread import ThreadWorker

from chalicelib.api.wsgi import ChaliceWsgi
from chalicelib.config import Settings, current_settings
from chalicelib.core.errors import DataDirectoryUnusable
from chalicelib.deps import get_gateway
from chalicelib.providers import outbox_mail
from chalicelib.storage.data_dir import DataDirectory

log = logging.getLogger(__name__)

# After the graceful timeout, how long cut requests have to settle before their worker is killed.
SETTLE_S = 5


class _Worker(ThreadWorker):
    """Gunicorn's threaded worker, stopping as gracefully on SIGINT as on SIGTERM, and cutting the
    requests still in flight when the graceful timeout runs out so that they settle."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_flight: set[socket.socket] = set()
        self._in_flight_lock = threading.Lock()
        self._cut_at: float | None = None

    def init_signals(self) -> None:
        super().init_signals()
        signal.signal(signal.SIGINT, self.handle_exit)

    def init_process(self) -> None:
        # What gunicorn cannot parse as HTTP (a request line or headers past its limits, a malformed
        # line) it answers itself, with an HTML page that repeats the offending text, headers
        # included. Gunicorn has no setting for that page; its worker writes it through
        # `util.write_error`, replaced here, in this worker process, by the envelope.
        gunicorn_util.write_error = _write_envelope
        super().init_process()

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self._cut_at is None:
            self._cut_at = time.monotonic() + self.cfg.graceful_timeout - SETTLE_S
        super().handle_exit(sig, frame)

    def handle_request(self, req: Any, conn: Any) -> bool:
        with self._in_flight_lock:
            self._in_flight.add(conn.sock)
        try:
            return super().handle_request(req, conn)
        finally:
            with self._in_flight_lock:
                self._in_flight.discard(conn.sock)

    def murder_keepalived(self, force: bool = False) -> None:
        # The worker's loop calls this at least once a second, also while it stops.
        super().murder_keepalived(force)
        if self._cut_at is not None and time.monotonic() >= self._cut_at:
            self._cut_at = float("inf")
            self._cut_in_flight()

    def _cut_in_flight(self) -> None:
        """Close the connections of requests still running: a stream's next write fails, and the
        server closes its iterator, which settles it."""
        with self._in_flight_lock:
            cut = list(self._in_flight)
        if cut:
            log.warning("stopping: cutting %d request(s) still in flight after the graceful timeout", len(cut))
        for sock in cut:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its client


# The answers to what gunicorn refuses before the app sees it: never a part of the request.
_UNPARSED = {
    400: ("The request is not valid HTTP/1.1.", "invalid_request_error", "invalid_http"),
    403: ("The request is forbidden.", "invalid_request_error", "forbidden"),
    414: ("The request line is too long.", "invalid_request_error", "request_line_too_long"),
    417: ("The Expect header cannot be met.", "invalid_request_error", "expectation_failed"),
    431: ("The request's headers are too large.", "invalid_request_error", "headers_too_large"),
    501: ("The request's transfer coding is not supported.", "invalid_request_error", "unsupported_transfer_coding"),
}


def _write_envelope(sock: Any, status: int, reason: str, message: str) -> None:
    """Gunicorn's error answer, as the OpenAI envelope; `message` (the request's own text) is not sent."""
    text, kind, code = _UNPARSED.get(status, ("The server had an error while processing your request.",
                                               "api_error", "internal_error"))
    body = json.dumps({"error": {"message": text, "type": kind, "param": None, "code": code}}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    gunicorn_util.write_nonblock(sock, head + body)


class _Arbiter(Arbiter):
    def handle_int(self) -> None:
        # Ctrl-C stops as SIGTERM does: requests in flight finish (a second Ctrl-C, read while
        # stopping, stops at once).
        self.handle_term()


class _Server(BaseApplication):
    def __init__(self, wsgi: ChaliceWsgi, options: dict[str, Any]) -> None:
        self._wsgi = wsgi
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for name, value in self._options.items():
            self.cfg.set(name, value)

    def load(self) -> ChaliceWsgi:
        return self._wsgi

    def run(self) -> None:
        _Arbiter(self).run()


def _build_gateway(worker: Any) -> None:
    """Each worker builds its gateway once forked (clients and pools are not shared across a fork)."""
    settings = current_settings()
    if settings.storage == "sqlite":
        DataDirectory.open(settings.data_dir, exclusive=False)  # held by the master, before anything is built
    get_gateway()


def _ready(arbiter: Any) -> None:
    cfg = arbiter.cfg
    print(f"Serving on http://{cfg.bind[0]} ({cfg.workers} workers, {cfg.threads} threads each)", flush=True)


def options(settings: Settings, *, host: str, port: int) -> dict[str, Any]:
    """Gunicorn's settings for serving on host:port with the gateway's settings."""
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return {
        "bind": [bind],
        "worker_class": _Worker,
        "workers": settings.server_workers,
        "threads": settings.server_threads,
        "keepalive": settings.server_keepalive_s,
        "timeout": settings.server_worker_timeout_s,
        "graceful_timeout": settings.server_graceful_timeout_s + SETTLE_S,
        "post_worker_init": _build_gateway,
        "when_ready": _ready,
        "proc_name": "tokenway",
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "control_socket_disable": True,
    }


def load_app(spec: str) -> Chalice:
    """The Chalice app named `module:attribute`."""
    module, _, attribute = spec.partition(":")
    return getattr(importlib.import_module(module), attribute or "app")


def main(argv: list[str] | None = None) -> int:
    """Serve the app with gunicorn's threaded workers until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m chalicelib.api.server", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--app", default="app:app", help="the Chalice app, as module:attribute (default app:app)")
    parser.add_argument("--data-dir-locked", action="store_true",
                        help="the process starting the server holds the data directory's lock (SQLite storage)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The emails of the one-machine mode are written to this log for the operator to read.
    logging.getLogger(outbox_mail.__name__).setLevel(logging.INFO)
    # Invalid settings stop the start here, with their reason; the workers forked from here share them.
    settings = current_settings()
    if settings.storage == "sqlite":
        try:
            # Held for the server's life: the workers forked from it share the lock.
            DataDirectory.open(settings.data_dir, exclusive=not args.data_dir_locked)
        except DataDirectoryUnusable as exc:
            print(exc, file=sys.stderr)
            return 1
    wsgi = ChaliceWsgi(load_app(args.app), streams=True, max_body_bytes=settings.max_body_bytes)
    _Server(wsgi, options(settings, host=args.host, port=args.port)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
