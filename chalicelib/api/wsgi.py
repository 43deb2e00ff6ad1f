"""The Chalice app as a WSGI application, for a server on one machine (or in a streaming function).

Each HTTP request becomes the API Gateway event (REST API, Lambda proxy integration) the app
handles on Lambda, dispatched through the app itself: its routes, middleware and error rendering,
no second copy of any. What this adds is what API Gateway does in front of Lambda:

- routing: the resource whose template matches the path (literal segments before `{name}`,
  the greedy `{name+}` only when nothing else matches) and its path parameters;
- the caller's address as `requestContext.identity.sourceIp`: the socket's peer (a proxy's
  X-Forwarded-For is read by the app itself, see http.client_ip);
- a body of at most the app's limit plus one byte: the app answers 413 past it without the
  server reading the rest;
- the answer's status, headers and body (base64-decoded when the app encoded it).

With `streams=True` a relay stream is written event by event (see streaming.py): the body is
the relay's iterator, chunked, and closing the body, which a WSGI server does when the answer
ends or the client is gone, settles the stream.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from chalice import Chalice

from chalicelib.api.streaming import StreamHandOff, accepting_streams

StartResponse = Callable[..., Any]

# Answers that carry no body, and so no Content-Length either.
_NO_BODY = {204, 304}


class ChaliceWsgi:
    """A WSGI application serving `app` as API Gateway and Lambda serve it, in any number of threads."""

    def __init__(self, app: Chalice, *, streams: bool = True, max_body_bytes: int | None = None) -> None:
        self._app = per_thread(app)
        self._routes = _RouteTable(list(app.routes))
        self._streams = streams
        self._max_body_bytes = max_body_bytes

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        event = self.event(environ)
        streaming = accepting_streams() if self._streams else nullcontext(StreamHandOff())
        with streaming as handed:
            try:
                answer = self._app(event, None)
            except BaseException:
                if handed.events is not None:
                    _close(handed.events)
                raise
        events = handed.events
        try:
            status = int(answer["statusCode"])
            headers = _headers(answer)
            if events is not None and status == 200:
                # No Content-Length: the body is chunked, each event a chunk, as it comes.
                start_response(_status_line(status), headers)
                served, events = _EventStream(events), None  # the server closes it from here on
                return served
            body = b"" if status in _NO_BODY else _body(answer)
            if status not in _NO_BODY:
                headers.append(("Content-Length", str(len(body))))
            start_response(_status_line(status), headers)
            return [b"" if environ["REQUEST_METHOD"] == "HEAD" else body]
        finally:
            if events is not None:
                _close(events)  # handed over but not served: closing settles it

    def event(self, environ: dict[str, Any]) -> dict[str, Any]:
        """The API Gateway event of one WSGI request."""
        method = environ["REQUEST_METHOD"]
        path = _raw_path(environ)
        resource, parameters = self._routes.match(path)
        headers, multi_headers = _request_headers(environ)
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True) or None
        return {
            "resource": resource,
            "path": path,
            "httpMethod": method,
            "headers": headers,
            "multiValueHeaders": multi_headers,
            "queryStringParameters": {name: values[-1] for name, values in query.items()} if query else None,
            "multiValueQueryStringParameters": query,
            "pathParameters": parameters,
            "stageVariables": {},
            "requestContext": {
                "resourcePath": resource,
                "httpMethod": method,
                "path": path,
                "stage": "local",
                "identity": {"sourceIp": environ.get("REMOTE_ADDR")},
            },
            "body": self._read_body(environ),
            "isBase64Encoded": False,
        }

    def _read_body(self, environ: dict[str, Any]) -> bytes | None:
        stream = environ.get("wsgi.input")
        if stream is None:
            return None
        body = stream.read() if self._max_body_bytes is None else stream.read(self._max_body_bytes + 1)
        return body or None


class _EventStream:
    """The body of a streamed answer: each SSE event as the relay yields it."""

    def __init__(self, events: Iterator[str]) -> None:
        self._events = events

    def __iter__(self) -> Iterator[bytes]:
        yield b""  # the headers go out now, before the first event
        for event in self._events:
            yield event.encode()

    def close(self) -> None:
        """The answer ended or the client went away: the relay settles the stream."""
        _close(self._events)


def _close(events: Iterator[str]) -> None:
    # The relay's iterator is a generator: closing it runs its `finally`, which settles the stream.
    close = getattr(events, "close", None)
    if close is not None:
        close()


class _RouteTable:
    """API Gateway's choice of resource for a path: the most specific template that matches it."""

    def __init__(self, templates: list[str]) -> None:
        self._fixed: dict[int, list[tuple[tuple[str, ...], str]]] = {}  # by number of segments
        self._greedy: list[tuple[str, str, str]] = []  # (prefix, parameter, template), longest prefix first
        for template in templates:
            if template.endswith("+}"):
                prefix, _, name = template.rpartition("/")
                self._greedy.append((prefix, name[1:-2], template))
                continue
            segments = tuple(template.split("/"))
            shape = tuple(part if not part.startswith("{") else "{}" for part in segments)
            self._fixed.setdefault(len(segments), []).append((shape, template))
        for candidates in self._fixed.values():
            # Literal segments before parameters, from the left: /v1/models before /v1/{anything}.
            candidates.sort(key=lambda entry: tuple(part == "{}" for part in entry[0]))
        self._greedy.sort(key=lambda entry: len(entry[0]), reverse=True)

    def match(self, path: str) -> tuple[str, dict[str, str] | None]:
        """The matched template and its parameters (None when it has none, as API Gateway sends)."""
        if path != "/" and path.endswith("/"):
            path = path[:-1]  # API Gateway ignores one trailing slash
        parts = path.split("/")
        for shape, template in self._fixed.get(len(parts), []):
            if all(want == "{}" or want == got for want, got in zip(shape, parts, strict=True)):
                names = template.split("/")
                captured = {name[1:-1]: got for name, got in zip(names, parts, strict=True) if name.startswith("{")}
                return template, captured or None
        for prefix, name, template in self._greedy:
            if path.startswith(prefix + "/") and len(path) > len(prefix) + 1:
                return template, {name: path[len(prefix) + 1:]}
        return "/{proxy+}", {"proxy": path.lstrip("/")}  # answered by the app's own 404


def _raw_path(environ: dict[str, Any]) -> str:
    """The path as the client sent it, percent-escapes kept (API Gateway matches and passes it so)."""
    raw = environ.get("RAW_URI")
    if raw:
        path = urlsplit(raw).path if not raw.startswith("/") else raw.split("?", 1)[0]
        return path or "/"
    # PEP 3333 gives the decoded path, its bytes as latin-1 characters.
    return quote(environ.get("PATH_INFO", "").encode("latin-1"), safe="/:@!$&'()*+,;=-._~") or "/"


def _request_headers(environ: dict[str, Any]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The request's headers by lower-case name, and as lists (a WSGI server joins repeated ones)."""
    headers: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").lower()] = _text(value)
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            headers[key.replace("_", "-").lower()] = _text(value)
    return headers, {name: [value] for name, value in headers.items()}


def _text(value: str) -> str:
    """A header value as API Gateway passes it: its bytes (latin-1 characters in WSGI) read as UTF-8."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


def _headers(answer: dict[str, Any]) -> list[tuple[str, str]]:
    headers = [(name, str(value)) for name, value in (answer.get("headers") or {}).items()]
    for name, values in (answer.get("multiValueHeaders") or {}).items():
        headers += [(name, str(value)) for value in values]
    return [(name, value) for name, value in headers if name.lower() != "content-length"]


def _body(answer: dict[str, Any]) -> bytes:
    body = answer.get("body") or b""
    if answer.get("isBase64Encoded"):
        return base64.b64decode(body)
    return body.encode() if isinstance(body, str) else body


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


_requests = threading.local()


class _PerThreadRequest:
    """Chalice keeps the request it serves on the app object, as a Lambda container serves one at a
    time; a server with threads keeps one per thread."""

    @property
    def current_request(self) -> Any:
        return getattr(_requests, "request", None)

    @current_request.setter
    def current_request(self, value: Any) -> None:
        _requests.request = value

    @property
    def lambda_context(self) -> Any:
        return getattr(_requests, "context", None)

    @lambda_context.setter
    def lambda_context(self, value: Any) -> None:
        _requests.context = value


def per_thread(app: Chalice) -> Chalice:
    """`app`, keeping its current request per thread (once made so, it stays so)."""
    if not isinstance(app, _PerThreadRequest):
        app.__class__ = type(f"PerThread{type(app).__name__}", (_PerThreadRequest, type(app)), {})
    return app
