"""What the loopback servers of `make run` share (the demo upstream, the demo payment provider):
a threaded HTTP server that knows its open connections, so that stopping it drops kept-alive ones
too and wakes the handlers blocked on them (a stopped server is unreachable at once)."""

from __future__ import annotations

import http.server
import socket
import threading
from typing import Any


class LoopbackServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # The listen backlog: socketserver's default of 5 resets connections when a burst (the gateway's
    # 32 workers' threads calling at once) arrives faster than the server accepts them.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def serve_in_background(self, name: str) -> None:
        """Serve on a daemon thread of this name until `close`."""
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{name}-{self.server_address[1]}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving, close the socket, drop open connections and wait for the serving thread."""
        self.shutdown()
        self.server_close()
        self.drop_connections()
        self._thread.join(timeout=2)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Shut down every open client connection, waking handlers blocked on them."""
        with self._connections_lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
