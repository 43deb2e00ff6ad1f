"""A new stage's first admin (`tokenway admin bootstrap`, `POST /admin/admins`), the catalog as the operator
reads it (`GET /admin/models`), and an operator revoking a customer's key."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.api.conftest import ADMIN_TOKEN, Stack
from tests.api.test_cli import TOKENWAY
from tests.api.test_sqlite_gateway import on_sqlite  # noqa: F401 (a fixture)
from tests.api.test_tokens_api import PASSWORD, Customer
from tests.conftest import ROOT

NEW_PASSWORD = "first-admin-2026"


def tokenway(stack: Stack, *args: str, token: str = ADMIN_TOKEN) -> subprocess.CompletedProcess:
    """The installed command, running this checkout's code, with the URL and the admin token after the command."""
    env = {**{name: value for name, value in os.environ.items() if not name.startswith("TOKENWAY_")},
           "PYTHONPATH": str(ROOT)}
    return subprocess.run([str(TOKENWAY), *args, "--url", stack.url, "--admin-token", token],
                          cwd=tempfile.gettempdir(), env=env, capture_output=True, text=True, timeout=120)


def cli(stack: Stack, *args: str) -> dict:
    done = tokenway(stack, *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _grant(stack: Stack, email: str, token: str = ADMIN_TOKEN) -> httpx.Response:
    return stack.http.post("/admin/admins", json={"email": email}, headers={"Authorization": f"Bearer {token}"})


def _set_password_and_log_in(stack: Stack, link: dict, email: str) -> str:
    token = link["url"].split("#/set-password?token=", 1)[1]
    assert token == link["token"]
    assert stack.http.post("/api/auth/password/set", json={"token": token, "password": NEW_PASSWORD}).status_code == 204
    login = stack.http.post("/api/auth/login", json={"email": email, "password": NEW_PASSWORD})
    assert login.status_code == 200, login.text
    return login.json()["token"]


def _account(stack: Stack, email: str) -> dict:
    [found] = [a for a in stack.admin("GET", f"/admin/accounts?search={email}")["data"] if a["email"] == email]
    return found


def test_the_first_admin_is_created_with_a_link_that_sets_its_password_and_opens_the_admin_api(stack: Stack):
    email = f"first-admin-{uuid.uuid4().hex[:8]}@example.com"
    response = _grant(stack, f"  {email.upper()} ")
    assert response.status_code == 201, response.text
    assert response.headers["Cache-Control"] == "no-store"
    granted = response.json()
    assert (granted["email"], granted["role"], granted["status"]) == (email, "admin", "active")
    assert (granted["created"], granted["promoted"], granted["password_set"]) == (True, True, False)
    assert "/#/set-password?token=" in granted["password_link"]["url"]

    session = _set_password_and_log_in(stack, granted["password_link"], email)
    me = stack.http.get("/api/auth/me", headers={"Authorization": f"Bearer {session}"}).json()
    assert (me["account_id"], me["role"]) == (granted["account_id"], "admin")
    # The session alone, without the admin token, is an operator's.
    models = stack.http.get("/admin/models", headers={"Authorization": f"Bearer {session}"})
    assert models.status_code == 200 and models.json()["data"]


def test_running_it_again_keeps_the_one_admin_and_gives_a_new_link_that_replaces_the_last(stack: Stack):
    email = f"again-{uuid.uuid4().hex[:8]}@example.com"
    first = _grant(stack, email).json()
    again = _grant(stack, email)
    assert again.status_code == 200, again.text
    second = again.json()
    assert second["account_id"] == first["account_id"]
    assert (second["role"], second["created"], second["promoted"]) == ("admin", False, False)
    assert second["password_link"]["token"] != first["password_link"]["token"]
    stale = stack.http.post("/api/auth/password/set", json={"token": first["password_link"]["token"],
                                                            "password": NEW_PASSWORD})
    assert stale.status_code == 400 and stale.json()["error"]["code"] == "invalid_token"
    _set_password_and_log_in(stack, second["password_link"], email)
    assert [a["role"] for a in stack.admin("GET", f"/admin/accounts?search={email}")["data"]] == ["admin"]


def test_runs_at_once_for_a_new_email_end_on_one_admin_account(stack: Stack):
    email = f"race-{uuid.uuid4().hex[:8]}@example.com"

    def grant(_: int) -> httpx.Response:
        return httpx.post(f"{stack.url}/admin/admins", json={"email": email},
                          headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(grant, range(8)))
    assert all(answer.status_code in (200, 201) for answer in answers), [a.text for a in answers]
    granted = [answer.json() for answer in answers]
    assert len({g["account_id"] for g in granted}) == 1
    assert sum(g["created"] for g in granted) == 1
    assert {g["role"] for g in granted} == {"admin"}
    assert [a["account_id"] for a in stack.admin("GET", f"/admin/accounts?search={email}")["data"]] == \
        [granted[0]["account_id"]]


def test_an_existing_customer_is_promoted_and_keeps_its_account_wallet_and_password(stack: Stack):
    customer = Customer(stack, usd="2")
    granted = _grant(stack, customer.email).json()
    assert granted["account_id"] == customer.account_id
    assert (granted["created"], granted["promoted"], granted["role"]) == (False, True, "admin")
    assert stack.wallet(customer.account_id)["balance_usd"] == "2.00"
    login = stack.http.post("/api/auth/login", json={"email": customer.email, "password": PASSWORD})
    assert login.json()["account"]["role"] == "admin"


def test_a_disabled_account_is_refused_and_left_as_it_was(stack: Stack):
    customer = Customer(stack, usd="0")
    stack.admin("PATCH", f"/admin/accounts/{customer.account_id}", {"status": "disabled"})
    refused = _grant(stack, customer.email)
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert (error["code"], error["param"]) == ("account_disabled", "email")
    assert customer.account_id in error["message"] and "enable" in error["message"]
    assert (_account(stack, customer.email)["role"], _account(stack, customer.email)["status"]) == ("customer",
                                                                                                     "disabled")


def test_a_bad_email_or_admin_token_is_refused_and_nothing_is_made(stack: Stack):
    bad = _grant(stack, "not-an-email")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "email"
    email = f"intruder-{uuid.uuid4().hex[:8]}@example.com"
    denied = _grant(stack, email, token="wrong")
    assert denied.status_code == 401 and denied.json()["error"]["code"] == "invalid_admin_token"
    assert stack.admin("GET", f"/admin/accounts?search={email}")["data"] == []


def test_the_cli_bootstraps_an_admin_with_the_url_after_the_command_and_refuses_a_disabled_account(stack: Stack):
    email = f"cli-admin-{uuid.uuid4().hex[:8]}@example.com"

    def bootstrap() -> subprocess.CompletedProcess:
        return tokenway(stack, "admin", "bootstrap", "--email", email)

    done = bootstrap()
    assert done.returncode == 0, done.stderr
    first = json.loads(done.stdout)
    assert (first["email"], first["role"], first["created"]) == (email, "admin", True)
    assert first["password_link"]["url"].startswith(stack.settings.console_url.rstrip("/") + "/#/set-password?token=")
    rerun = json.loads(bootstrap().stdout)
    assert (rerun["account_id"], rerun["created"], rerun["promoted"]) == (first["account_id"], False, False)

    cli(stack, "account", "disable", first["account_id"])
    refused = bootstrap()
    assert refused.returncode == 1 and refused.stdout == ""
    assert "is disabled" in refused.stderr and "(HTTP 409)" in refused.stderr


def test_the_operator_lists_the_catalog_with_prices_and_revokes_a_key(stack: Stack, upstream):
    models = {model["name"]: model for model in cli(stack, "model", "list")["data"]}
    assert (models["deepseek-chat"]["kind"], models["deepseek-chat"]["input_per_1m"]) == ("chat", "0.28")

    account_id, key = stack.customer("1")
    key_id = stack.admin("GET", f"/admin/accounts/{account_id}/keys")["data"][0]["id"]
    hello = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "Hello"}]}
    relay = {"Authorization": f"Bearer {key}"}
    assert stack.http.post("/v1/chat/completions", json=hello, headers=relay).status_code == 200
    assert cli(stack, "key", "revoke", account_id, key_id) == {"account_id": account_id, "key_id": key_id,
                                                               "status": "revoked"}
    assert stack.http.post("/v1/chat/completions", json=hello, headers=relay).status_code == 401
    assert stack.admin("GET", f"/admin/accounts/{account_id}/keys")["data"] == []

    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    again = stack.http.delete(f"/admin/accounts/{account_id}/keys/{key_id}", headers=admin)
    assert again.status_code == 404 and again.json()["error"]["param"] == "key_id"
    elsewhere = stack.http.delete(f"/admin/accounts/acct_missing/keys/{key_id}", headers=admin)
    assert elsewhere.status_code == 404 and elsewhere.json()["error"]["param"] == "account_id"


def test_on_sqlite_storage_the_first_admin_is_made_promoted_and_refused_alike(request: pytest.FixtureRequest):
    stack: Stack = request.getfixturevalue("on_sqlite")  # the app on a SQLite data directory of its own
    email = f"sqlite-admin-{uuid.uuid4().hex[:8]}@example.com"
    first = _grant(stack, email)
    assert first.status_code == 201 and first.json()["role"] == "admin"
    again = _grant(stack, email).json()
    assert (again["account_id"], again["created"], again["promoted"]) == (first.json()["account_id"], False, False)
    _set_password_and_log_in(stack, again["password_link"], email)

    customer = Customer(stack, usd="0")
    assert (_grant(stack, customer.email).json()["promoted"], _account(stack, customer.email)["role"]) == (True,
                                                                                                         "admin")
    stack.admin("PATCH", f"/admin/accounts/{customer.account_id}", {"status": "disabled"})
    assert _grant(stack, customer.email).json()["error"]["code"] == "account_disabled"
