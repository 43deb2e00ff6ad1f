"""Accounts with unique emails, console sessions, login counters and locks, set-password links: one
contract, two implementations."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from chalicelib.core.domain import Account, ConsoleSession, LedgerEntry, PasswordLink
from chalicelib.core.errors import Conflict, EmailTaken, NotFound

ALICE = Account(account_id="acct_alice", email="alice@example.com", created_at=10, role="admin",
                password_hash="scrypt$16$8$1$c2FsdA==$aGFzaA==", session_epoch=3, groups=("pro", "default"),
                default_plan=False)
BOB = Account(account_id="acct_bob", email="bob@example.org", created_at=20)
SESSION = ConsoleSession(session_hash="s" * 64, account_id="acct_alice", session_epoch=3, csrf_hash="c" * 64,
                         created_at=1_000, expires_at=43_201_500)


def test_an_account_keeps_every_field(repos):
    repos.accounts.create(ALICE)
    assert repos.accounts.get("acct_alice") == ALICE
    assert repos.accounts.get("acct_alice").groups == ("pro", "default")
    assert repos.accounts.get("acct_alice").default_plan is False


def test_an_account_is_found_by_email_in_any_case(repos):
    repos.accounts.create(ALICE)
    assert repos.accounts.get_by_email("alice@example.com") == ALICE
    assert repos.accounts.get_by_email("Alice@Example.com") == ALICE
    assert repos.accounts.get_by_email("bob@example.org") is None


def test_an_email_belongs_to_one_account_and_a_refused_create_writes_nothing(repos):
    repos.accounts.create(ALICE)
    twin = Account(account_id="acct_twin", email="ALICE@example.com", created_at=30)
    with pytest.raises(EmailTaken) as caught:
        repos.accounts.create(twin)
    assert caught.value.status == 409 and caught.value.code == "email_taken"
    assert repos.accounts.get("acct_twin") is None
    assert repos.accounts.list() == [ALICE]
    with pytest.raises(NotFound):  # no wallet was opened for it either
        repos.wallets.credit(LedgerEntry("acct_twin", "0001#credit", "credit", 5, 1))


def test_of_concurrent_creates_with_one_email_exactly_one_succeeds(repos):
    def create(n: int) -> str:
        try:
            repos.accounts.create(Account(account_id=f"acct_{n}", email="race@example.com", created_at=n))
        except EmailTaken:
            return "taken"
        return "created"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(create, range(8)))
    assert sorted(outcomes) == ["created"] + ["taken"] * 7
    winner = repos.accounts.get_by_email("race@example.com")
    assert repos.accounts.list() == [winner] and outcomes[int(winner.account_id.removeprefix("acct_"))] == "created"


def test_an_existing_id_is_a_conflict_and_does_not_claim_the_new_email(repos):
    repos.accounts.create(ALICE)
    with pytest.raises(Conflict) as caught:
        repos.accounts.create(Account(account_id="acct_alice", email="carol@example.com", created_at=30))
    assert not isinstance(caught.value, EmailTaken)
    repos.accounts.create(Account(account_id="acct_carol", email="carol@example.com", created_at=30))
    assert repos.accounts.get_by_email("carol@example.com").account_id == "acct_carol"


def test_the_listing_is_oldest_first_and_searches_email_and_id(repos):
    carol = Account(account_id="acct_carol", email="carol@example.com", created_at=5)
    for account in (BOB, ALICE, carol):
        repos.accounts.create(account)
    assert repos.accounts.list() == [carol, ALICE, BOB]
    assert repos.accounts.list("EXAMPLE.COM") == [carol, ALICE]
    assert repos.accounts.list("acct_b") == [BOB]
    assert repos.accounts.list("nobody") == []
    assert repos.accounts.list("") == [carol, ALICE, BOB]


def test_set_password_moves_the_session_epoch_on(repos):
    repos.accounts.create(BOB)
    updated = repos.accounts.set_password("acct_bob", "scrypt$new")
    assert (updated.password_hash, updated.session_epoch) == ("scrypt$new", 1)
    assert repos.accounts.set_password("acct_bob", "scrypt$newer").session_epoch == 2
    assert repos.accounts.get("acct_bob") == Account(**{**BOB.__dict__, "password_hash": "scrypt$newer",
                                                         "session_epoch": 2})


def test_status_and_groups_are_set_and_the_wallet_is_untouched(repos):
    repos.accounts.create(BOB)
    repos.wallets.credit(LedgerEntry("acct_bob", "0001#credit", "credit", 500, 1))
    assert repos.accounts.set_status("acct_bob", "disabled").status == "disabled"
    assert repos.accounts.set_groups("acct_bob", ("pro",)).groups == ("pro",)
    repos.accounts.set_password("acct_bob", "scrypt$new")
    assert repos.accounts.set_groups("acct_bob", ()).groups == ()
    assert repos.accounts.set_default_plan("acct_bob", False).default_plan is False
    balance = repos.wallets.balance("acct_bob")
    assert (balance.available, balance.held) == (500, 0)
    stored = repos.accounts.get("acct_bob")
    assert (stored.status, stored.groups, stored.email, stored.created_at) == ("disabled", (), BOB.email, 20)
    assert stored.default_plan is False and repos.accounts.set_default_plan("acct_bob", True).default_plan


@pytest.mark.parametrize("update", [
    lambda accounts: accounts.set_password("acct_nobody", "scrypt$x"),
    lambda accounts: accounts.set_status("acct_nobody", "disabled"),
    lambda accounts: accounts.set_groups("acct_nobody", ("pro",)),
    lambda accounts: accounts.set_default_plan("acct_nobody", False),
])
def test_updating_an_unknown_account_is_not_found_and_creates_nothing(repos, update):
    with pytest.raises(NotFound):
        update(repos.accounts)
    assert repos.accounts.get("acct_nobody") is None and repos.accounts.list() == []


def test_an_account_stored_before_roles_and_passwords_reads_with_defaults(dynamo_repos):
    repos = dynamo_repos  # only stored items can predate the fields
    repos.dynamodb.put_item(TableName="contract-accounts", Item={
        "account_id": {"S": "acct_old"}, "email": {"S": "old@example.com"}, "created_at": {"N": "1"},
        "status": {"S": "active"}, "available": {"N": "0"}, "held": {"N": "0"}})
    old = repos.accounts.get("acct_old")
    assert old == Account("acct_old", "old@example.com", 1)
    assert old.default_plan is True  # its `default` plan stays


def test_a_session_is_stored_read_and_deleted(repos):
    repos.sessions.create(SESSION)
    assert repos.sessions.get(SESSION.session_hash) == SESSION
    assert repos.sessions.get("0" * 64) is None
    with pytest.raises(Conflict):
        repos.sessions.create(SESSION)
    repos.sessions.delete(SESSION.session_hash)
    assert repos.sessions.get(SESSION.session_hash) is None
    repos.sessions.delete(SESSION.session_hash)  # gone already: nothing happens


def test_a_session_item_carries_its_ttl_in_seconds(dynamo_repos):
    repos = dynamo_repos  # the TTL attribute is DynamoDB's
    repos.sessions.create(SESSION)
    item = repos.dynamodb.get_item(TableName="contract-sessions", Key={"session_hash": {"S": SESSION.session_hash}})
    assert item["Item"]["expires_at_s"] == {"N": "43202"}  # rounded up: never removed before it expires


def test_login_counters_add_atomically_and_clear(repos):
    counters = repos.login_attempts
    assert [counters.add("email#a#1", 1, 900) for _ in range(3)] == [1, 2, 3]
    assert counters.add("ip#1.2.3.4#1", 1, 900) == 1
    assert counters.add("email#a#1", -1, 900) == 2
    counters.clear("email#a#1")
    assert counters.add("email#a#1", 1, 900) == 1
    assert counters.add("ip#1.2.3.4#1", 1, 900) == 2
    counters.clear("never#used")


def test_concurrent_additions_each_see_their_own_count(repos):
    with ThreadPoolExecutor(10) as pool:
        counts = list(pool.map(lambda _: repos.login_attempts.add("ip#9.9.9.9#1", 1, 900), range(20)))
    assert sorted(counts) == list(range(1, 21))


def test_a_counter_reads_zero_once_expired_or_cleared(repos):
    counters = repos.login_attempts
    assert counters.count("known#a#1.2.3.4", 100) == 0
    counters.add("known#a#1.2.3.4", 1, 200)
    counters.add("known#a#1.2.3.4", 1, 300)  # each addition moves the expiry on
    assert counters.count("known#a#1.2.3.4", 299) == 2
    assert counters.count("known#a#1.2.3.4", 300) == 0  # expired, whether or not storage removed it
    counters.clear("known#a#1.2.3.4")
    assert counters.count("known#a#1.2.3.4", 100) == 0


def test_a_lock_is_taken_until_its_time_and_then_free_again(repos):
    locks = repos.login_attempts
    assert locks.claim("lock#a", 1_000, 1_060) == 0
    assert locks.claim("lock#a", 1_030, 1_120) == 1_060  # taken: the holder's time is kept
    assert locks.claim("lock#a", 1_059, 1_059) == 1_060
    assert locks.claim("lock#a", 1_060, 1_180) == 0  # free from its end on
    assert locks.claim("lock#a", 1_061, 1_300) == 1_180
    assert locks.claim("lock#b", 1_061, 1_100) == 0  # another lock is another lock
    locks.clear("lock#a")
    assert locks.claim("lock#a", 1_062, 1_200) == 0


def test_of_concurrent_claims_of_a_free_lock_exactly_one_wins(repos):
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda n: repos.login_attempts.claim("lock#race", 5_000, 5_000 + 60 + n), range(16)))
    winners = [n for n, result in enumerate(results) if result == 0]
    assert len(winners) == 1
    assert {result for result in results if result} == {5_060 + winners[0]}


LINK = PasswordLink(account_id="acct_alice", link_hash="a" * 64, created_at=1_000, expires_at=259_201_000)


def test_a_password_link_is_stored_read_and_used_once(repos):
    links = repos.password_links
    assert links.get("acct_alice") is None
    links.put(LINK)
    assert links.get("acct_alice") == LINK
    assert not links.consume("acct_alice", "b" * 64, 2_000)  # another token
    assert links.get("acct_alice") == LINK
    assert links.consume("acct_alice", LINK.link_hash, 2_000)
    assert links.get("acct_alice") is None
    assert not links.consume("acct_alice", LINK.link_hash, 2_000)
    assert not links.consume("acct_nobody", LINK.link_hash, 2_000)


def test_a_new_password_link_replaces_the_earlier_one(repos):
    links = repos.password_links
    links.put(LINK)
    newer = PasswordLink(account_id="acct_alice", link_hash="c" * 64, created_at=5_000, expires_at=300_000_000)
    links.put(newer)
    assert links.get("acct_alice") == newer
    assert not links.consume("acct_alice", LINK.link_hash, 6_000)
    assert links.consume("acct_alice", newer.link_hash, 6_000)


def test_an_expired_password_link_cannot_be_used(repos):
    links = repos.password_links
    links.put(LINK)
    assert not links.consume("acct_alice", LINK.link_hash, LINK.expires_at)
    assert links.get("acct_alice") == LINK  # refused: nothing changed
    assert links.consume("acct_alice", LINK.link_hash, LINK.expires_at - 1)


def test_of_concurrent_uses_of_a_password_link_exactly_one_succeeds(repos):
    repos.password_links.put(LINK)
    with ThreadPoolExecutor(8) as pool:
        used = list(pool.map(lambda _: repos.password_links.consume("acct_alice", LINK.link_hash, 2_000), range(16)))
    assert sorted(used) == [False] * 15 + [True]


def test_a_password_link_item_carries_its_ttl_in_seconds(dynamo_repos):
    repos = dynamo_repos  # the TTL attribute is DynamoDB's
    repos.password_links.put(LINK)
    item = repos.dynamodb.get_item(TableName="contract-password-links", Key={"account_id": {"S": "acct_alice"}})
    assert item["Item"]["expires_at_s"] == {"N": "259201"}
