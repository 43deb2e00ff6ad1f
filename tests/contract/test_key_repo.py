"""Keys and their counters, against both implementations."""

from __future__ import annotations

import dataclasses

import pytest

from chalicelib.core.domain import Account, ApiKey, Hold, HoldResult, LedgerEntry

KEY = ApiKey(key_id="key_1", key_hash="a" * 64, account_id="acct_1", name="Production", created_at=2,
             hint="sk-abc…wxyz", models=("gpt-4o",), cidrs=("10.0.0.0/8",))


def hold(request_id: str, amount: int, *, key_quota: bool = False, at: int = 1_000) -> Hold:
    return Hold(request_id=request_id, account_id="acct_1", key_hash=KEY.key_hash, amount=amount, created_at=at,
                expires_at=at + 10_000, key_quota=key_quota)


def entry(request_id: str, prompt: int = 0, completion: int = 0) -> LedgerEntry:
    return LedgerEntry(account_id="acct_1", entry_id=f"0000000001000#{request_id}", kind="charge", amount=0,
                       created_at=2_000, request_id=request_id, prompt_tokens=prompt, completion_tokens=completion)


@pytest.fixture
def funded(repos):
    repos.accounts.create(Account(account_id="acct_1", email="a@example.com", created_at=1))
    repos.keys.create(KEY)
    repos.wallets.credit(LedgerEntry("acct_1", "0000000000000#credit", "credit", 10_000, 0))
    return repos


def test_keys_are_found_by_id_and_listed_by_account(repos):
    other = dataclasses.replace(KEY, key_id="key_2", key_hash="b" * 64, created_at=1)
    stranger = dataclasses.replace(KEY, key_id="key_3", key_hash="c" * 64, account_id="acct_2")
    for key in (KEY, other, stranger):
        repos.keys.create(key)
    assert repos.keys.get_by_id("key_1") == KEY
    assert repos.keys.get_by_id("key_9") is None
    assert [k.key_id for k in repos.keys.list_for_account("acct_1")] == ["key_2", "key_1"]


def test_saving_settings_keeps_the_counters(funded):
    funded.wallets.hold(hold("r1", 100))
    saved = funded.keys.save_settings(dataclasses.replace(
        KEY, name="Renamed", status="disabled", expires_at=99, models=(), cidrs=("1.2.3.4/32",), group="pro"))
    assert (saved.name, saved.status, saved.expires_at, saved.models, saved.cidrs, saved.group) == (
        "Renamed", "disabled", 99, (), ("1.2.3.4/32",), "pro")
    assert saved.reserved == 100 and saved.last_used_at == 1_000
    assert funded.keys.get_by_hash(KEY.key_hash) == saved
    cleared = funded.keys.save_settings(dataclasses.replace(saved, expires_at=None, group=None))
    assert (cleared.expires_at, cleared.group) == (None, None)


def test_a_new_quota_starts_from_spent_and_reserved(funded):
    funded.wallets.hold(hold("r1", 300))
    funded.wallets.settle(hold("r1", 300), 120, entry("r1"))
    funded.wallets.hold(hold("r2", 200))
    saved = funded.keys.save_settings(dataclasses.replace(KEY, quota=1_000))
    assert (saved.spent, saved.reserved, saved.quota_left) == (120, 200, 680)
    removed = funded.keys.save_settings(dataclasses.replace(saved, quota=None))
    assert (removed.quota, removed.quota_left) == (None, None)


def test_holds_count_against_the_key_quota_and_settling_gives_back_the_rest(funded):
    funded.keys.save_settings(dataclasses.replace(KEY, quota=500))
    assert funded.wallets.hold(hold("r1", 400, key_quota=True)) is HoldResult.HELD
    assert funded.wallets.hold(hold("r2", 101, key_quota=True)) is HoldResult.KEY_REFUSED
    funded.wallets.settle(hold("r1", 400, key_quota=True), 250, entry("r1", prompt=30, completion=12))
    key = funded.keys.get_by_hash(KEY.key_hash)
    assert (key.quota_left, key.spent, key.reserved, key.requests) == (250, 250, 0, 1)
    assert (key.prompt_tokens, key.completion_tokens) == (30, 12)
    assert funded.wallets.hold(hold("r3", 250, key_quota=True)) is HoldResult.HELD
    assert funded.wallets.release(hold("r3", 250, key_quota=True))
    assert funded.keys.get_by_hash(KEY.key_hash).quota_left == 250


def test_a_key_without_a_quota_record_refuses_holds_made_as_if_it_had_none(funded):
    funded.keys.save_settings(dataclasses.replace(KEY, quota=500))
    assert funded.wallets.hold(hold("r1", 10)) is HoldResult.KEY_REFUSED  # read before the quota was set


@pytest.mark.parametrize("changes", [{"status": "disabled"}, {"status": "revoked"}, {"expires_at": 1_000}])
def test_an_inactive_or_expired_key_cannot_hold(funded, changes):
    funded.keys.save_settings(dataclasses.replace(KEY, **changes))
    assert funded.wallets.hold(hold("r1", 10)) is HoldResult.KEY_REFUSED
    b = funded.wallets.balance("acct_1")
    assert (b.available, b.held) == (10_000, 0)


def test_regenerating_moves_the_key_and_its_counters(funded):
    funded.wallets.hold(hold("r1", 100))
    funded.wallets.settle(hold("r1", 100), 40, entry("r1"))
    moved = funded.keys.replace_hash(KEY, "d" * 64, "sk-new…abcd")
    assert funded.keys.get_by_hash(KEY.key_hash) is None
    assert funded.keys.get_by_hash("d" * 64) == moved
    assert (moved.key_id, moved.spent, moved.hint) == ("key_1", 40, "sk-new…abcd")


def test_a_request_in_flight_when_its_key_is_regenerated_still_settles(funded):
    funded.wallets.hold(hold("r1", 100))
    funded.keys.replace_hash(KEY, "d" * 64, "sk-new…abcd")
    assert funded.wallets.settle(hold("r1", 100), 40, entry("r1")).charged == 40
    b = funded.wallets.balance("acct_1")
    assert (b.available, b.held) == (9_960, 0)
