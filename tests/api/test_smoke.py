"""`tokenway smoke` against the running gateway (streams as they come), the gateway in process (streams joined,
as API Gateway buffers them), and targets that fail."""

from __future__ import annotations

import io
import re
from decimal import Decimal

import pytest

from tests.api.conftest import ADMIN_TOKEN, Stack
from tests.api.test_admin_bootstrap import tokenway
from tests.api.test_sqlite_gateway import on_sqlite  # noqa: F401 (a fixture)
from tests.fakes.upstream import http_error
from tokenway_cli.main import main

CHECKS = ["account", "credit", "key", "models", "chat", "stream", "console", "cleanup"]
LINE = re.compile(r"^(ok|FAIL) +(\d+\.\d{3}) s  (\w+) +(.*)$")


def _lines(stdout: str) -> list[tuple[str, str, str]]:
    """(ok or FAIL, check, detail) of each check's line, each line checked for its time."""
    found = []
    for line in stdout.splitlines()[1:]:
        match = LINE.match(line)
        if match:
            found.append((match[1], match[3], match[4]))
    return found


def _smoke_account(stack: Stack, stdout: str) -> dict:
    email = re.search(r"smoke-[0-9a-f]{12}@smoke\.invalid", stdout)[0]
    [account] = stack.admin("GET", f"/admin/accounts?search={email}")["data"]
    return account


def _charged(detail: str) -> Decimal:
    return Decimal(re.search(r"charged \$([0-9.]+)", detail)[1])


def test_a_healthy_stage_passes_every_check_and_is_left_clean(stack: Stack, upstream):
    done = tokenway(stack, "smoke", "--model", "deepseek-chat")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = _lines(done.stdout)
    assert [(status, check) for status, check, _ in lines] == [("ok", check) for check in CHECKS]
    assert done.stdout.startswith(f"Tokenway smoke test of {stack.url}\n")
    assert done.stdout.endswith("every check passed\n") and done.stderr == ""
    details = {check: detail for _, check, detail in lines}
    assert "calling deepseek-chat" in details["models"]
    stream = re.search(r"(\d+) events; the first after (\d+\.\d+) s of (\d+\.\d+) s", details["stream"])
    assert int(stream[1]) >= 2 and float(stream[2]) <= float(stream[3])

    # What it made is left disabled, its key revoked, and the wallet paid exactly the two answers' costs.
    account = _smoke_account(stack, done.stdout)
    assert (account["status"], account["password_set"]) == ("disabled", True)
    assert stack.admin("GET", f"/admin/accounts/{account['account_id']}/keys")["data"] == []
    spent = _charged(details["chat"]) + _charged(details["stream"])
    assert spent > 0
    assert Decimal(stack.wallet(account["account_id"])["balance_usd"]) == Decimal("0.10") - spent
    assert "sk-" not in done.stdout and ADMIN_TOKEN not in done.stdout


def test_behind_a_buffering_front_the_stream_is_one_body_and_its_cost_is_the_header(stack: Stack, upstream):
    out, err = io.StringIO(), io.StringIO()
    status = main(["--url", "http://gateway.test", "--admin-token", ADMIN_TOKEN, "smoke", "--model", "deepseek-chat"],
                  http=stack.http, environ={}, stdout=out, stderr=err)
    assert status == 0, out.getvalue() + err.getvalue()
    assert [check for status, check, _ in _lines(out.getvalue()) if status == "ok"] == CHECKS


def test_one_machine_storage_passes_every_check_too(request: pytest.FixtureRequest):
    stack: Stack = request.getfixturevalue("on_sqlite")  # the app on a SQLite data directory of its own
    out, err = io.StringIO(), io.StringIO()
    status = main(["smoke", "--url", "http://gateway.test", "--admin-token", ADMIN_TOKEN, "--model", "deepseek-chat"],
                  http=stack.http, environ={}, stdout=out, stderr=err)
    assert status == 0, out.getvalue() + err.getvalue()
    assert [check for status, check, _ in _lines(out.getvalue()) if status == "ok"] == CHECKS


def test_without_a_model_it_calls_the_cheapest_chat_model_the_key_lists(stack: Stack, upstream):
    done = tokenway(stack, "smoke")
    catalog = {m["name"]: m for m in stack.admin("GET", "/admin/models")["data"]}
    account_id, key = stack.customer("0")
    listed = [m["id"] for m in stack.http.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).json()["data"]]
    chat = [catalog[name] for name in listed if catalog[name]["kind"] == "chat"]
    cheapest = min(chat, key=lambda m: (Decimal(m["input_per_1m"]) + Decimal(m["output_per_1m"]), m["name"]))
    details = {check: (status, detail) for status, check, detail in _lines(done.stdout)}
    assert details["models"] == ("ok", f"{len(listed)} listed; calling {cheapest['name']}")
    assert details["cleanup"][0] == "ok"


def test_a_wrong_admin_token_fails_the_first_check_with_the_gateways_message(stack: Stack):
    done = tokenway(stack, "smoke", token="not-the-admin-token")
    assert done.returncode == 1
    assert [(status, check) for status, check, _ in _lines(done.stdout)] == [("FAIL", "account"), ("ok", "cleanup")]
    details = {check: detail for _, check, detail in _lines(done.stdout)}
    assert details["account"] == "POST /admin/accounts: Invalid admin token. (HTTP 401)"
    assert details["cleanup"] == "nothing was made"
    assert done.stderr == "error: the smoke test failed at account\n"
    assert "not-the-admin-token" not in done.stdout + done.stderr


def test_a_failing_upstream_stops_the_checks_and_the_cleanup_still_runs(stack: Stack, upstream):
    upstream.fail_next(http_error(400, "scripted refusal"), path="/chat/completions")
    done = tokenway(stack, "smoke", "--model", "deepseek-chat")
    assert done.returncode == 1
    lines = _lines(done.stdout)
    assert [(status, check) for status, check, _ in lines] == [
        ("ok", "account"), ("ok", "credit"), ("ok", "key"), ("ok", "models"), ("FAIL", "chat"), ("ok", "cleanup")]
    assert "scripted refusal" in lines[4][2] and "(HTTP 400)" in lines[4][2]
    account = _smoke_account(stack, done.stdout)
    assert account["status"] == "disabled"
    assert stack.admin("GET", f"/admin/accounts/{account['account_id']}/keys")["data"] == []
    # A refused call costs nothing.
    assert stack.wallet(account["account_id"])["balance_usd"] == "0.10"


def test_a_model_the_key_does_not_list_fails_the_models_check(stack: Stack):
    done = tokenway(stack, "smoke", "--model", "no-such-model")
    assert done.returncode == 1
    lines = _lines(done.stdout)
    assert [(status, check) for status, check, _ in lines][-2:] == [("FAIL", "models"), ("ok", "cleanup")]
    assert lines[-2][2].startswith("no-such-model is not among the ")
    assert _smoke_account(stack, done.stdout)["status"] == "disabled"


def test_an_unreachable_stage_fails_at_once(stack: Stack):
    out, err = io.StringIO(), io.StringIO()
    status = main(["smoke", "--url", "http://127.0.0.1:9", "--admin-token", ADMIN_TOKEN], environ={}, stdout=out,
                  stderr=err)
    assert status == 1
    [(outcome, check, detail), cleanup] = _lines(out.getvalue())
    assert (outcome, check) == ("FAIL", "account") and detail.startswith("cannot reach http://127.0.0.1:9/admin/accounts")
    assert cleanup == ("ok", "cleanup", "nothing was made")


def test_the_relay_is_called_at_the_relay_url_and_the_admin_api_at_the_url(stack: Stack):
    done = tokenway(stack, "smoke", "--relay-url", "http://127.0.0.1:9")
    assert done.returncode == 1
    lines = _lines(done.stdout)
    assert [(status, check) for status, check, _ in lines] == [
        ("ok", "account"), ("ok", "credit"), ("ok", "key"), ("FAIL", "models"), ("ok", "cleanup")]
    assert lines[3][2].startswith("cannot reach http://127.0.0.1:9/v1/models")
