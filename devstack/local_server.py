"""chalice's local server for an app object, in a thread: for tests and the benchmark."""

from __future__ import annotations

import threading

from chalice import Chalice
from chalice.config import Config
from chalice.local import ChaliceRequestHandler, CustomLocalChalice, LocalChalice, LocalDevServer, ThreadedHTTPServer


class _NoDelayHandler(ChaliceRequestHandler):
    # The handler writes headers and body separately; without TCP_NODELAY every
    # keep-alive response waits for the client's delayed ACK (about 40 ms).
    disable_nagle_algorithm = True

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # no access log: the tests and the benchmark make thousands of requests

    def _generic_handle(self) -> None:
        # API Gateway tells the app the caller's address; chalice's local server says 127.0.0.1
        # whoever calls. Tell the truth, so that per-address limits and allowlists work here too.
        self.local_gateway.event_converter.LOCAL_SOURCE_IP = self.client_address[0]
        super()._generic_handle()

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_PATCH = do_OPTIONS = _generic_handle


class _Server(ThreadedHTTPServer):
    # The default listen backlog of 5 resets connections when many clients
    # connect at once (the concurrency tests and the benchmark do).
    request_queue_size = 128


class LocalGateway:
    """The app served as `chalice local` serves it: threaded, one current request per thread."""

    def __init__(self, app: Chalice, *, host: str = "127.0.0.1", port: int = 0, stage: str = "local") -> None:
        if not isinstance(app, LocalChalice):
            # What chalice.local.create_local_server does to make current_request thread-local.
            CustomLocalChalice.__bases__ = (LocalChalice, app.__class__)
            app.__class__ = CustomLocalChalice
        self._server = LocalDevServer(app, Config.create(chalice_stage=stage), host, port,
                                      handler_cls=_NoDelayHandler, server_cls=_Server)
        self._thread = threading.Thread(target=self._server.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LocalGateway:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server.server_close()
