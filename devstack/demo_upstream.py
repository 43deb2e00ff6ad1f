"""Demo upstream: a deterministic OpenAI-compatible HTTP server on loopback.

It is NOT a model. Chat replies echo the last user message, labelled
``[demo upstream]``; embeddings are hashes of the input; images are small solid
PNGs. Everything else follows the OpenAI wire format closely enough for the
official ``openai`` SDK and for Tokenway's relay: ids, ``usage`` numbers,
``finish_reason``, server-sent-event streams and the error envelope.

Token counting rule (deterministic, documented so tests can predict numbers):
a *token* is a maximal run of word characters (``\\w+``) or a single character
that is neither a word character nor whitespace. ``"Hello, world!"`` is 4
tokens: ``Hello`` ``,`` ``world`` ``!``.

* ``prompt_tokens`` of a chat request is the sum of the token counts of the text
  of every message's ``content`` (a string, or the ``text`` of its text parts);
  roles, names and non-text parts count nothing.
* ``completion_tokens`` is the token count of the reply, times ``n``.
* ``prompt_tokens`` of an embeddings request is the token count of each text
  input, or the length of each token-id array, summed.

Streams are framed with HTTP/1.1 chunked transfer encoding: one HTTP chunk per
``data: ...\\n\\n`` event, written straight to the socket, ending with the
zero-length chunk after ``data: [DONE]``; the connection stays reusable.

Run it on its own::

    python -m devstack.demo_upstream --port 8099
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.server
import json
import logging
import math
import re
import socket
import struct
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from devstack.loopback import LoopbackServer

log = logging.getLogger(__name__)

LABEL = "[demo upstream]"
REPLY_PREFIX = f"{LABEL} You said: "
ECHO_LIMIT = 200
DEFAULT_EMBEDDING_DIMENSIONS = 16
MAX_EMBEDDING_DIMENSIONS = 4096
MAX_CHOICES = 128
MAX_IMAGES = 10
PNG_SIDE = 8
MODELS = ("demo-chat", "demo-embedding", "demo-image")

_TOKEN = re.compile(r"\w+|[^\w\s]")
_STREAM_PIECE = re.compile(r"\s*\S+\s*")
_IMAGE_PATH = re.compile(r"^/images/(img_([0-9a-f]{6,64})_\d+)\.png$")
_ROUTES = {
    "/chat/completions": ("POST",),
    "/embeddings": ("POST",),
    "/images/generations": ("POST",),
    "/models": ("GET",),
}


# ---------------------------------------------------------------------------
# Deterministic building blocks


def count_tokens(text: str) -> int:
    """Number of tokens in ``text`` under the rule in the module docstring."""
    return sum(1 for _ in _TOKEN.finditer(text))


def truncate_tokens(text: str, limit: int) -> str:
    """``text`` cut right after its ``limit``-th token (unchanged if shorter)."""
    for index, match in enumerate(_TOKEN.finditer(text), start=1):
        if index == limit:
            return text[: match.end()]
    return text


def content_text(content: Any) -> str:
    """The text of a message ``content``: a string, or its text parts joined by spaces."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type") in ("text", "input_text") \
                    and isinstance(part.get("text"), str):
                texts.append(part["text"])
        return " ".join(texts)
    return ""


def chat_reply_text(messages: list[Any]) -> str:
    """The demo reply to ``messages``: the last user message, labelled and cut to 200 characters."""
    said = ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            said = content_text(message.get("content"))
            break
    return REPLY_PREFIX + said[:ECHO_LIMIT]


def embedding_vector(text: str, dimensions: int = DEFAULT_EMBEDDING_DIMENSIONS) -> list[float]:
    """A unit-length vector derived from sha256 of ``text``, rounded to float32 precision."""
    raw = b""
    block = 0
    while len(raw) < 4 * dimensions:
        raw += hashlib.sha256(f"{block}:{text}".encode()).digest()
        block += 1
    values = [u / 2**31 - 1.0 for u in struct.unpack(f"<{dimensions}I", raw[: 4 * dimensions])]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    unit = [v / norm for v in values]
    # Round through float32 so the float and base64 encodings carry identical numbers.
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *unit)))


def encode_base64_floats(vector: list[float]) -> str:
    """Base64 of the vector as little-endian float32, as OpenAI's ``encoding_format: base64``."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def solid_png(rgb: tuple[int, int, int], side: int = PNG_SIDE) -> bytes:
    """A valid ``side`` x ``side`` RGB PNG of one colour, built with zlib and struct."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + bytes(rgb) * side  # filter type 0, then the pixels
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * side))
            + chunk(b"IEND", b""))


def error_body(message: str, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    """The OpenAI error envelope."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


class RequestError(Exception):
    """A request the demo upstream refuses, answered in the OpenAI error envelope."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code


# ---------------------------------------------------------------------------
# One request/response exchange


class Headers(dict):
    """Request headers as a dict with lower-case keys, looked up case-insensitively."""

    def __init__(self, items: Any = ()) -> None:
        super().__init__()
        for key, value in (items.items() if isinstance(items, dict) else items):
            super().__setitem__(key.lower(), value)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key.lower(), value)

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key.lower() if isinstance(key, str) else key)

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


_UNPARSED = object()


@dataclass
class Exchange:
    """A received request, plus how its reply should be shaped (set by subclasses of DemoUpstream)."""

    method: str
    path: str  # as received, with query string
    route: str  # without query string and without the /v1 prefix
    headers: Headers
    body: bytes
    _json: Any = field(default=_UNPARSED, repr=False)
    # Reply shaping, for subclasses that script behaviour (see tests.fakes.upstream):
    usage_override: dict[str, int] | None = None  # keys: prompt, completion, cached, total
    omit_usage: bool = False
    cut_after_chunks: int | None = None  # abort a stream after this many content chunks
    images_override: int | None = None  # return this many images, whatever `n` says
    event_interval_s: float | None = None  # in a stream, wait this long before each event after the first
    # in a stream, after the role chunk, only keep-alive comments for this long before the first token
    first_token_after_s: float | None = None

    @property
    def json(self) -> Any:
        """The parsed JSON body, or None when the body is empty or not JSON."""
        if self._json is _UNPARSED:
            try:
                self._json = json.loads(self.body) if self.body else None
            except (ValueError, UnicodeDecodeError):
                self._json = None
        return self._json


# ---------------------------------------------------------------------------
# HTTP plumbing


class _Server(LoopbackServer):
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], upstream: DemoUpstream) -> None:
        self.upstream = upstream
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("demo upstream: error while serving %s", client_address, exc_info=True)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate writes; without TCP_NODELAY the body
    # waits for the client's delayed ACK (about 40 ms) on every keep-alive request.
    disable_nagle_algorithm = True
    server_version = "TokenwayDemoUpstream/1.0"
    sys_version = ""
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: no access log on stderr
        pass

    def _serve(self) -> None:
        self.server.upstream._serve(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    # -- reading

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    # -- writing

    def send_bytes(self, status: int, body: bytes, content_type: str,
                   headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self.send_bytes(status, json.dumps(obj).encode(), "application/json", headers)

    def send_error_envelope(self, status: int, message: str, type: str = "invalid_request_error",
                            param: str | None = None, code: str | None = None,
                            headers: dict[str, str] | None = None) -> None:
        self.send_json(status, error_body(message, type, param, code), headers)

    def start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("X-Request-Id", f"req_{uuid.uuid4().hex[:24]}")
        self.end_headers()
        self.wfile.flush()

    def send_event(self, data: Any) -> None:
        payload = data if isinstance(data, str) else json.dumps(data)
        event = f"data: {payload}\n\n".encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
        self.wfile.flush()

    def send_comment(self, text: str) -> None:
        comment = f": {text}\n\n".encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(comment), comment))
        self.wfile.flush()

    def end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def abort(self) -> None:
        """Close the connection now, whatever has or has not been sent."""
        self.close_connection = True
        try:
            self.wfile.flush()
        except OSError:
            pass
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


# ---------------------------------------------------------------------------
# The server


class DemoUpstream:
    """A deterministic OpenAI-compatible server for local runs and tests. Not a model: it echoes."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._server: _Server | None = None
        self._stopping = threading.Event()

    # -- lifecycle

    def start(self) -> None:
        """Bind and serve on a daemon thread (port 0 picks a free port)."""
        if self._server is not None:
            return
        self._stopping.clear()
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._server.serve_in_background("demo-upstream")

    def stop(self) -> None:
        """Stop serving and drop open connections; handlers that are waiting give up at once."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.close()

    def __enter__(self) -> DemoUpstream:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    # -- request handling

    def _serve(self, handler: _Handler) -> None:
        split = urlsplit(handler.path)
        route = split.path.rstrip("/") or "/"
        if route == "/v1" or route.startswith("/v1/"):
            route = route[3:] or "/"
        exchange = Exchange(method=handler.command, path=handler.path, route=route,
                            headers=Headers(handler.headers.items()), body=handler.read_body())
        if self._intercept(handler, exchange):
            return
        try:
            self._dispatch(handler, exchange)
        except RequestError as error:
            handler.send_error_envelope(error.status, error.message, error.type, error.param, error.code)

    def _intercept(self, handler: _Handler, exchange: Exchange) -> bool:
        """Hook for subclasses: answer ``exchange`` some other way and return True, or shape it and return False."""
        return False

    def _dispatch(self, handler: _Handler, exchange: Exchange) -> None:
        route, method = exchange.route, exchange.method
        image = _IMAGE_PATH.match(route)
        if image and method == "GET":  # image URLs are fetched without credentials, like signed blob URLs
            handler.send_bytes(200, solid_png(_rgb(image.group(2))), "image/png")
            return
        if route.startswith("/models/") and method == "GET":
            self._require_auth(exchange)
            handler.send_json(200, _model_object(route[len("/models/"):]))
            return
        if route not in _ROUTES:
            raise RequestError(404, f"Invalid URL ({method} {urlsplit(exchange.path).path})", code="not_found")
        if method not in _ROUTES[route]:
            raise RequestError(405, f"Method {method} is not allowed for {route}", code="method_not_allowed")
        self._require_auth(exchange)
        if route == "/models":
            handler.send_json(200, {"object": "list", "data": [_model_object(name) for name in MODELS]})
            return
        body = exchange.json
        if not isinstance(body, dict):
            raise RequestError(400, "We could not parse the JSON body of your request. The body must be a JSON "
                                    "object (see https://platform.openai.com/docs/api-reference).")
        if route == "/chat/completions":
            self._chat(handler, exchange, body)
        elif route == "/embeddings":
            self._embeddings(handler, exchange, body)
        else:
            self._images(handler, exchange, body)

    @staticmethod
    def _require_auth(exchange: Exchange) -> None:
        scheme, _, token = exchange.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise RequestError(401, "You didn't provide an API key. You need to provide your API key in an "
                                    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")

    # -- chat completions

    def _chat(self, handler: _Handler, exchange: Exchange, body: dict) -> None:
        model = _required_str(body, "model")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError(400, "'messages' must be a non-empty array.", param="messages")
        n = _int_param(body, "n", default=1, low=1, high=MAX_CHOICES)
        limit = _int_param(body, "max_completion_tokens", default=None, low=1)
        if limit is None:
            limit = _int_param(body, "max_tokens", default=None, low=1)

        full = chat_reply_text(messages)
        reply = truncate_tokens(full, limit) if limit is not None else full
        finish = "length" if reply != full else "stop"
        prompt = sum(count_tokens(content_text(m.get("content"))) for m in messages if isinstance(m, dict))
        usage = self._usage(exchange, prompt, count_tokens(reply) * n, chat=True)
        head = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": model}

        stream_options = body.get("stream_options")
        if body.get("stream") is True:
            include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True
            self._chat_stream(handler, exchange, head, reply, finish, n, usage if include_usage else None)
            return
        if exchange.cut_after_chunks is not None:
            handler.abort()
            return
        reply_body: dict[str, Any] = {
            "id": head["id"], "object": "chat.completion", "created": head["created"], "model": model,
            "choices": [{"index": i, "message": {"role": "assistant", "content": reply}, "finish_reason": finish,
                         "logprobs": None} for i in range(n)],
        }
        if usage is not None:
            reply_body["usage"] = usage
        reply_body["system_fingerprint"] = "demo"
        handler.send_json(200, reply_body, {"X-Request-Id": f"req_{uuid.uuid4().hex[:24]}"})

    def _keep_alive(self, handler: _Handler, seconds: float) -> None:
        """Keep-alive comments only, every 0.1 s for `seconds`, as a model slow to start writes."""
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0:
            if self._stopping.wait(min(0.1, left)):
                raise ConnectionAbortedError("the demo upstream is stopping")
            handler.send_comment("keep-alive")

    def _chat_stream(self, handler: _Handler, exchange: Exchange, head: dict, reply: str, finish: str, n: int,
                     usage: dict | None) -> None:
        with_usage_key = usage is not None and not exchange.omit_usage

        def chunk(choices: list[dict]) -> dict:
            event = {"id": head["id"], "object": "chat.completion.chunk", "created": head["created"],
                     "model": head["model"], "system_fingerprint": "demo", "choices": choices}
            if with_usage_key:
                event["usage"] = None
            return event

        def choice(index: int, delta: dict, finish_reason: str | None = None) -> dict:
            return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

        pieces = _STREAM_PIECE.findall(reply) or ([reply] if reply else [])
        cut = exchange.cut_after_chunks
        started = False

        def send(data: Any) -> None:
            nonlocal started
            if started and exchange.event_interval_s is not None and self._stopping.wait(exchange.event_interval_s):
                raise ConnectionAbortedError("the demo upstream is stopping")
            started = True
            handler.send_event(data)

        handler.start_stream()
        sent = 0
        for index in range(n):
            send(chunk([choice(index, {"role": "assistant", "content": ""})]))
            if index == 0 and exchange.first_token_after_s is not None:
                self._keep_alive(handler, exchange.first_token_after_s)
            for piece in pieces:
                if cut is not None and sent >= cut:
                    handler.abort()
                    return
                send(chunk([choice(index, {"content": piece})]))
                sent += 1
            if cut is not None:  # fewer pieces than the cut point: still end without finishing
                handler.abort()
                return
            send(chunk([choice(index, {}, finish)]))
        if with_usage_key:
            final = chunk([])
            final["usage"] = usage
            send(final)
        send("[DONE]")
        handler.end_stream()

    # -- embeddings

    def _embeddings(self, handler: _Handler, exchange: Exchange, body: dict) -> None:
        model = _required_str(body, "model")
        inputs = _embedding_inputs(body.get("input"))
        dimensions = _int_param(body, "dimensions", default=DEFAULT_EMBEDDING_DIMENSIONS, low=1,
                                high=MAX_EMBEDDING_DIMENSIONS)
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise RequestError(400, f"Invalid value for 'encoding_format': {encoding!r}. Expected 'float' or "
                                    "'base64'.", param="encoding_format")
        if exchange.cut_after_chunks is not None:
            handler.abort()
            return
        data = []
        prompt = 0
        for index, item in enumerate(inputs):
            if isinstance(item, str):
                key, prompt = item, prompt + count_tokens(item)
            else:
                key, prompt = "tokens:" + ",".join(map(str, item)), prompt + len(item)
            vector = embedding_vector(key, dimensions)
            data.append({"object": "embedding", "index": index,
                         "embedding": encode_base64_floats(vector) if encoding == "base64" else vector})
        reply: dict[str, Any] = {"object": "list", "data": data, "model": model}
        usage = self._usage(exchange, prompt, 0, chat=False)
        if usage is not None:
            reply["usage"] = usage
        handler.send_json(200, reply)

    # -- images

    def _images(self, handler: _Handler, exchange: Exchange, body: dict) -> None:
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise RequestError(400, "'prompt' is a required property.", param="prompt")
        if "model" in body and not isinstance(body["model"], str):
            raise RequestError(400, "'model' must be a string.", param="model")
        n = _int_param(body, "n", default=1, low=1, high=MAX_IMAGES)
        if exchange.images_override is not None:
            n = exchange.images_override
        response_format = body.get("response_format") or "url"
        if response_format not in ("url", "b64_json"):
            raise RequestError(400, f"Invalid value for 'response_format': {response_format!r}. Expected 'url' or "
                                    "'b64_json'.", param="response_format")
        if exchange.cut_after_chunks is not None:
            handler.abort()
            return
        digest = hashlib.sha256(prompt.encode()).hexdigest()
        data = []
        for index in range(n):
            item: dict[str, Any] = {"revised_prompt": f"{LABEL} {prompt}"}
            if response_format == "b64_json":
                item["b64_json"] = base64.b64encode(solid_png(_rgb(digest))).decode("ascii")
            else:
                item["url"] = f"{self.base_url}/images/img_{digest[:16]}_{index}.png"
            data.append(item)
        reply: dict[str, Any] = {"created": int(time.time()), "data": data}
        if exchange.usage_override is not None and not exchange.omit_usage:
            # Image usage exists only when scripted, in the shape of token-billed image models.
            o = exchange.usage_override
            reply["usage"] = {"input_tokens": o["prompt"], "output_tokens": o["completion"],
                              "total_tokens": o["total"],
                              "input_tokens_details": {"text_tokens": o["prompt"], "image_tokens": 0,
                                                       "cached_tokens": o["cached"]}}
        handler.send_json(200, reply)

    # -- usage

    @staticmethod
    def _usage(exchange: Exchange, prompt: int, completion: int, *, chat: bool) -> dict | None:
        if exchange.omit_usage:
            return None
        cached = 0
        total = prompt + completion
        if exchange.usage_override is not None:
            o = exchange.usage_override
            prompt, completion, cached, total = o["prompt"], o["completion"], o["cached"], o["total"]
        if not chat:
            return {"prompt_tokens": prompt, "total_tokens": total}
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total,
                "prompt_tokens_details": {"cached_tokens": cached}}


# ---------------------------------------------------------------------------
# Request validation


def _required_str(body: dict, name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise RequestError(400, f"you must provide a {name} parameter", param=name)
    return value


def _int_param(body: dict, name: str, *, default: int | None, low: int, high: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise RequestError(400, f"Invalid '{name}': must be an integer {bound}.", param=name)
    return value


def _is_token_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in value)


def _embedding_inputs(value: Any) -> list[str | list[int]]:
    if isinstance(value, str) and value:
        return [value]
    if _is_token_array(value):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(item, str) and item for item in value):
            return list(value)
        if all(_is_token_array(item) for item in value):
            return list(value)
    raise RequestError(400, "'input' must be a non-empty string, array of strings, array of token ids, or array "
                            "of token id arrays.", param="input")


def _rgb(hex_digest: str) -> tuple[int, int, int]:
    raw = bytes.fromhex(hex_digest[:6])
    return raw[0], raw[1], raw[2]


def _model_object(name: str) -> dict:
    return {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "demo-upstream"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the demo upstream (deterministic echo, not a model).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args(argv)
    upstream = DemoUpstream(args.host, args.port)
    upstream.start()
    print(f"demo upstream serving at {upstream.base_url} (any bearer key, any model name)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        upstream.stop()


if __name__ == "__main__":
    main()
