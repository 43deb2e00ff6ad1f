"""Creating accounts (sign-up and operator alike), login, sessions, CSRF and password change, over
SQLite storage and a test clock."""

import pytest

from chalicelib.core.domain import Account
from chalicelib.core.errors import (
    EmailTaken,
    InvalidCredentials,
    InvalidRequest,
    InvalidSession,
    PermissionDenied,
)
from chalicelib.core.validation import parse
from chalicelib.identity.accounts import NewAccount, SignUp
from chalicelib.identity.sessions import token_hash
from tests.unit.console_world import PASSWORD, TTL_S, ConsoleWorld


@pytest.fixture
def world(tmp_path) -> ConsoleWorld:
    return ConsoleWorld(tmp_path)


def test_signup_normalizes_the_email_and_stores_only_a_hash(world):
    account = world.accounts.sign_up(SignUp(email="  Alice@Example.COM ", password=PASSWORD))
    assert account.email == "alice@example.com" and account.role == "customer" and account.status == "active"
    assert account.account_id.startswith("acct_") and account.created_at == world.time_ms
    stored = world.accounts_repo.get(account.account_id)
    assert stored.password_hash.startswith("scrypt$") and PASSWORD not in stored.password_hash
    assert PASSWORD not in repr(stored) and "scrypt" not in repr(stored)


INVALID_EMAILS = ["alice", "alice@", "@example.com", "alice@example", "a b@example.com", "alice@@example.com",
                  "alice@example..com", "x" * 250 + "@example.com", ""]


def by_signup(world: ConsoleWorld, email: str) -> Account:
    return world.accounts.sign_up(SignUp(email=email, password=PASSWORD))


def by_operator(world: ConsoleWorld, email: str) -> Account:
    return world.accounts.create(NewAccount(email=email))


@pytest.mark.parametrize("create", [by_signup, by_operator])
@pytest.mark.parametrize("email", INVALID_EMAILS)
def test_every_way_of_creating_an_account_refuses_an_invalid_email(world, create, email):
    with pytest.raises(InvalidRequest) as caught:
        create(world, email)
    assert (caught.value.status, caught.value.param, caught.value.code) == (400, "email", "invalid_email")
    assert world.accounts_repo.list() == []


@pytest.mark.parametrize("create", [by_signup, by_operator])
def test_every_way_of_creating_an_account_normalizes_the_email(world, create):
    assert create(world, " Bob@Example.ORG\t").email == "bob@example.org"


@pytest.mark.parametrize("first", [by_signup, by_operator])
@pytest.mark.parametrize("second", [by_signup, by_operator])
def test_a_taken_email_is_a_409_naming_the_field_whoever_asks_and_nothing_is_written(world, first, second):
    first(world, "alice@example.com")
    with pytest.raises(EmailTaken) as caught:
        second(world, "ALICE@example.com ")
    error = caught.value.envelope()["error"]
    assert (caught.value.status, error["type"], error["param"], error["code"]) == (
        409, "invalid_request_error", "email", "email_taken")
    assert len(world.accounts_repo.list()) == 1


def test_an_operator_created_account_is_a_customer_without_a_password(world):
    account = world.accounts_repo.get(world.create("ops@example.com"))
    assert (account.role, account.status, account.password_hash) == ("customer", "active", None)
    assert account.account_id.startswith("acct_") and account.created_at == world.time_ms
    with pytest.raises(InvalidCredentials):
        world.login("ops@example.com", PASSWORD)


def test_signup_refuses_a_weak_password_and_writes_nothing(world):
    with pytest.raises(InvalidRequest) as caught:
        world.signup("alice@example.com", "alice12345678")
    assert (caught.value.param, caught.value.code) == ("password", "weak_password")
    assert world.accounts_repo.list() == []


@pytest.mark.parametrize("command, body, param", [
    (SignUp, {"email": "a@example.com"}, "password"),
    (SignUp, {"password": PASSWORD}, "email"),
    (SignUp, {"email": 5, "password": PASSWORD}, "email"),
    (SignUp, {"email": "a@example.com", "password": PASSWORD, "role": "admin"}, "role"),
    (NewAccount, {"email": "a@example.com", "password": PASSWORD}, "password"),
    (NewAccount, {"email": ["a@example.com"]}, "email"),
])
def test_a_body_with_missing_wrong_or_extra_fields_is_no_command(command, body, param):
    with pytest.raises(InvalidRequest) as caught:
        parse(command, body)
    assert caught.value.param == param


def test_login_opens_a_session_stored_only_as_hashes(world):
    account_id = world.signup()
    result = world.login("ALICE@example.com")
    session = result.session
    assert session.token.startswith("sess_") and len(session.token) > 40 and session.csrf_token
    assert session.expires_at == world.time_ms + TTL_S * 1000
    stored = world.sessions.get(token_hash(session.token))
    assert stored.account_id == account_id and stored.session_epoch == 0
    assert stored.csrf_hash == token_hash(session.csrf_token)
    assert session.token not in repr(stored) and session.csrf_token not in repr(stored)
    assert session.token not in repr(session) and session.csrf_token not in repr(session)
    assert result.account.account_id == account_id


def test_a_wrong_password_and_an_unknown_email_get_the_same_answer_after_the_same_work(world):
    world.signup()
    errors = []
    for email, password in [("alice@example.com", "wrong password 1"), ("nobody@example.com", PASSWORD)]:
        with pytest.raises(InvalidCredentials) as caught:
            world.login(email, password)
        errors.append(caught.value.envelope())
    assert errors[0] == errors[1]
    assert errors[0]["error"]["message"] == "Incorrect email or password."
    assert errors[0]["error"]["code"] == "invalid_credentials"
    # The unknown email was checked too: against no stored hash, which the hasher
    # answers with the work of a dummy check.
    assert [stored is None for _, stored in world.hasher.checked] == [False, True]


def test_an_account_without_a_password_cannot_log_in(world):
    world.accounts_repo.create(Account("acct_ops", "ops@example.com", 0))
    with pytest.raises(InvalidCredentials):
        world.login("ops@example.com", PASSWORD)


def test_a_disabled_account_is_told_so_only_with_the_right_password(world):
    world.accounts_repo.set_status(world.signup(), "disabled")
    with pytest.raises(InvalidCredentials):
        world.login(password="wrong password 1")
    with pytest.raises(PermissionDenied) as caught:
        world.login()
    assert (caught.value.status, caught.value.code) == (403, "account_disabled")
    assert world.store.rows("SELECT * FROM sessions") == []


def test_a_session_works_as_bearer_or_cookie(world):
    account_id = world.signup()
    token = world.login().session.token
    by_bearer, by_cookie = world.bearer(token), world.cookie(token)
    assert (by_bearer.account_id, by_bearer.role, by_bearer.via_cookie) == (account_id, "customer", False)
    assert (by_cookie.account_id, by_cookie.via_cookie) == (account_id, True)
    assert by_bearer.session_hash == by_cookie.session_hash == token_hash(token)


def test_a_session_expires_by_the_clock(world):
    world.signup()
    token = world.login().session.token
    world.time_ms += TTL_S * 1000 - 1
    world.bearer(token)
    world.time_ms += 1
    with pytest.raises(InvalidSession) as caught:
        world.bearer(token)
    assert (caught.value.status, caught.value.code) == (401, "invalid_session")


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "post"])
def test_an_unsafe_cookie_request_needs_the_csrf_token(world, method):
    world.signup()
    session = world.login().session
    for csrf in (None, "", "wrong", session.token):
        with pytest.raises(PermissionDenied) as caught:
            world.cookie(session.token, method, csrf=csrf)
        assert (caught.value.status, caught.value.code) == (403, "csrf_failed")
    assert world.cookie(session.token, method, csrf=session.csrf_token).via_cookie
    # A Bearer token is never sent by a browser on its own: no CSRF token needed.
    assert not world.bearer(session.token, method).via_cookie


def test_a_safe_cookie_request_needs_no_csrf_token(world):
    world.signup()
    token = world.login().session.token
    assert world.cookie(token, "GET").via_cookie and world.cookie(token, "HEAD").via_cookie


@pytest.mark.parametrize("headers, says", [
    ({}, "not logged in"),
    ({"Authorization": "Bearer sk-" + "a" * 48}, "not an API key"),
    ({"Authorization": "Basic abc"}, "Malformed"),
    ({"Authorization": "Bearer"}, "Malformed"),
    ({"Authorization": "Bearer sess_unknown"}, "log in again"),
    ({"Authorization": "Bearer garbage"}, "log in again"),
    ({"Cookie": "tokenway_session=sess_unknown"}, "log in again"),
    ({"Cookie": "other=1; tokenway_session="}, "not logged in"),
])
def test_requests_without_a_live_session_are_401(world, headers, says):
    with pytest.raises(InvalidSession) as caught:
        world.auth.authenticate(headers, "GET")
    assert caught.value.code == "invalid_session" and says in caught.value.message


def test_a_bearer_token_wins_over_the_cookie(world):
    world.signup()
    world.signup("bob@example.com")
    alice, bob = world.login().session, world.login("bob@example.com").session
    principal = world.auth.authenticate({"Authorization": f"Bearer {alice.token}",
                                         "Cookie": f"tokenway_session={bob.token}"}, "POST")
    assert principal.session_hash == token_hash(alice.token) and not principal.via_cookie


def test_logout_ends_that_session_only(world):
    world.signup()
    first, second = world.login().session, world.login().session
    world.accounts.logout(world.bearer(first.token))
    with pytest.raises(InvalidSession):
        world.bearer(first.token)
    assert world.bearer(second.token)


def test_a_password_change_ends_every_session_and_the_new_password_works(world):
    account_id = world.signup()
    first, second = world.login().session, world.login().session
    world.change_password(world.bearer(first.token), PASSWORD, "new password 99")
    for token in (first.token, second.token):
        with pytest.raises(InvalidSession):
            world.bearer(token)
    assert world.accounts_repo.get(account_id).session_epoch == 1
    with pytest.raises(InvalidCredentials):
        world.login()
    assert world.bearer(world.login(password="new password 99").session.token).account_id == account_id


def test_a_password_change_needs_the_current_password_and_a_strong_new_one(world):
    account_id = world.signup()
    principal = world.bearer(world.login().session.token)
    with pytest.raises(InvalidRequest) as caught:
        world.change_password(principal, "wrong password 1", "new password 99")
    assert (caught.value.param, caught.value.code) == ("current_password", "incorrect_password")
    with pytest.raises(InvalidRequest) as caught:
        world.change_password(principal, PASSWORD, "short1")
    assert (caught.value.param, caught.value.code) == ("new_password", "weak_password")
    assert world.accounts_repo.get(account_id).session_epoch == 0
    assert world.bearer(world.login().session.token)


def test_a_disabled_account_loses_its_sessions_with_403(world):
    account_id = world.signup()
    token = world.login().session.token
    world.accounts_repo.set_status(account_id, "disabled")
    with pytest.raises(PermissionDenied) as caught:
        world.bearer(token)
    assert caught.value.code == "account_disabled"


def test_only_admins_pass_require_admin(world):
    world.signup()
    world.accounts_repo.create(Account("acct_ops", "ops@example.com", 0, role="admin",
                                       password_hash=world.hasher.hash(PASSWORD)))
    customer = world.bearer(world.login().session.token)
    with pytest.raises(PermissionDenied) as caught:
        world.auth.require_admin(customer)
    assert (caught.value.status, caught.value.code) == (403, "admin_required")
    admin = world.bearer(world.login("ops@example.com").session.token)
    assert admin.role == "admin"
    world.auth.require_admin(admin)
