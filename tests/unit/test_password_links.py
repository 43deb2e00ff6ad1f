"""One-time set-password links: issued by the operator, used once by the customer, over SQLite
storage and a test clock."""

import hashlib
from concurrent.futures import ThreadPoolExecutor

import pytest

from chalicelib.core.errors import InvalidCredentials, InvalidRequest, InvalidSession, NotFound
from chalicelib.identity.password_links import PasswordLinks
from tests.unit.console_world import LINK_TTL_S, PASSWORD, ConsoleWorld

NEW_PASSWORD = "battery staple 7"


@pytest.fixture
def world(tmp_path) -> ConsoleWorld:
    return ConsoleWorld(tmp_path)


def assert_link_refused(world: ConsoleWorld, token: str, password: str = NEW_PASSWORD) -> None:
    with pytest.raises(InvalidRequest) as caught:
        world.set_password(token, password)
    error = caught.value
    assert (error.status, error.param, error.code) == (400, "token", "invalid_token")
    assert "Ask the operator for a new one" in error.message


def test_an_operator_created_account_gets_its_password_through_a_link(world):
    account_id = world.create("ops@example.com")
    link = world.links.issue(account_id)
    assert link.token.startswith(f"{account_id}.") and len(link.token) > len(account_id) + 40
    assert link.url == f"https://console.example.com/#/set-password?token={link.token}"
    assert link.expires_at == world.time_ms + LINK_TTL_S * 1000
    assert link.token not in repr(link)

    world.set_password(link.token, NEW_PASSWORD)
    session = world.login("ops@example.com", NEW_PASSWORD).session
    assert world.bearer(session.token).account_id == account_id


def test_only_the_sha256_of_the_token_is_stored(world):
    account_id = world.create()
    link = world.links.issue(account_id)
    stored = world.links_repo.get(account_id)
    assert stored.link_hash == hashlib.sha256(link.token.encode()).hexdigest()
    secret = link.token.partition(".")[2]
    assert secret not in repr(stored) and secret.encode() not in world.store.file_bytes()


def test_a_link_works_once(world):
    account_id = world.create()
    token = world.links.issue(account_id).token
    world.set_password(token, NEW_PASSWORD)
    assert_link_refused(world, token, "another password 3")
    world.login("ops@example.com", NEW_PASSWORD)
    with pytest.raises(InvalidCredentials):
        world.login("ops@example.com", "another password 3")


def test_of_concurrent_uses_of_one_link_exactly_one_sets_the_password(world):
    account_id = world.create()
    token = world.links.issue(account_id).token

    def use(n: int) -> str:
        try:
            world.set_password(token, f"password number {n}")
        except InvalidRequest:
            return "refused"
        return "set"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(use, range(8)))
    assert sorted(outcomes) == ["refused"] * 7 + ["set"]
    winner = outcomes.index("set")
    assert world.login("ops@example.com", f"password number {winner}").session.token
    assert world.accounts_repo.get(account_id).session_epoch == 1  # set once


def test_a_link_dies_when_it_expires(world):
    account_id = world.create()
    token = world.links.issue(account_id).token
    world.time_ms += LINK_TTL_S * 1000
    assert_link_refused(world, token)
    assert world.accounts_repo.get(account_id).password_hash is None


def test_a_link_works_until_it_expires(world):
    token = world.links.issue(world.create()).token
    world.time_ms += LINK_TTL_S * 1000 - 1
    world.set_password(token, NEW_PASSWORD)


def test_a_new_link_replaces_the_earlier_one(world):
    account_id = world.create()
    first, second = world.links.issue(account_id).token, world.links.issue(account_id).token
    assert first != second
    assert_link_refused(world, first)
    world.set_password(second, NEW_PASSWORD)


def test_setting_the_password_ends_every_session(world):
    account_id = world.signup("alice@example.com")
    sessions = [world.login().session.token, world.login().session.token]
    world.set_password(world.links.issue(account_id).token, NEW_PASSWORD)
    for token in sessions:
        with pytest.raises(InvalidSession):
            world.bearer(token)
    with pytest.raises(InvalidCredentials):
        world.login(password=PASSWORD)
    assert world.login(password=NEW_PASSWORD).session.token


def test_a_weak_password_is_refused_and_the_link_still_works(world):
    account_id = world.create("ops@example.com")
    token = world.links.issue(account_id).token
    for weak, says in [("short1", "characters"), ("onlyletterstoo", "only letters"),
                       ("ops-is-my-name-1", "part of the email")]:
        with pytest.raises(InvalidRequest) as caught:
            world.set_password(token, weak)
        assert (caught.value.param, caught.value.code) == ("password", "weak_password")
        assert says in caught.value.message
    world.set_password(token, NEW_PASSWORD)


@pytest.mark.parametrize("forge", [
    lambda token: token + "x",
    lambda token: token[:-1],
    lambda token: token.partition(".")[2],
    lambda token: "acct_nobody." + token.partition(".")[2],
    lambda token: "",
    lambda token: ".",
])
def test_a_forged_token_is_refused_like_a_used_one(world, forge):
    account_id = world.create()
    token = world.links.issue(account_id).token
    assert_link_refused(world, forge(token))
    world.set_password(token, NEW_PASSWORD)  # the real one still works


def test_another_accounts_link_sets_only_its_own_password(world):
    alice, bob = world.signup("alice@example.com"), world.signup("bob@example.com")
    bob_token = world.links.issue(bob).token
    world.links.issue(alice)
    assert_link_refused(world, alice + "." + bob_token.partition(".")[2])
    world.set_password(bob_token, NEW_PASSWORD)
    assert world.login("alice@example.com", PASSWORD).account.account_id == alice


def test_no_link_for_an_unknown_account(world):
    with pytest.raises(NotFound):
        world.links.issue("acct_nobody")
    assert world.store.rows("SELECT * FROM password_links") == []


def test_a_relative_url_without_a_console_address(tmp_path):
    world = ConsoleWorld(tmp_path)
    world.links = PasswordLinks(world.links_repo, world.accounts_repo, world.hasher, lambda: world.time_ms,
                                ttl_s=60)
    link = world.links.issue(world.create())
    assert link.url == f"/#/set-password?token={link.token}"
