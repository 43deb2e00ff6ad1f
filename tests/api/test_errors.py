"""Bad input and upstream faults over HTTP: the right status, the OpenAI envelope, no charge."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from chalicelib import deps
from devstack.emulator import provision
from tests.api.conftest import ADMIN_TOKEN, Stack, configure_catalog
from tests.api.test_server import usage_event
from tests.conftest import TEMPLATE
from tests.fakes import upstream as faults

HELLO = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "Hello"}]}


def post(stack: Stack, key: str | None, body=None, *, path="/v1/chat/completions", content=None, headers=None,
         http: httpx.Client | None = None):
    """POST in process, or through `http` (a socket client for streams)."""
    headers = dict(headers or {})
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return (http or stack.http).post(path, json=body if content is None else None, content=content, headers=headers)


def over_socket(stack: Stack) -> httpx.Client:
    return httpx.Client(base_url=stack.url, timeout=30)


def assert_envelope(response: httpx.Response, status: int, *, type: str | None = None, code: str | None = None,
                    param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert "Traceback" not in response.text
    if response.url.path.startswith(("/v1/", "/chat/")):
        assert response.headers["x-tokenway-cost-usd"] == "0.00"
    if type:
        assert error["type"] == type
    if code:
        assert error["code"] == code
    if param:
        assert error["param"] == param
    return error


def assert_untouched(stack: Stack, account_id: str, usd: str) -> None:
    wallet = stack.wallet(account_id)
    assert (wallet["balance_usd"], wallet["held_usd"]) == (usd, "0.00")


@pytest.mark.parametrize("header", [None, "Bearer", "Token abc", "Bearer sk-" + "x" * 48, "Bearer not-a-key"])
def test_a_missing_malformed_or_unknown_key_is_401(stack, header):
    response = stack.http.post("/v1/chat/completions", json=HELLO,
                               headers={"Authorization": header} if header else {})
    assert_envelope(response, 401, code="invalid_api_key")


def test_a_revoked_key_is_401(stack):
    _, key = stack.customer("1")
    keys_table = stack.outputs["KeysTableName"]
    from chalicelib.keys.auth import KeyHasher

    stack.aws("dynamodb").update_item(
        TableName=keys_table, Key={"key_hash": {"S": KeyHasher()(key)}},
        UpdateExpression="SET #s = :revoked", ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":revoked": {"S": "revoked"}})
    assert_envelope(post(stack, key, HELLO), 401, code="api_key_revoked")


@pytest.mark.parametrize("content, param", [
    (b"{not json", None),
    (b"", None),
    (b"[1, 2]", None),
    (b'{"messages": [{"role": "user", "content": "hi"}]}', "model"),
    (b'{"model": "deepseek-chat"}', "messages"),
    (b'{"model": "deepseek-chat", "messages": "hi"}', "messages"),
    (b'{"model": 5, "messages": [{"role": "user", "content": "hi"}]}', "model"),
    (b'{"model": "deepseek-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": "9"}',
     "max_tokens"),
])
def test_a_bad_body_is_400_naming_the_parameter(stack, content, param):
    account_id, key = stack.customer("1")
    error = assert_envelope(post(stack, key, content=content, headers={"Content-Type": "application/json"}), 400,
                            type="invalid_request_error")
    assert error["param"] == param
    assert_untouched(stack, account_id, "1.00")


def test_curl_style_form_content_type_is_still_read_as_json(stack, upstream):
    _, key = stack.customer("1")
    import json

    response = post(stack, key, content=json.dumps(HELLO).encode(),
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200, response.text


def test_a_body_over_the_limit_is_413(stack):
    _, key = stack.customer("1")
    big = b'{"model": "deepseek-chat", "messages": [{"role": "user", "content": "' + \
        b"a" * stack.settings.max_body_bytes + b'"}]}'
    assert_envelope(post(stack, key, content=big), 413, code="request_too_large")


def test_an_unknown_or_unroutable_model_is_404(stack):
    _, key = stack.customer("1")
    assert_envelope(post(stack, key, {**HELLO, "model": "no-such-model"}), 404, code="model_not_found",
                    param="model")
    assert_envelope(post(stack, key, {**HELLO, "model": "claude-sonnet"}), 404, code="model_not_found")


def test_a_wallet_that_cannot_afford_a_minimal_request_is_402(stack, upstream):
    account_id, key = stack.customer("0")
    assert_envelope(post(stack, key, HELLO), 402, type="insufficient_quota", code="insufficient_quota")
    assert upstream.requests == []
    assert_untouched(stack, account_id, "0.00")


def test_an_upstream_4xx_is_passed_on_and_costs_nothing(stack, upstream):
    account_id, key = stack.customer("1")
    upstream.fail_next(faults.http_error(400, "temperature must be <= 2", param="temperature"))
    error = assert_envelope(post(stack, key, {**HELLO, "temperature": 9}), 400, param="temperature")
    assert error["message"] == "temperature must be <= 2"
    assert_untouched(stack, account_id, "1.00")


@pytest.mark.parametrize("fault, status", [
    (faults.http_error(500, "internal"), 502),
    (faults.http_error(503, "overloaded"), 502),
    (faults.malformed(), 502),
    (faults.close(), 502),
])
def test_upstream_failures_are_502_and_cost_nothing(stack, upstream, fault, status):
    account_id, key = stack.customer("1")
    upstream.fail_next(fault)
    assert_envelope(post(stack, key, HELLO), status, type="upstream_error")
    assert_untouched(stack, account_id, "1.00")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_refused_connection_is_502_and_a_timeout_504(stack, upstream):
    account_id, key = stack.customer("1")
    stack.admin("POST", "/admin/channels", {"name": "dead", "base_url": f"http://127.0.0.1:{_free_port()}/v1",
                                            "api_key": "k"})
    stack.admin("POST", "/admin/models", {"name": "dead-model", "channel": "dead", "input_per_1m": "1",
                                          "output_per_1m": "1"})
    assert_envelope(post(stack, key, {**HELLO, "model": "dead-model"}), 502, code="upstream_unavailable")

    stack.admin("POST", "/admin/models", {"name": "slow-model", "channel": "fake", "upstream_model": "slow",
                                          "input_per_1m": "1", "output_per_1m": "1", "timeout_s": 0.5})
    upstream.fail_next(faults.delay(2))
    assert_envelope(post(stack, key, {**HELLO, "model": "slow-model"}), 504, code="upstream_timeout")
    assert_untouched(stack, account_id, "1.00")


@pytest.mark.parametrize("served", ["streamed", "joined"])
def test_a_stream_cut_midway_ends_with_an_error_event_and_charges_what_was_delivered(stack, upstream, served):
    account_id, key = stack.customer("1")
    upstream.fail_next(faults.cut_stream(after_chunks=2))
    # Streamed by the one-machine server, or joined into one body as on Lambda (in process).
    response = post(stack, key, {**HELLO, "stream": True}, http=over_socket(stack) if served == "streamed" else None)
    assert response.status_code == 200
    events = [e for e in response.text.split("\n\n") if e]
    assert '"error"' in events[-1] and "[DONE]" not in response.text
    wallet = stack.wallet(account_id)
    assert wallet["held_usd"] == "0.00"
    spent = Decimal("1") - Decimal(wallet["balance_usd"])
    # Charged for the two chunks delivered, as recorded: not nothing, not the whole hold.
    event = usage_event(stack, response.headers["x-request-id"])
    assert spent > 0 and Decimal(event["cost_usd"]) == spent and event["status"] == 502
    if served == "joined":
        assert Decimal(response.headers["x-tokenway-cost-usd"]) == spent
    else:  # the headers went out before the stream was settled
        assert "x-tokenway-cost-usd" not in response.headers


@pytest.mark.parametrize("served", ["streamed", "joined"])
def test_a_stream_that_fails_before_it_starts_is_an_error_response(stack, upstream, served):
    account_id, key = stack.customer("1")
    upstream.fail_next(faults.http_error(500, "down"))
    http = over_socket(stack) if served == "streamed" else None
    assert_envelope(post(stack, key, {**HELLO, "stream": True}, http=http), 502)
    assert_untouched(stack, account_id, "1.00")


def test_admin_routes_need_the_admin_token(stack):
    response = stack.http.post("/admin/accounts", json={"email": "x@example.com"},
                               headers={"Authorization": "Bearer wrong"})
    assert_envelope(response, 401, code="invalid_admin_token")
    _, key = stack.customer("1")
    response = stack.http.get("/admin/accounts/x/wallet", headers={"Authorization": f"Bearer {key}"})
    assert_envelope(response, 401)


def test_a_relay_request_that_ends_in_5xx_is_logged_with_its_request_id(stack, upstream, caplog):
    _, key = stack.customer("1")
    upstream.fail_next(faults.http_error(503, "overloaded"))
    with caplog.at_level(logging.WARNING):
        response = post(stack, key, HELLO)
    assert_envelope(response, 502, code="upstream_unavailable")
    request_id = response.headers["x-request-id"]
    assert [r for r in caplog.records if request_id in r.getMessage() and "UpstreamUnavailable" in r.getMessage()]


@pytest.fixture
def holds_table_gone(stack, upstream) -> Iterator[Stack]:
    """The app on tables of its own whose holds table is gone: every hold fails in storage."""
    prefix = "apibroken"
    outputs = provision(stack.emulator.client, TEMPLATE, prefix)
    stack.aws("dynamodb").delete_table(TableName=outputs["HoldsTableName"])
    previous = deps.get_gateway()
    deps.use_gateway(deps.build_gateway(stack.settings.model_copy(update={"resource_prefix": prefix})))
    try:
        configure_catalog(stack)
        yield stack
    finally:
        deps.use_gateway(previous)


def test_a_storage_failure_during_the_hold_is_503_and_logged_with_the_request_id(holds_table_gone, caplog):
    stack = holds_table_gone
    _, key = stack.customer("1")
    with caplog.at_level(logging.WARNING):
        response = post(stack, key, HELLO)
    assert_envelope(response, 503, code="storage_unavailable")
    request_id = response.headers["x-request-id"]
    [logged] = [r for r in caplog.records if request_id in r.getMessage()]
    assert "StorageError" in logged.getMessage() and logged.exc_info  # with the storage failure as its cause


@pytest.mark.parametrize("content", [
    b'{"model": "deepseek-chat", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
    b'{"model": "deepseek-chat", "messages": [{"role": "user", "content": "hi"}], "temperature": Infinity}',
    b'{"model": "deepseek-chat", "messages": [{"role": "user", "content": "hi"}], "top_p": -Infinity}',
    b'{"model": "deepseek-chat", "messages": [{"role": "user", "content": "hi"}], "temperature": 1e309}',
])
def test_nan_and_infinity_are_not_json_and_never_reach_the_upstream(stack, upstream, content):
    account_id, key = stack.customer("1")
    error = assert_envelope(post(stack, key, content=content), 400, type="invalid_request_error")
    assert error["code"] == "invalid_json_number"
    assert upstream.requests == []
    assert_untouched(stack, account_id, "1.00")


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def _with(template: str, levels: int) -> str:
    return template.replace("DEEP", _deep(levels))


@pytest.mark.parametrize("path, content, param", [
    ("/v1/chat/completions", _deep(10_000), None),
    ("/v1/chat/completions",
     _with('{"model": "deepseek-chat", "messages": [{"role": "user", "content": DEEP}]}', 450), "messages"),
    ("/v1/embeddings", _with('{"model": "text-embedding-3-small", "input": DEEP}', 65), "input"),
    ("/images/generations", _with('{"model": "dall-e-3", "prompt": "x", "style": {"a": DEEP}}', 64), "style"),
    ("/api/auth/login", _with('{"email": DEEP, "password": "x"}', 10_000), "email"),
    ("/api/auth/signup", _deep(100), None),
])
def test_json_nested_deeper_than_64_levels_is_400_naming_the_field(stack, upstream, path, content, param):
    _, key = stack.customer("1")
    response = post(stack, key, content=content.encode(), path=path, headers={"Content-Type": "application/json"})
    error = assert_envelope(response, 400, type="invalid_request_error", code="json_too_deep")
    assert error["param"] == param and "64 levels" in error["message"]
    assert upstream.requests == []


def test_json_nested_64_levels_deep_is_read(stack, upstream):
    _, key = stack.customer("1")
    body = _with('{"model": "deepseek-chat", "messages": [{"role": "user", "content": "hi"}], "x": DEEP}', 62)
    assert post(stack, key, content=body.encode()).status_code == 200


@pytest.mark.parametrize("field, value", [
    ("quota_usd", "1e30"), ("quota_usd", 10**24), ("quota_usd", "1000000000.000000001"), ("quota_usd", "1e-999999999"),
])
def test_a_key_quota_beyond_the_bounds_is_400_naming_the_field(stack, field, value):
    account_id, _ = stack.customer("0")
    response = stack.http.post(f"/admin/accounts/{account_id}/keys", json={"name": "k", field: value},
                               headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert_envelope(response, 400, param=field)


@pytest.mark.parametrize("path, body, param", [
    ("/admin/accounts/{account}/credit", {"amount_usd": "1e300"}, "amount_usd"),
    ("/admin/accounts/{account}/credit", {"amount_usd": 10**25}, "amount_usd"),
    ("/admin/accounts/{account}/credit", {"amount_usd": "1000000001"}, "amount_usd"),
    ("/admin/groups", {"name": "huge", "multiplier": "1e300"}, "multiplier"),
    ("/admin/groups", {"name": "huge", "multiplier": 10**25}, "multiplier"),
    ("/admin/groups", {"name": "huge", "multiplier": "1000.000001"}, "multiplier"),
    ("/admin/models", {"name": "m", "channel": "fake", "input_per_1m": "1e30"}, "input_per_1m"),
])
def test_admin_amounts_and_multipliers_beyond_the_bounds_are_400(stack, path, body, param):
    account_id, _ = stack.customer("0")
    response = stack.http.post(path.format(account=account_id), json=body,
                               headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert_envelope(response, 400, param=param)
