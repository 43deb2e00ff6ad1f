"""Token management over SQLite storage: validation, ownership, revoke and regenerate."""

from __future__ import annotations

import pytest

from chalicelib.catalog.catalog import Catalog
from chalicelib.core.domain import Account, ApiKey, Group, Hold, LedgerEntry
from chalicelib.core.errors import InvalidRequest, NotFound
from chalicelib.core.validation import parse
from chalicelib.keys.auth import KeyHasher
from chalicelib.keys.manage import KeyCreate, KeyManager, KeyUpdate
from tests.sqlite_store import Store, store_in

NOW = 1_800_000_000_000
ALICE = Account("acct_alice", "alice@example.com", 0, groups=("pro",))
BOB = Account("acct_bob", "bob@example.com", 0)


@pytest.fixture
def store(tmp_path) -> Store:
    return store_in(tmp_path)


@pytest.fixture
def keys(store):
    return store.keys


@pytest.fixture
def manager(store, keys):
    catalog_repo = store.catalog
    catalog_repo.put_group(Group("pro", multiplier_ppm=1_200_000))
    catalog_repo.put_group(Group("vip"))
    return KeyManager(keys, Catalog(catalog_repo, {}, ttl_s=0), KeyHasher(), now_ms=lambda: NOW)


def test_a_key_is_created_with_its_limits_and_its_secret_is_only_in_the_answer(manager, store):
    created = manager.create(ALICE, parse(KeyCreate, {
        "name": " Production ", "group": "pro", "expires_at": "2030-01-01T00:00:00Z", "quota_usd": "12.5",
        "models": ["deepseek-chat", "deepseek-chat", "gpt-4o"], "allowed_ips": ["10.0.0.0/8", "192.168.1.7"]}))
    key = created.key
    assert created.secret.startswith("sk-") and len(created.secret) >= 51
    assert (key.name, key.group, key.quota, key.status) == ("Production", "pro", 12_500_000_000, "active")
    assert key.expires_at == 1_893_456_000_000
    assert key.models == ("deepseek-chat", "gpt-4o")
    assert key.cidrs == ("10.0.0.0/8", "192.168.1.7/32")
    assert created.secret.encode() not in store.file_bytes() and key.hint.endswith(created.secret[-4:])


@pytest.mark.parametrize("body, param", [
    ({"name": ""}, "name"),
    ({"name": "   "}, "name"),
    ({"name": "x" * 51}, "name"),
    ({"name": "k", "allowed_ips": ["10.0.0.0/33"]}, "allowed_ips"),
    ({"name": "k", "allowed_ips": ["not-an-ip"]}, "allowed_ips"),
    ({"name": "k", "group": "vip"}, "group"),  # exists, but not one Alice may use
    ({"name": "k", "group": "nope"}, "group"),
    ({"name": "k", "models": ["no-such-model"]}, "models"),
    ({"name": "k", "expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
    ({"name": "k", "quota_usd": "-1"}, "quota_usd"),
    ({"name": "k", "quota_usd": 1.5}, "quota_usd"),
    ({"name": "k", "surprise": 1}, "surprise"),
])
def test_bad_settings_are_refused_naming_the_field_and_nothing_is_written(manager, store, body, param):
    with pytest.raises(InvalidRequest) as caught:
        manager.create(ALICE, parse(KeyCreate, body))
    assert caught.value.param == param
    assert store.rows("SELECT * FROM keys") == []


def test_updates_change_only_what_is_sent_and_null_clears(manager):
    key = manager.create(ALICE, parse(KeyCreate, {"name": "k", "quota_usd": "1", "models": ["gpt-4o"]})).key
    updated = manager.update(ALICE, key.key_id, parse(KeyUpdate, {"name": "Renamed", "enabled": False}))
    assert (updated.name, updated.status, updated.quota, updated.models) == ("Renamed", "disabled", 10**9, ("gpt-4o",))
    cleared = manager.update(ALICE, key.key_id, parse(KeyUpdate, {"quota_usd": None, "models": [], "enabled": True}))
    assert (cleared.quota, cleared.quota_left, cleared.models, cleared.status) == (None, None, (), "active")


def spend(store: Store, key: ApiKey, *, spent: int, reserved: int) -> None:
    """Two requests on the key: one settled at `spent`, one in flight holding `reserved`."""
    store.accounts.create(ALICE)
    store.wallets.credit(LedgerEntry(ALICE.account_id, f"{NOW:013d}#credit", "credit", 10_000, NOW))
    for request_id, amount in (("r1", spent), ("r2", reserved)):
        store.wallets.hold(Hold(request_id, ALICE.account_id, key.key_hash, amount, NOW, NOW + 60_000))
    store.wallets.settle(Hold("r1", ALICE.account_id, key.key_hash, spent, NOW, NOW + 60_000), spent,
                         LedgerEntry(ALICE.account_id, f"{NOW:013d}#r1", "charge", 0, NOW, request_id="r1"))


def test_a_quota_starts_from_what_the_key_has_spent_and_holds(manager, store):
    key = manager.create(ALICE, parse(KeyCreate, {"name": "k"})).key
    spend(store, key, spent=300, reserved=200)
    updated = manager.update(ALICE, key.key_id, parse(KeyUpdate, {"quota_usd": "0.000001"}))  # 1000 units
    assert updated.quota_left == 500


def test_another_accounts_key_is_not_found(manager):
    key = manager.create(ALICE, parse(KeyCreate, {"name": "k"})).key
    for act in (lambda: manager.get(BOB.account_id, key.key_id),
                lambda: manager.update(BOB, key.key_id, parse(KeyUpdate, {"name": "mine"})),
                lambda: manager.revoke(BOB.account_id, key.key_id),
                lambda: manager.regenerate(BOB.account_id, key.key_id)):
        with pytest.raises(NotFound):
            act()
    assert manager.get(ALICE.account_id, key.key_id).name == "k"


def test_a_revoked_key_disappears_from_the_list_and_cannot_be_edited(manager):
    key = manager.create(ALICE, parse(KeyCreate, {"name": "k"})).key
    manager.create(ALICE, parse(KeyCreate, {"name": "other"}))
    manager.revoke(ALICE.account_id, key.key_id)
    assert [k.name for k in manager.list(ALICE.account_id)] == ["other"]
    with pytest.raises(NotFound):
        manager.update(ALICE, key.key_id, parse(KeyUpdate, {"enabled": True}))


def test_regenerate_gives_a_new_secret_with_the_same_settings(manager, keys):
    created = manager.create(ALICE, parse(KeyCreate, {"name": "k", "quota_usd": "2"}))
    again = manager.regenerate(ALICE.account_id, created.key.key_id)
    assert again.secret != created.secret
    assert again.key.key_id == created.key.key_id and again.key.quota == created.key.quota
    hasher = KeyHasher()
    assert keys.get_by_hash(hasher(created.secret)) is None
    assert keys.get_by_hash(hasher(again.secret)).key_id == created.key.key_id


def test_a_new_keys_whole_quota_is_left(manager):
    key = manager.create(ALICE, parse(KeyCreate, {"name": "k", "quota_usd": "3"})).key
    assert key.quota_left == key.quota == 3 * 10**9
