"""Console accounts and sessions over HTTP: sign-up, login, cookie and CSRF, logout, password change, limits."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.api.conftest import PREFIX, Stack

PASSWORD = "correct horse 42"
NEW_PASSWORD = "battery staple 7"


def new_email() -> str:
    return f"{uuid.uuid4().hex[:10]}@example.com"


def call(stack: Stack, method: str, path: str, json_body=None, *, token: str | None = None,
         cookie: str | None = None, csrf: str | None = None) -> httpx.Response:
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if cookie is not None:
        headers["Cookie"] = f"tokenway_session={cookie}"
    if csrf is not None:
        headers["X-CSRF-Token"] = csrf
    return stack.http.request(method, path, json=json_body, headers=headers)


def signup(stack: Stack, email: str | None = None, password: str = PASSWORD) -> dict:
    response = call(stack, "POST", "/api/auth/signup", {"email": email or new_email(), "password": password})
    assert response.status_code == 201, response.text
    return response.json()


def login(stack: Stack, email: str, password: str = PASSWORD) -> httpx.Response:
    return call(stack, "POST", "/api/auth/login", {"email": email, "password": password})


def session(stack: Stack, email: str, password: str = PASSWORD) -> dict:
    response = login(stack, email, password)
    assert response.status_code == 200, response.text
    return response.json()


def assert_error(response: httpx.Response, status: int, code: str, *, param: str | None = None,
                 type: str = "invalid_request_error") -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert (error["type"], error["code"], error["param"]) == (type, code, param)
    return error


def test_signup_login_and_me_by_bearer_and_by_cookie(stack):
    email = new_email()
    account = signup(stack, email.upper())
    assert set(account) == {"account_id", "email", "role"}
    assert (account["email"], account["role"]) == (email, "customer")

    before = datetime.now(UTC)
    response = login(stack, email)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"token", "expires_at", "csrf_token", "account"} and body["account"] == account
    token = body["token"]
    assert token.startswith("sess_") and body["csrf_token"]
    expires_at = datetime.fromisoformat(body["expires_at"])
    assert timedelta(hours=12) - timedelta(seconds=2) <= expires_at - before <= timedelta(hours=12, seconds=2)
    assert response.headers["set-cookie"] == (
        f"tokenway_session={token}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=43200")
    assert response.headers["cache-control"] == "no-store"

    for me in (call(stack, "GET", "/api/auth/me", token=token), call(stack, "GET", "/api/auth/me", cookie=token)):
        assert me.status_code == 200, me.text
        assert set(me.json()) == {"account_id", "email", "role", "created_at"}
        assert {k: me.json()[k] for k in account} == account
        assert abs(datetime.fromisoformat(me.json()["created_at"]) - before) < timedelta(minutes=1)


def test_a_cookie_post_needs_the_csrf_token(stack):
    email = signup(stack)["email"]
    body = session(stack, email)
    token, csrf = body["token"], body["csrf_token"]
    for wrong in (None, "not-the-token", token):
        refused = call(stack, "POST", "/api/auth/logout", cookie=token, csrf=wrong)
        assert_error(refused, 403, "csrf_failed", type="permission_error")
    assert call(stack, "GET", "/api/auth/me", cookie=token).status_code == 200  # still logged in

    logged_out = call(stack, "POST", "/api/auth/logout", cookie=token, csrf=csrf)
    assert logged_out.status_code == 204 and logged_out.content == b""
    assert logged_out.headers["set-cookie"] == (
        "tokenway_session=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0")
    assert_error(call(stack, "GET", "/api/auth/me", cookie=token), 401, "invalid_session")


def test_logout_ends_that_session_only(stack):
    email = signup(stack)["email"]
    first, second = session(stack, email)["token"], session(stack, email)["token"]
    assert call(stack, "POST", "/api/auth/logout", token=first).status_code == 204  # Bearer: no CSRF token
    assert_error(call(stack, "GET", "/api/auth/me", token=first), 401, "invalid_session")
    assert call(stack, "GET", "/api/auth/me", token=second).status_code == 200


def test_a_password_change_ends_every_session_and_the_new_password_works(stack):
    email = signup(stack)["email"]
    first, second = session(stack, email), session(stack, email)
    change = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}

    wrong = call(stack, "POST", "/api/auth/password", {**change, "current_password": "not it at all 1"},
                 token=first["token"])
    assert_error(wrong, 400, "incorrect_password", param="current_password")
    weak = call(stack, "POST", "/api/auth/password", {**change, "new_password": "short1"}, token=first["token"])
    assert_error(weak, 400, "weak_password", param="new_password")
    assert_error(call(stack, "POST", "/api/auth/password", change, cookie=first["token"]), 403, "csrf_failed",
                 type="permission_error")

    changed = call(stack, "POST", "/api/auth/password", change, cookie=first["token"], csrf=first["csrf_token"])
    assert changed.status_code == 204, changed.text
    assert changed.headers["set-cookie"].endswith("Max-Age=0")
    for token in (first["token"], second["token"]):
        assert_error(call(stack, "GET", "/api/auth/me", token=token), 401, "invalid_session")
    assert_error(login(stack, email), 401, "invalid_credentials")
    fresh = session(stack, email, NEW_PASSWORD)["token"]
    assert call(stack, "GET", "/api/auth/me", token=fresh).json()["email"] == email


def admin(stack: Stack, method: str, path: str, json_body=None) -> httpx.Response:
    return httpx.request(method, stack.url + path, json=json_body, timeout=30,
                         headers={"Authorization": f"Bearer {stack.settings.admin_token.get_secret_value()}"})


def test_a_taken_email_is_409_naming_the_field_for_a_sign_up_and_for_the_operator(stack):
    email = signup(stack)["email"]
    taken = call(stack, "POST", "/api/auth/signup", {"email": email.title(), "password": PASSWORD})
    assert_error(taken, 409, "email_taken", param="email")
    assert_error(admin(stack, "POST", "/admin/accounts", {"email": f" {email.upper()}"}), 409, "email_taken",
                 param="email")
    operators = admin(stack, "POST", "/admin/accounts", {"email": new_email()}).json()["email"]
    taken = call(stack, "POST", "/api/auth/signup", {"email": operators, "password": PASSWORD})
    assert_error(taken, 409, "email_taken", param="email")


@pytest.mark.parametrize("email", ["alice@example", "alice", "a b@example.com", "alice@example..com",
                                   "x" * 250 + "@example.com"])
def test_the_operator_and_a_sign_up_meet_one_email_rule(stack, email):
    assert_error(admin(stack, "POST", "/admin/accounts", {"email": email}), 400, "invalid_email", param="email")
    signed_up = call(stack, "POST", "/api/auth/signup", {"email": email, "password": PASSWORD})
    assert_error(signed_up, 400, "invalid_email", param="email")


def test_the_operator_and_a_sign_up_store_an_email_alike(stack):
    local = uuid.uuid4().hex[:10]
    created = admin(stack, "POST", "/admin/accounts", {"email": f"  {local.upper()}@Example.COM "})
    assert created.status_code == 201 and created.json()["email"] == f"{local}@example.com"
    assert signup(stack, f" {local}@EXAMPLE.org\t")["email"] == f"{local}@example.org"


def test_a_weak_password_is_refused_stating_the_rule(stack):
    email = new_email()
    weak = call(stack, "POST", "/api/auth/signup", {"email": email, "password": "onlyletters"})
    error = assert_error(weak, 400, "weak_password", param="password")
    assert "10 to 256 characters" in error["message"] and "letter" in error["message"]
    assert_error(login(stack, email, "onlyletters"), 401, "invalid_credentials")  # nothing was created


@pytest.mark.parametrize("content, param", [(b"not json", None), (b'{"email": "a@example.com"}', "password"),
                                            (b'{"email": "a@example.com", "password": 12345678901}', "password")])
def test_a_malformed_signup_is_400(stack, content, param):
    response = stack.http.post("/api/auth/signup", content=content,
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["param"] == param


@pytest.mark.parametrize("path", ["/api/auth/signup", "/api/auth/login"])
@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_console_write_that_is_not_declared_json_is_415(stack, path, content_type):
    # A page on another site can post forms and text/plain without asking; not JSON.
    body = b'{"email": "victim@example.com", "password": "correct horse 42"}'
    response = stack.http.post(path, content=body,
                          headers={"Content-Type": content_type} if content_type else {})
    assert response.status_code == 415 and response.json()["error"]["code"] == "unsupported_media_type"


def test_the_sixth_failed_login_is_429_with_retry_after(stack):
    # The windows are fixed: start well inside one, so all six attempts share it.
    window = stack.settings.login_window_s
    if window - time.time() % window < 10:
        time.sleep(window - time.time() % window + 0.1)
    email = signup(stack)["email"]
    for _ in range(5):
        assert_error(login(stack, email, "wrong password 1"), 401, "invalid_credentials")
    refused = login(stack, email)  # even the right password
    error = assert_error(refused, 429, "too_many_login_attempts", type="rate_limit_error")
    assert 1 <= int(refused.headers["retry-after"]) <= window
    assert refused.headers["retry-after"] in error["message"]


def from_address(address: str) -> httpx.Client:
    """A client whose requests come from `address` (any of 127.0.0.0/8 reaches the gateway)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


def test_a_strangers_failures_from_one_address_do_not_lock_the_owner_out_of_another(stack):
    window = stack.settings.login_window_s
    if window - time.time() % window < 10:
        time.sleep(window - time.time() % window + 0.1)
    email = signup(stack)["email"]
    with from_address("127.0.0.2") as stranger, from_address("127.0.0.3") as owner:
        answers = [stranger.post(stack.url + "/api/auth/login", json={"email": email, "password": "guess number 1"})
                   for _ in range(7)]
        assert [answer.status_code for answer in answers] == [401] * 5 + [429] * 2
        assert 1 <= int(answers[-1].headers["retry-after"]) <= window
        # The owner, at an address of their own, is not refused for what the stranger did.
        logged_in = owner.post(stack.url + "/api/auth/login", json={"email": email, "password": PASSWORD})
        assert logged_in.status_code == 200, logged_in.text
        still = stranger.post(stack.url + "/api/auth/login", json={"email": email, "password": PASSWORD})
        assert_error(still, 429, "too_many_login_attempts", type="rate_limit_error")


def test_an_operator_created_account_sets_its_password_with_a_one_time_link(stack):
    email = new_email()
    account = admin(stack, "POST", "/admin/accounts", {"email": email}).json()
    before = datetime.now(UTC)
    issued = admin(stack, "POST", f"/admin/accounts/{account['account_id']}/password-link")
    assert issued.status_code == 201, issued.text
    assert issued.headers["cache-control"] == "no-store"
    link = issued.json()
    assert set(link) == {"token", "url", "expires_at"}
    assert link["url"] == f"/#/set-password?token={link['token']}"
    expires_at = datetime.fromisoformat(link["expires_at"])
    assert timedelta(hours=72) - timedelta(seconds=2) <= expires_at - before <= timedelta(hours=72, seconds=2)
    assert_error(login(stack, email), 401, "invalid_credentials")  # no password yet

    weak = call(stack, "POST", "/api/auth/password/set", {"token": link["token"], "password": "short1"})
    assert_error(weak, 400, "weak_password", param="password")
    done = call(stack, "POST", "/api/auth/password/set", {"token": link["token"], "password": PASSWORD})
    assert done.status_code == 204 and done.content == b"", done.text
    token = session(stack, email)["token"]
    assert call(stack, "GET", "/api/auth/me", token=token).json()["account_id"] == account["account_id"]

    again = call(stack, "POST", "/api/auth/password/set", {"token": link["token"], "password": NEW_PASSWORD})
    assert_error(again, 400, "invalid_token", param="token")
    assert call(stack, "GET", "/api/auth/me", token=token).status_code == 200  # nothing changed


def test_a_password_link_ends_every_session_and_a_newer_link_replaces_it(stack):
    account = signup(stack)
    tokens = [session(stack, account["email"])["token"] for _ in range(2)]
    path = f"/admin/accounts/{account['account_id']}/password-link"
    first, second = admin(stack, "POST", path).json()["token"], admin(stack, "POST", path).json()["token"]
    replaced = call(stack, "POST", "/api/auth/password/set", {"token": first, "password": NEW_PASSWORD})
    assert_error(replaced, 400, "invalid_token", param="token")
    for token in tokens:  # still alive: nothing was set
        assert call(stack, "GET", "/api/auth/me", token=token).status_code == 200
    assert call(stack, "POST", "/api/auth/password/set", {"token": second, "password": NEW_PASSWORD}).status_code == 204
    for token in tokens:
        assert_error(call(stack, "GET", "/api/auth/me", token=token), 401, "invalid_session")
    assert_error(login(stack, account["email"]), 401, "invalid_credentials")
    assert session(stack, account["email"], NEW_PASSWORD)["token"]


def test_concurrent_uses_of_a_password_link_set_one_password(stack):
    account = admin(stack, "POST", "/admin/accounts", {"email": new_email()}).json()
    token = admin(stack, "POST", f"/admin/accounts/{account['account_id']}/password-link").json()["token"]
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda n: call(stack, "POST", "/api/auth/password/set",
                                               {"token": token, "password": f"password number {n}"}), range(6)))
    assert sorted(answer.status_code for answer in answers) == [204] + [400] * 5
    winner = [answer.status_code for answer in answers].index(204)
    assert session(stack, account["email"], f"password number {winner}")["token"]


@pytest.mark.parametrize("body, code, param", [
    ({"token": "acct_nobody.abc", "password": PASSWORD}, "invalid_token", "token"),
    ({"token": "", "password": PASSWORD}, "invalid_token", "token"),
    ({"token": "x" * 201, "password": PASSWORD}, "invalid_value", "token"),
    ({"password": PASSWORD}, "missing_required_parameter", "token"),
    ({"token": "t", "password": PASSWORD, "email": "a@example.com"}, "invalid_value", "email"),
])
def test_a_bad_set_password_request_is_400_naming_the_field(stack, body, code, param):
    assert_error(call(stack, "POST", "/api/auth/password/set", body), 400, code, param=param)


def test_a_password_link_for_no_account_is_404(stack):
    assert_error(admin(stack, "POST", "/admin/accounts/acct_nobody/password-link"), 404, "not_found",
                 param="account_id")


def test_unknown_email_and_wrong_password_get_one_answer(stack):
    email = signup(stack)["email"]
    wrong = assert_error(login(stack, email, "wrong password 1"), 401, "invalid_credentials")
    unknown = assert_error(login(stack, new_email()), 401, "invalid_credentials")
    assert wrong == unknown and wrong["message"] == "Incorrect email or password."


def test_a_relay_key_is_not_a_session(stack):
    _, key = stack.customer("0")
    error = assert_error(call(stack, "GET", "/api/auth/me", token=key), 401, "invalid_session")
    assert "not an API key" in error["message"]


def test_no_garbage_or_expired_sessions_are_401(stack):
    assert_error(call(stack, "GET", "/api/auth/me"), 401, "invalid_session")
    assert_error(call(stack, "GET", "/api/auth/me", token="sess_" + "x" * 43), 401, "invalid_session")
    assert_error(call(stack, "GET", "/api/auth/me", cookie="garbage"), 401, "invalid_session")

    token = session(stack, signup(stack)["email"])["token"]
    past_ms = int(time.time() * 1000) - 1
    stack.aws("dynamodb").update_item(
        TableName=stack.outputs["SessionsTableName"],
        Key={"session_hash": {"S": hashlib.sha256(token.encode()).hexdigest()}},
        UpdateExpression="SET expires_at = :past", ExpressionAttributeValues={":past": {"N": str(past_ms)}})
    # The item is still there (TTL removes items lazily); the gateway refuses it anyway.
    assert_error(call(stack, "GET", "/api/auth/me", token=token), 401, "invalid_session")


def test_a_disabled_account_is_403(stack):
    account = signup(stack)
    token = session(stack, account["email"])["token"]
    stack.aws("dynamodb").update_item(
        TableName=stack.outputs["AccountsTableName"], Key={"account_id": {"S": account["account_id"]}},
        UpdateExpression="SET #status = :disabled", ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={":disabled": {"S": "disabled"}})
    assert_error(call(stack, "GET", "/api/auth/me", token=token), 403, "account_disabled", type="permission_error")
    assert_error(login(stack, account["email"]), 403, "account_disabled", type="permission_error")
    assert_error(login(stack, account["email"], "wrong password 1"), 401, "invalid_credentials")


def test_no_password_or_token_is_stored_in_plain_text(stack):
    account = signup(stack)
    email = account["email"]
    first, second = session(stack, email), session(stack, email)
    assert call(stack, "POST", "/api/auth/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
                token=second["token"]).status_code == 204
    third = session(stack, email, NEW_PASSWORD)
    path = f"/admin/accounts/{account['account_id']}/password-link"
    replaced, used = admin(stack, "POST", path).json()["token"], admin(stack, "POST", path).json()["token"]
    assert call(stack, "POST", "/api/auth/password/set", {"token": used, "password": "linked password 5"}
                ).status_code == 204
    secrets = [PASSWORD, NEW_PASSWORD, "linked password 5", replaced.partition(".")[2], used.partition(".")[2]]
    for body in (first, second, third):
        secrets += [body["token"], body["token"].removeprefix("sess_"), body["csrf_token"]]

    dynamodb = stack.aws("dynamodb")
    tables = [name for name in dynamodb.list_tables()["TableNames"] if name.startswith(f"{PREFIX}-")]
    assert {f"{PREFIX}-accounts", f"{PREFIX}-emails", f"{PREFIX}-sessions", f"{PREFIX}-login-attempts",
            f"{PREFIX}-password-links"} <= set(tables)
    stored = ""
    for table in tables:
        for page in dynamodb.get_paginator("scan").paginate(TableName=table):
            stored += json.dumps(page["Items"])
    assert email in stored and third["account"]["account_id"] in stored  # the scan did read the account
    for secret in secrets:
        assert secret not in stored
