"""Upstream channel keys through the whole gateway: sealed with the template's KMS key (moto), shown only
as a hint by the admin API and the CLI, never logged, and sent to the upstream alone."""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import subprocess
import sys
from typing import Any

import httpx
import pytest

from tests.api.conftest import ADMIN_TOKEN, PREFIX, Stack
from tests.conftest import ROOT

CATALOG = f"{PREFIX}-catalog"
HELLO = {"messages": [{"role": "user", "content": "Hello"}]}


def upstream_key() -> str:
    return f"sk-up{secrets.token_urlsafe(32)}wxyz"


def add_channel(stack: Stack, name: str, key: str) -> dict[str, Any]:
    return stack.admin("POST", "/admin/channels", {"name": name, "base_url": stack.upstream.base_url, "api_key": key})


def add_model(stack: Stack, name: str, channel: str) -> None:
    stack.admin("POST", "/admin/models", {"name": name, "channel": channel, "input_per_1m": "0.1",
                                          "output_per_1m": "0.2"})


def chat(stack: Stack, key: str, model: str) -> httpx.Response:
    return stack.http.post("/v1/chat/completions", json={"model": model, **HELLO},
                      headers={"Authorization": f"Bearer {key}"}, timeout=30)


def raw_channel(stack: Stack, name: str) -> dict[str, Any]:
    return stack.aws("dynamodb").get_item(TableName=CATALOG,
                                          Key={"kind": {"S": "channel"}, "name": {"S": name}})["Item"]


def unavailable_reports(caplog: pytest.LogCaptureFixture, channel: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.ERROR and f"channel `{channel}` is unavailable" in r.getMessage()]


def test_the_admin_api_and_the_cli_show_a_channel_key_only_as_a_hint(stack):
    key = upstream_key()
    response = stack.http.post("/admin/channels", json={"name": "hinted", "base_url": stack.upstream.base_url,
                                                               "api_key": key},
                          headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)
    assert response.status_code == 201
    assert response.json() == {"name": "hinted", "base_url": stack.upstream.base_url, "kind": "openai",
                               "api_key_hint": "sk-up…wxyz", "header_names": []}
    assert key[5:-4] not in response.text
    assert add_channel(stack, "hinted-short", "up-key")["api_key_hint"] == "…"  # too short to show any of it
    assert add_channel(stack, "hinted-medium", "0123456789-wxyz")["api_key_hint"] == "…wxyz"

    cli_key = upstream_key()
    done = subprocess.run(
        [sys.executable, "-m", "tokenway_cli.main", "channel", "add", "hinted-cli", "--base-url",
         stack.upstream.base_url, "--api-key", cli_key],
        cwd=ROOT, env={**os.environ, "TOKENWAY_URL": stack.url, "TOKENWAY_ADMIN_TOKEN": ADMIN_TOKEN},
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["api_key_hint"] == "sk-up…wxyz"
    assert cli_key[5:-4] not in done.stdout + done.stderr


def test_a_relay_call_sends_the_channel_key_upstream_and_no_log_holds_it(stack, upstream, caplog):
    key = upstream_key()
    caplog.set_level(logging.DEBUG)  # every logger, botocore's request and response bodies included
    add_channel(stack, "logged", key)
    add_model(stack, "logged-model", "logged")
    _, customer = stack.customer("1")
    assert chat(stack, customer, "logged-model").status_code == 200

    assert upstream.requests[-1].headers["authorization"] == f"Bearer {key}"
    assert caplog.records  # the capture saw the gateway's and the AWS clients' logging
    assert key[5:-4] not in caplog.text
    item = raw_channel(stack, "logged")
    assert "api_key" not in item and item["api_key_wrapped_by"] == {"S": "kms"}


def test_a_channel_whose_stored_key_was_altered_is_unavailable_not_a_server_error(stack, upstream, caplog):
    key = upstream_key()
    add_channel(stack, "tampered", key)
    add_model(stack, "tampered-model", "tampered")
    _, customer = stack.customer("1")
    assert chat(stack, customer, "tampered-model").status_code == 200

    item = raw_channel(stack, "tampered")
    sealed = bytearray(base64.b64decode(item["api_key_sealed"]["S"]))
    sealed[-1] ^= 0x01
    item["api_key_sealed"] = {"S": base64.b64encode(bytes(sealed)).decode()}
    stack.aws("dynamodb").put_item(TableName=CATALOG, Item=item)
    upstream.reset()

    with caplog.at_level(logging.ERROR):
        response = chat(stack, customer, "tampered-model")
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "model_not_found"
    assert upstream.requests == []
    (report,) = unavailable_reports(caplog, "tampered")
    assert "it was altered" in report and key[5:-4] not in caplog.text

    # The way back the log points to: add the channel again.
    add_channel(stack, "tampered", key)
    assert chat(stack, customer, "tampered-model").status_code == 200
    assert upstream.requests[-1].headers["authorization"] == f"Bearer {key}"


def test_a_key_moved_from_another_channel_does_not_open_and_the_model_falls_back(stack, upstream, caplog):
    first_key, second_key = upstream_key(), upstream_key()
    add_channel(stack, "moved-to", first_key)
    add_channel(stack, "moved-from", second_key)
    add_model(stack, "moved-model", "moved-to")
    add_model(stack, "moved-model", "moved-from")  # the fallback route
    donor = raw_channel(stack, "moved-from")
    stack.aws("dynamodb").put_item(TableName=CATALOG, Item={**raw_channel(stack, "moved-to"), **{
        name: donor[name] for name in ("api_key_sealed", "api_key_data_key", "api_key_wrapped_by")}})
    _, customer = stack.customer("1")

    with caplog.at_level(logging.ERROR):
        assert chat(stack, customer, "moved-model").status_code == 200
    # Served by the fallback, with its own key: the moved copy opened for no one.
    assert [r.headers["authorization"] for r in upstream.requests] == [f"Bearer {second_key}"]
    (report,) = unavailable_reports(caplog, "moved-to")
    assert "copied from another owner" in report


@pytest.mark.parametrize("bad", ["sk-abc\nX-Injected: 1", "sk abc", "sk-ключ"])
def test_a_channel_key_that_cannot_be_a_header_is_refused_without_echoing_it(stack, bad):
    response = stack.http.post("/admin/channels", json={"name": "bad-key", "base_url": stack.upstream.base_url,
                                                               "api_key": bad},
                          headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "api_key" and error["type"] == "invalid_request_error"
    assert bad not in response.text
