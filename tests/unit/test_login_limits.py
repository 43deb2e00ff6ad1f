"""Failed-login limits: 5 per account and address and 20 per address in a 15-minute window; past 20 a
day per account, one guess per doubling delay from addresses the account never logged in from."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from chalicelib.core.errors import InvalidCredentials, InvalidRequest, RateLimited
from tests.unit.console_world import (
    DELAY_S,
    MAX_DELAY_S,
    OWNER_IP,
    PASSWORD,
    PER_ACCOUNT,
    PER_ACCOUNT_IP,
    WINDOW_S,
    ConsoleWorld,
)

WRONG = "wrong password 1"
STRANGER_IP = "198.51.100.66"


@pytest.fixture
def world(tmp_path) -> ConsoleWorld:
    world = ConsoleWorld(tmp_path)
    world.signup()
    return world


def fail(world: ConsoleWorld, times: int, email: str = "alice@example.com", ip: str | None = OWNER_IP) -> None:
    for _ in range(times):
        with pytest.raises(InvalidCredentials):
            world.login(email, WRONG, ip)


def refused(world: ConsoleWorld, password: str = PASSWORD, ip: str | None = OWNER_IP,
            email: str = "alice@example.com") -> int:
    """Retry-After of a refused login, which never reached the password check."""
    checked = len(world.hasher.checked)
    with pytest.raises(RateLimited) as caught:
        world.login(email, password, ip)
    assert len(world.hasher.checked) == checked
    error = caught.value
    assert (error.status, error.type, error.code) == (429, "rate_limit_error", "too_many_login_attempts")
    assert f"{error.retry_after_s} seconds" in error.message
    return error.retry_after_s


def guessers(world: ConsoleWorld, failures: int) -> None:
    """`failures` failed logins on alice from as many addresses as that takes, none known to her."""
    for n in range(failures):
        fail(world, 1, ip=f"10.0.{n // PER_ACCOUNT_IP}.1")


# One address, one account.

def test_the_sixth_failure_from_an_address_is_refused_before_the_password_is_checked(world):
    fail(world, PER_ACCOUNT_IP)
    world.time_ms += 100_000  # 100 s into the window
    assert refused(world) == WINDOW_S - 100  # even the right password


def test_one_address_gets_no_more_than_five_guesses_per_account_per_window(world):
    for _ in range(3):
        checked = len(world.hasher.checked)
        fail(world, PER_ACCOUNT_IP, ip=STRANGER_IP)
        for _ in range(10):
            refused(world, WRONG, ip=STRANGER_IP)
        assert len(world.hasher.checked) - checked == PER_ACCOUNT_IP
        world.time_ms += WINDOW_S * 1000
    fail(world, 1, email="bob@example.com", ip=STRANGER_IP)  # another account is another count


def test_the_next_window_starts_afresh(world):
    fail(world, PER_ACCOUNT_IP)
    world.time_ms += WINDOW_S * 1000
    assert world.login().session.token


def test_retry_after_is_never_zero(world):
    fail(world, PER_ACCOUNT_IP)
    world.time_ms += WINDOW_S * 1000 - 1
    assert refused(world) == 1


def test_a_success_clears_the_addresses_failures_on_the_account(world):
    fail(world, PER_ACCOUNT_IP - 1)
    world.login()
    fail(world, PER_ACCOUNT_IP)
    refused(world)


def test_unknown_emails_are_limited_like_known_ones(world):
    fail(world, PER_ACCOUNT_IP, email="nobody@example.com")
    refused(world, WRONG, email="nobody@example.com")
    assert world.login().session.token  # another account is not affected


def test_a_request_without_a_known_address_is_limited_like_one_address(world):
    fail(world, PER_ACCOUNT_IP, ip=None)
    refused(world, ip=None)
    assert world.login().session.token


def test_an_ipv6_client_is_counted_by_its_64_network(world):
    for n in range(PER_ACCOUNT_IP):
        fail(world, 1, ip=f"2001:db8:0:7::{n + 1:x}")
    refused(world, ip="2001:db8:0:7:ffff::1")
    assert world.login(ip="2001:db8:0:8::1").session.token


# One address, many accounts.

def test_one_address_may_fail_twenty_times_then_nothing_more(world):
    for n in range(20):
        fail(world, 1, email=f"guess{n}@example.com")
    refused(world)
    assert world.login(ip="198.51.100.1").session.token  # another address is not affected


def test_a_success_does_not_wipe_the_addresses_failures(world):
    for n in range(19):
        fail(world, 1, email=f"guess{n}@example.com")
    world.login()
    fail(world, 1, email="guess19@example.com")
    refused(world)


def test_successes_do_not_count_against_the_address(world):
    for _ in range(30):
        world.login()
    fail(world, PER_ACCOUNT_IP)


# Strangers and the owner.

def test_a_strangers_failures_from_one_address_do_not_stop_the_owner_at_another(world):
    fail(world, PER_ACCOUNT_IP, ip=STRANGER_IP)
    refused(world, WRONG, ip=STRANGER_IP)
    refused(world, PASSWORD, ip=STRANGER_IP)
    # The owner has never logged in from this address: nothing is held against it.
    assert world.login(ip="192.0.2.10").session.token


def test_one_address_failing_all_day_never_brings_delays_on_anyone_else(world):
    for _ in range(4 * PER_ACCOUNT // PER_ACCOUNT_IP):  # four times the account's ceiling, window by window
        fail(world, PER_ACCOUNT_IP, ip=STRANGER_IP)
        world.time_ms += WINDOW_S * 1000
    assert world.login(ip="192.0.2.10").session.token


# Many addresses, one account.

def test_many_addresses_meet_the_accounts_ceiling_then_one_guess_per_growing_delay(world):
    guessers(world, PER_ACCOUNT)
    waits = []
    for n in range(4):
        fail(world, 1, ip=f"172.16.0.{n}")  # the one guess this delay allows
        waits.append(refused(world, WRONG, ip=f"172.16.1.{n}"))
        assert refused(world, PASSWORD, ip=f"172.16.2.{n}") == waits[-1]  # even the right password
        world.time_ms += waits[-1] * 1000
    assert waits == [DELAY_S, 2 * DELAY_S, 4 * DELAY_S, 8 * DELAY_S]


def test_the_delay_stops_growing_at_its_cap(world):
    guessers(world, PER_ACCOUNT)
    waits = []
    for n in range(10):
        fail(world, 1, ip=f"172.16.0.{n}")
        waits.append(refused(world, ip=f"172.16.1.{n}"))
        world.time_ms += waits[-1] * 1000
    assert waits[-1] == MAX_DELAY_S and waits == sorted(waits)


def test_concurrent_guesses_past_the_ceiling_get_one_password_check(world):
    guessers(world, PER_ACCOUNT)
    checked = len(world.hasher.checked)

    def guess(n: int) -> str:
        try:
            world.login(password=WRONG, ip=f"172.16.3.{n}")
        except RateLimited:
            return "refused"
        except InvalidCredentials:
            return "checked"
        return "logged in"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(guess, range(16)))
    assert sorted(outcomes) == ["checked"] + ["refused"] * 15
    assert len(world.hasher.checked) - checked == 1


def test_the_owner_at_an_address_they_logged_in_from_is_not_delayed(world):
    world.login(ip=OWNER_IP)  # the owner's usual address
    guessers(world, PER_ACCOUNT)
    fail(world, 1, ip="172.16.0.1")
    refused(world, ip="172.16.0.2")
    assert world.login(ip=OWNER_IP).session.token
    # Not so from an address the owner never logged in from: that is what a guesser looks like.
    refused(world, ip="192.0.2.10")


def test_an_address_is_known_for_thirty_days(world):
    world.login(ip=OWNER_IP)
    world.time_ms += 31 * 86_400_000
    guessers(world, PER_ACCOUNT)
    fail(world, 1, ip="172.16.0.1")
    refused(world, ip=OWNER_IP)


def test_the_ceiling_is_counted_per_day(world):
    guessers(world, PER_ACCOUNT)
    fail(world, 1, ip="172.16.0.1")
    refused(world, ip="172.16.0.2")
    world.time_ms += 86_400_000
    assert world.login(ip="172.16.0.2").session.token


# Password changes and sign-ups.

def test_wrong_current_passwords_count_against_the_account_and_address(world):
    principal = world.bearer(world.login().session.token)
    for _ in range(PER_ACCOUNT_IP):
        with pytest.raises(InvalidRequest):
            world.change_password(principal, WRONG, "new password 99")
    with pytest.raises(RateLimited):
        world.change_password(principal, PASSWORD, "new password 99")
    refused(world)
    assert world.login(ip="192.0.2.10").session.token


def test_an_address_gets_ten_sign_ups_per_window(tmp_path):
    world = ConsoleWorld(tmp_path)
    for n in range(10):
        world.signup(f"user{n}@example.com", ip="198.51.100.1")
    with pytest.raises(RateLimited) as caught:
        world.signup("user10@example.com", ip="198.51.100.1")
    assert caught.value.code == "too_many_signups" and caught.value.retry_after_s > 0
    assert world.accounts_repo.get_by_email("user10@example.com") is None
    world.signup("other@example.com", ip="198.51.100.2")
    world.time_ms += WINDOW_S * 1000
    world.signup("user10@example.com", ip="198.51.100.1")
