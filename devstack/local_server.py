"""chalice's local server, closer to API Gateway; and an in-process transport for the tests.

`LocalGateway` is `chalice local` (what `make run` served with before the one-machine server,
chalicelib/api/server.py), kept as the reference the server is compared with in the tests and
the benchmark. What it adds to `chalice local`:
- API Gateway's greedy path segment: `/{proxy+}` matches any path no other route does, and its
  value reaches the app as `pathParameters["proxy"]`, as API Gateway sends it;
- the caller's address from the socket as `requestContext.identity.sourceIp` (chalice local
  reports every caller as 127.0.0.1), so limits and allowlists see real addresses;
- no body on an answer to HEAD.

`InProcessTransport` sends an httpx client's requests to the app in process, without a socket,
through the server's own WSGI adapter (chalicelib/api/wsgi.py), with streams joined into one body
as on Lambda: the tests that do not need a socket use it.
"""

from __future__ import annotations

import io
import threading
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import httpx
from chalice import Chalice
from chalice.config import Config
from chalice.local import (
    ChaliceRequestHandler,
    LambdaEventConverter,
    LocalDevServer,
    MatchResult,
    RouteMatcher,
    ThreadedHTTPServer,
)
from chalice.local import LocalGateway as _ChaliceGateway

from chalicelib.api.wsgi import ChaliceWsgi, per_thread


class _RouteMatcher(RouteMatcher):
    """chalice's matcher for the routes it knows, then the greedy `{name+}` routes, longest prefix first."""

    def __init__(self, route_urls: list[str]) -> None:
        super().__init__([url for url in route_urls if not url.endswith("+}")])
        self._greedy = sorted((url for url in route_urls if url.endswith("+}")), key=len, reverse=True)

    def match_route(self, url: str) -> MatchResult:
        try:
            return super().match_route(url)
        except ValueError:
            parsed = urlparse(url)
            path = parsed.path.rstrip("/")
            for route in self._greedy:
                prefix, _, name = route.rpartition("/")
                if path.startswith(prefix + "/") and len(path) > len(prefix) + 1:
                    return MatchResult(route, {name[1:-2]: path[len(prefix) + 1:]},
                                       parse_qs(parsed.query, keep_blank_values=True))
            raise


class _EventConverter(LambdaEventConverter):
    def __init__(self, route_matcher: RouteMatcher, binary_types: list[str], source_ip: str) -> None:
        super().__init__(route_matcher, binary_types)
        self._source_ip = source_ip

    def create_lambda_event(self, method: str, path: str, headers: dict[str, str],
                            body: bytes | None = None) -> dict[str, Any]:
        event = super().create_lambda_event(method, path, headers, body)
        event["requestContext"]["identity"]["sourceIp"] = self._source_ip
        event["path"] = event["requestContext"]["path"]
        return event


class _Gateway(_ChaliceGateway):
    """chalice's fake of API Gateway for one caller, with the additions above."""

    def __init__(self, app: Chalice, config: Config, source_ip: str) -> None:
        super().__init__(app, config)
        self.event_converter = _EventConverter(_RouteMatcher(list(app.routes)), app.api.binary_types, source_ip)


class _Handler(ChaliceRequestHandler):
    # The handler writes headers and body separately; without TCP_NODELAY every
    # keep-alive response waits for the client's delayed ACK (about 40 ms).
    disable_nagle_algorithm = True

    def __init__(self, request: Any, client_address: tuple[str, int], server: Any, app_object: Chalice,
                 config: Config) -> None:
        self.local_gateway = _Gateway(app_object, config, client_address[0])
        # What ChaliceRequestHandler.__init__ does after making its own gateway.
        super(ChaliceRequestHandler, self).__init__(request, client_address, server)

    def _send_http_response(self, code: int, headers: dict[str, Any], body: str | bytes | None) -> None:
        if self.command == "HEAD":
            body = None  # a HEAD answer has headers only; a body would be read as the next response
        super()._send_http_response(code, headers, body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # no access log: the tests and the benchmark make thousands of requests


class _Server(ThreadedHTTPServer):
    # The default listen backlog of 5 resets connections when many clients
    # connect at once (the concurrency tests and the benchmark do).
    request_queue_size = 128


class LocalGateway:
    """The app served as `chalice local` serves it, with the additions above: threaded, one current
    request per thread."""

    def __init__(self, app: Chalice, *, host: str = "127.0.0.1", port: int = 0, stage: str = "local") -> None:
        self._server = LocalDevServer(per_thread(app), Config.create(chalice_stage=stage), host, port,
                                      handler_cls=_Handler, server_cls=_Server)
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


class InProcessTransport(httpx.BaseTransport):
    """An httpx transport that hands each request to the app through the server's WSGI adapter, in
    process; `client_ip` is the peer address the app sees. Streams are joined, as on Lambda."""

    def __init__(self, app: Chalice, *, client_ip: str = "127.0.0.1") -> None:
        self._wsgi = ChaliceWsgi(app, streams=False)
        self.client_ip = client_ip

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method,
            "RAW_URI": request.url.raw_path.decode("ascii"),
            "PATH_INFO": unquote(request.url.path),
            "QUERY_STRING": request.url.query.decode("ascii"),
            "SERVER_NAME": request.url.host,
            "SERVER_PORT": str(request.url.port or 80),
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": self.client_ip,
            "wsgi.input": io.BytesIO(body),
            "wsgi.url_scheme": request.url.scheme,
            "wsgi.errors": io.StringIO(),
        }
        for raw_name, raw_value in request.headers.raw:
            key = raw_name.decode("latin-1").upper().replace("-", "_")
            key = key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"
            # As a WSGI server does: each byte a latin-1 character, repeated headers joined.
            value = raw_value.decode("latin-1")
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        answer: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            answer.update(status=int(status.split(" ", 1)[0]), headers=headers)

        chunks = self._wsgi(environ, start_response)
        try:
            content = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        return httpx.Response(answer["status"], headers=answer["headers"], content=content, request=request)

