"""Plans: which an account may use (the `default` plan too, unless the operator confined it), which a
key may be given, and the relay refusing a key whose plan its account no longer has."""

from __future__ import annotations

import pytest

from chalicelib.core.domain import Account, Group
from chalicelib.core.errors import InvalidRequest, PermissionDenied
from chalicelib.core.validation import parse
from chalicelib.keys.auth import KeyHasher
from chalicelib.keys.manage import KeyCreate, KeyManager
from chalicelib.keys.plans import plan_names
from chalicelib.relay.schemas import ChatRequest
from tests.unit.conftest import World

HELLO = parse(ChatRequest, {"model": "test-chat", "messages": [{"role": "user", "content": "Hello"}]})


@pytest.fixture
def world(tmp_path) -> World:
    world = World(directory=tmp_path)
    world.catalog_repo.put_group(Group("pro", multiplier_ppm=900_000))
    world.catalog_repo.put_group(Group("team"))
    world.fund("1")
    return world


def on_plan(world: World, group: str | None) -> None:
    world.change_key(group=group)


def refused(world: World) -> PermissionDenied:
    """The relay's refusal, before anything was held or sent upstream."""
    sent, balance = len(world.sent), world.balance()
    with pytest.raises(PermissionDenied) as caught:
        world.relay.chat(world.key, HELLO, "req_refused")
    assert caught.value.status == 403
    assert len(world.sent) == sent and world.balance() == balance and balance.held == 0
    return caught.value


def test_every_account_has_the_default_plan_until_the_operator_confines_it():
    assert plan_names(Account("a", "a@example.com", 0)) == ("default",)
    assert plan_names(Account("a", "a@example.com", 0, groups=("pro",))) == ("default", "pro")
    assert plan_names(Account("a", "a@example.com", 0, groups=("pro",), default_plan=False)) == ("pro",)
    assert plan_names(Account("a", "a@example.com", 0, groups=("default", "pro"), default_plan=False)) == (
        "default", "pro")
    assert plan_names(Account("a", "a@example.com", 0, default_plan=False)) == ()


def test_a_key_whose_plan_is_taken_from_its_account_stops_at_once(world):
    world.accounts.set_groups("acct_1", ("pro",))
    on_plan(world, "pro")
    assert world.relay.chat(world.key, HELLO, "req_1").cost_units
    world.accounts.set_groups("acct_1", ("team",))
    error = refused(world)
    assert error.code == "group_not_allowed" and "`pro`" in error.message
    world.accounts.set_groups("acct_1", ("team", "pro"))
    assert world.relay.chat(world.key, HELLO, "req_2").cost_units


def test_a_confined_account_loses_the_default_plan_and_keeps_its_own(world):
    world.accounts.set_groups("acct_1", ("pro",))
    world.relay.chat(world.key, HELLO, "req_1")  # a key without a plan is on `default`
    world.accounts.set_default_plan("acct_1", False)
    assert refused(world).code == "group_not_allowed"
    on_plan(world, "pro")
    assert world.relay.chat(world.key, HELLO, "req_2").cost_units


def test_a_key_lists_no_models_while_its_plan_is_not_its_accounts(world):
    listed = world.relay.models(world.key)["data"]
    assert {model["id"] for model in listed} >= {"test-chat"}
    world.accounts.set_default_plan("acct_1", False)
    assert world.relay.models(world.key)["data"] == []


@pytest.fixture
def manager(world: World) -> KeyManager:
    return KeyManager(world.keys, world.catalog, KeyHasher(), now_ms=lambda: world.time_ms)


def confined(*groups: str) -> Account:
    return Account("acct_1", "a@example.com", 0, groups=groups, default_plan=False)


def test_the_groups_a_customer_may_choose_follow_the_accounts_plans(world, manager):
    def names(account: Account) -> list[str]:
        return [group.name for group in manager.usable_groups(account)]

    assert names(Account("acct_1", "a@example.com", 0, groups=("pro",))) == ["default", "pro"]
    assert names(confined("pro", "team")) == ["pro", "team"]
    assert names(confined()) == []


@pytest.mark.parametrize("body", [{"name": "k"}, {"name": "k", "group": None}, {"name": "k", "group": "default"},
                                  {"name": "k", "group": "team"}])
def test_a_confined_account_may_give_its_keys_only_its_own_plans(manager, body):
    with pytest.raises(InvalidRequest) as caught:
        manager.create(confined("pro"), parse(KeyCreate, body))
    assert (caught.value.param, caught.value.code) == ("group", "invalid_group")
    assert "its plans: `pro`" in caught.value.message
    assert manager.create(confined("pro"), parse(KeyCreate, {"name": "k", "group": "pro"})).key.group == "pro"


def test_an_account_that_was_not_confined_keeps_the_default_plan(manager):
    account = Account("acct_1", "a@example.com", 0, groups=("pro",))
    assert manager.create(account, parse(KeyCreate, {"name": "k"})).key.group is None
    assert manager.create(account, parse(KeyCreate, {"name": "k", "group": "default"})).key.group is None
