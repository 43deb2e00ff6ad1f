"""Failed-login limits: 5 per account and 20 per client IP in a fixed 15-minute window."""

import pytest

from chalicelib.core.errors import InvalidCredentials, InvalidRequest, RateLimited
from tests.unit.console_world import PASSWORD, WINDOW_S, ConsoleWorld

WRONG = "wrong password 1"


@pytest.fixture
def world() -> ConsoleWorld:
    world = ConsoleWorld()
    world.signup()
    return world


def fail(world: ConsoleWorld, times: int, email: str = "alice@example.com", ip: str = "203.0.113.7") -> None:
    for _ in range(times):
        with pytest.raises(InvalidCredentials):
            world.login(email, WRONG, ip)


def test_the_sixth_failure_is_refused_before_the_password_is_checked(world):
    fail(world, 5)
    world.time_ms += 100_000  # 100 s into the window
    checked = len(world.hasher.checked)
    with pytest.raises(RateLimited) as caught:
        world.login()  # even the right password
    error = caught.value
    assert (error.status, error.type, error.code) == (429, "rate_limit_error", "too_many_login_attempts")
    assert error.retry_after_s == WINDOW_S - 100 and "800 seconds" in error.message
    assert len(world.hasher.checked) == checked


def test_the_next_window_starts_afresh(world):
    fail(world, 5)
    world.time_ms += WINDOW_S * 1000
    assert world.login().session.token


def test_retry_after_is_never_zero(world):
    fail(world, 5)
    world.time_ms += WINDOW_S * 1000 - 1
    with pytest.raises(RateLimited) as caught:
        world.login()
    assert caught.value.retry_after_s == 1


def test_a_success_clears_the_accounts_failures(world):
    fail(world, 4)
    world.login()
    fail(world, 5)
    with pytest.raises(RateLimited):
        world.login()


def test_unknown_emails_are_limited_like_known_ones(world):
    fail(world, 5, email="nobody@example.com")
    with pytest.raises(RateLimited):
        world.login("nobody@example.com", WRONG)
    assert world.login().session.token  # another account is not affected


def test_one_ip_may_fail_twenty_times_then_nothing_more(world):
    for n in range(20):
        fail(world, 1, email=f"guess{n}@example.com")
    with pytest.raises(RateLimited):
        world.login()
    assert world.login(ip="198.51.100.1").session.token  # another address is not affected


def test_a_success_does_not_wipe_the_ips_failures(world):
    for n in range(19):
        fail(world, 1, email=f"guess{n}@example.com")
    world.login()
    fail(world, 1, email="guess19@example.com")
    with pytest.raises(RateLimited):
        world.login()


def test_successes_do_not_count_against_the_ip(world):
    for _ in range(30):
        world.login()
    fail(world, 5)


def test_a_request_without_a_known_ip_is_limited_by_account(world):
    fail(world, 5, ip=None)
    with pytest.raises(RateLimited):
        world.login(ip=None)


def test_wrong_current_passwords_count_against_the_account(world):
    principal = world.bearer(world.login().session.token)
    body = {"current_password": WRONG, "new_password": "new password 99"}
    for _ in range(5):
        with pytest.raises(InvalidRequest):
            world.accounts.change_password(principal, body)
    with pytest.raises(RateLimited):
        world.accounts.change_password(principal, {**body, "current_password": PASSWORD})
    with pytest.raises(RateLimited):
        world.login()


def test_an_address_gets_ten_sign_ups_per_window():
    world = ConsoleWorld()
    for n in range(10):
        world.accounts.signup({"email": f"user{n}@example.com", "password": PASSWORD}, "198.51.100.1")
    with pytest.raises(RateLimited) as caught:
        world.accounts.signup({"email": "user10@example.com", "password": PASSWORD}, "198.51.100.1")
    assert caught.value.code == "too_many_signups" and caught.value.retry_after_s > 0
    assert world.accounts_repo.get_by_email("user10@example.com") is None
    world.accounts.signup({"email": "other@example.com", "password": PASSWORD}, "198.51.100.2")
    world.time_ms += WINDOW_S * 1000
    world.accounts.signup({"email": "user10@example.com", "password": PASSWORD}, "198.51.100.1")
