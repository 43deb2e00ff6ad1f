"""A seeded fuzz run of malformed requests over every route: none is answered 5xx, every refusal is in
the OpenAI envelope, and no answer repeats a credential it was sent.

The generator is deterministic (one seed), so a failure names a request that can be replayed. It
sends, in process: bodies nested 65 to 100 000 deep, huge and non-finite numbers, wrong types in
each field, NaN and Infinity, invalid UTF-8 and unpaired surrogates, huge strings and keys, broken
and truncated JSON, wrong content types, odd methods, paths and headers.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from chalicelib import deps
from tests.api.conftest import ADMIN_TOKEN, Stack, in_process
from tests.api.test_tokens_api import Customer

SEED = 20_260_601
# A peer of its own, so that failed logins do not count against the other tests' address.
FUZZ_PEER = "198.51.100.77"
FIELD = '"\u0000FUZZ\u0000"'  # where a bad value goes into a template body


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    auth: str  # relay | session | victim | admin | none
    template: dict | None = None  # a well-formed body, whose fields the fuzz replaces


def routes(ids: dict[str, str]) -> list[Route]:
    chat = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5,
            "temperature": 1, "stream": False, "n": 1, "tools": []}
    key_settings = {"name": "fuzz", "group": "default", "expires_at": "2099-01-01T00:00:00Z", "quota_usd": "1",
                    "models": ["deepseek-chat"], "allowed_ips": ["127.0.0.1"]}
    account = ids["account"]
    table = []
    for prefix in ("/v1", ""):
        table += [
            Route("POST", f"{prefix}/chat/completions", "relay", chat),
            Route("POST", f"{prefix}/embeddings", "relay", {"model": "text-embedding-3-small", "input": ["Hi"]}),
            Route("POST", f"{prefix}/images/generations", "relay", {"model": "dall-e-3", "prompt": "x", "n": 1}),
            Route("GET", f"{prefix}/models", "relay"),
            Route("GET", f"{prefix}/models/deepseek-chat", "relay"),
        ]
    table += [
        Route("POST", "/api/auth/signup", "none", {"email": "fuzz@example.com", "password": "correct horse 42"}),
        Route("POST", "/api/auth/login", "none", {"email": "fuzz@example.com", "password": "wrong horse 42"}),
        Route("POST", "/api/auth/logout", "victim", {}),
        Route("POST", "/api/auth/password", "victim", {"current_password": "x", "new_password": "y"}),
        Route("GET", "/api/auth/me", "session"),
        Route("GET", "/api/tokens", "session"),
        Route("POST", "/api/tokens", "session", key_settings),
        Route("GET", f"/api/tokens/{ids['key']}", "session"),
        Route("PATCH", f"/api/tokens/{ids['key']}", "session", {**key_settings, "enabled": True}),
        Route("DELETE", f"/api/tokens/{ids['victim_key']}", "victim"),
        Route("POST", f"/api/tokens/{ids['victim_key']}/regenerate", "victim", {}),
        Route("GET", f"/api/tokens/{ids['key']}/usage", "session"),
        Route("GET", "/api/groups", "session"),
        Route("GET", "/api/openapi.json", "none"),
        Route("POST", "/admin/channels", "admin", {"name": "fuzz-channel", "base_url": "http://127.0.0.1:9/v1",
                                                   "api_key": "k", "kind": "openai"}),
        Route("POST", "/admin/models", "admin", {"name": "fuzz-model", "channel": "fake", "input_per_1m": "1",
                                                 "output_per_1m": "1", "max_output_tokens": 10, "timeout_s": 5}),
        Route("POST", "/admin/groups", "admin", {"name": "fuzz-plan", "multiplier": "1.5", "models": [],
                                                 "description": "x"}),
        Route("GET", "/admin/groups", "admin"),
        Route("POST", "/admin/accounts", "admin", {"email": "fuzz-admin@example.com"}),
        Route("GET", "/admin/accounts?search=fuzz", "admin"),
        Route("PATCH", f"/admin/accounts/{account}", "admin", {"status": "active", "groups": [], "role": "customer"}),
        Route("POST", f"/admin/accounts/{account}/credit", "admin", {"amount_usd": "1", "note": "x"}),
        Route("GET", f"/admin/accounts/{account}/wallet", "admin"),
        Route("POST", f"/admin/accounts/{account}/keys", "admin", key_settings),
        Route("GET", f"/admin/accounts/{account}/keys", "admin"),
        Route("POST", "/admin/holds/sweep", "admin", {}),
    ]
    return table


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def _deep_objects(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


# Raw JSON text put in place of one field's value.
BAD_VALUES = [
    "null", "true", "false", "[]", "{}", '""', "0", "-1", "1.5", "-0", "1e308", "1e309", "-1e309", "1e-400",
    "1e30", "1" * 25, "9" * 400, "NaN", "Infinity", "-Infinity", '"1e30"', '"1e309"', '"NaN"', '"-1"', '"1e-999999999"',
    '"1000000000.000000001"', '"0.0000000001"', '"' + "9" * 25 + '"', '"\\ud800"', '"\\udfff\\ud800"', '"\\u0000"',
    '"' + "x" * 100_000 + '"', "[" + ",".join(['"x"'] * 5000) + "]", '{"' + "k" * 10_000 + '": 1}',
    _deep(65), _deep(450), _deep(10_000), _deep_objects(100), '["' + "\u00e9" * 1000 + '"]', '"\\x"', '"2099-13-45"',
    '"300.1.1.1/99"', '"::::"', '"sk-' + "a" * 300 + '"', '"' + "\\\\" * 500 + '"',
]
# Whole bodies, as bytes.
BAD_BODIES = [
    b"", b" ", b"null", b"1", b'"x"', b"[]", b"[1, 2]", b"{", b'{"a": }', b'{"a": 1,}', b"{'a': 1}", b"\xef\xbb\xbf{}",
    b"\xff\xfe{\x00}\x00", b'{"a": "\xff"}', b'{"a": "\xc0\xaf"}', b'{"a": "\xed\xa0\x80"}', b"\x00" * 100,
    b"NaN", b"Infinity", b"1e309", ("[" * 100_000).encode(), ("{" * 50_000).encode(), _deep(100_000).encode(),
    b'{"a": 1, "a": 2}', b'{"model": "deepseek-chat", "messages": [{"role": "user", "content": "Hi"}]' * 3,
    ("{" + ",".join(f'"k{i}": {i}' for i in range(20_000)) + "}").encode(), b"\n\t\r ",
]
CONTENT_TYPES = [None, "application/json", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                 "application/xml", "application/json; charset=latin-1", "application/octet-stream", "*/*",
                 "x/\u00e9".encode(), "image/png"]
ODD_PATHS = ["/v1/foo", "/v1/chat/completions/x", "/v1//models", "/%00", "/v1/models/" + "x" * 3000,
             "/api/tokens/../../admin/accounts", "/api/tokens/%ff%fe", "/admin/accounts/%2e%2e/wallet",
             "/v1/models/a%2Fb", "/api/tokens/" + "\u00e9" * 50, "/admin", "/", "/v1?x=" + "y" * 2000,
             "/admin/accounts?search=" + "%" * 100, "/api/tokens/key_x/usage?x=1&x=2"]
ODD_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "PROPFIND", "TRACE"]


def generate(table: list[Route], rng: random.Random) -> Iterator[tuple[Route, str, bytes, dict[str, str]]]:
    """(route, method, body, extra headers) for every case: field by field, body by body, then odd ones."""
    for route in table:
        if route.template:
            text = json.dumps(route.template)
            for field in route.template:
                for value in rng.sample(BAD_VALUES, 6):
                    body = json.dumps({**route.template, field: "\u0000FUZZ\u0000"}).replace(FIELD, value)
                    yield route, route.method, body.encode(), {"Content-Type": "application/json"}
            for _ in range(4):  # a well-formed body broken at random: truncated, or a byte changed
                raw = bytearray(text.encode())
                if rng.random() < 0.5:
                    raw = raw[: rng.randrange(len(raw))]
                else:
                    raw[rng.randrange(len(raw))] = rng.randrange(256)
                yield route, route.method, bytes(raw), {"Content-Type": "application/json"}
        for body in rng.sample(BAD_BODIES, 8):
            yield route, route.method, body, {"Content-Type": "application/json"}
        for content_type in rng.sample(CONTENT_TYPES, 3):
            body = json.dumps(route.template or {}).encode()
            yield route, route.method, body, {"Content-Type": content_type} if content_type else {}
        for method in rng.sample(ODD_METHODS, 3):
            yield route, method, b"{}", {"Content-Type": "application/json"}
    for path in ODD_PATHS:
        for method in rng.sample(ODD_METHODS, 3):
            yield Route(method, path, rng.choice(["relay", "admin", "session", "none"])), method, b"{}", {}
    for route in rng.sample(table, 12):
        for headers in ({"Authorization": "Bearer " + "x" * 10_000}, {"Authorization": "Basic \u00e9\u00e9".encode()},
                        {"Authorization": ("Bearer sk-" + "\u00e9" * 48).encode()},
                        {"Cookie": "tokenway_session=" + "a" * 5000}, {"X-Forwarded-For": "not, an, address, " * 100},
                        {"X-CSRF-Token": "x" * 5000}):
            yield Route(route.method, route.path, "none", route.template), route.method, b"{}", headers


@pytest.fixture
def world(stack: Stack, upstream) -> Iterator[tuple[Stack, dict[str, str], dict[str, str]]]:
    """Who sends the fuzz: a funded customer (relay key, session, a key to fuzz), a second one whose
    session and key the destructive routes use up, an account for the admin routes; served by the
    app with the default key and catalog caches, as a container runs it."""
    previous = deps.get_gateway()
    deps.use_gateway(deps.build_gateway(stack.settings.model_copy(update={"key_cache_ttl_s": 5,
                                                                          "catalog_cache_ttl_s": 5})))
    try:
        yield _world(stack)
    finally:
        deps.use_gateway(previous)


def _world(stack: Stack) -> tuple[Stack, dict[str, str], dict[str, str]]:
    main, victim = Customer(stack, usd="5"), Customer(stack, usd="0")
    relay_key = main.new_key()["key"]
    ids = {"account": stack.customer("0")[0], "key": main.new_key()["id"], "victim_key": victim.new_key()["id"]}
    credentials = {"relay": f"Bearer {relay_key}", "session": f"Bearer {main.session}",
                   "victim": f"Bearer {victim.session}", "admin": f"Bearer {ADMIN_TOKEN}"}
    return stack, ids, credentials


def test_a_thousand_malformed_requests_get_no_5xx_and_only_envelopes(world):
    stack, ids, credentials = world
    from app import app

    table = routes(ids)
    secrets = [value.split(" ", 1)[1] for value in credentials.values()]
    failures, statuses, sent = [], {}, 0
    with in_process(app, client_ip=FUZZ_PEER) as client:
        for route, method, body, extra in generate(table, random.Random(SEED)):
            headers = {"Authorization": credentials[route.auth]} if route.auth in credentials else {}
            headers.update(extra)
            try:
                response = client.request(method, route.path, content=body, headers=headers)
            except httpx.HTTPError as exc:
                failures.append((method, route.path, body[:80], f"transport: {exc}"))
                continue
            sent += 1
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            problem = _problem(response, method, secrets)
            if problem:
                failures.append((method, route.path, body[:80], problem))
    assert not failures, f"{len(failures)} of {sent}: {failures[:10]}"
    assert sent >= 1000
    assert statuses.get(400, 0) > 400, statuses  # most are refused as bad input, not for want of a credential
    served = {(r.method, r.path.split("?")[0]) for r in table}
    assert len(served) == len(table)  # every route of the table was fuzzed


def _problem(response: httpx.Response, method: str, secrets: list[str]) -> str | None:
    if response.status_code >= 500:
        return f"{response.status_code}: {response.text[:300]}"
    shown = response.text + json.dumps(dict(response.headers))
    if any(secret in shown for secret in secrets):
        return "a credential it was sent is in the answer"
    if response.status_code < 400 or method == "HEAD":
        return None
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return f"{response.status_code} not in the envelope: {response.text[:300]}"
    if set(error) != {"message", "type", "param", "code"} or not error["message"]:
        return f"{response.status_code} not in the envelope: {response.text[:300]}"
    return None
