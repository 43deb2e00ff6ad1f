"""What only the SQLite storage has: one file shared by worker processes, its schema, its rows,
and how its failures reach callers. The repository contracts themselves run in the other
contract tests, against every backend."""

from __future__ import annotations

import base64
import logging
import multiprocessing
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from chalicelib.core.domain import (
    Account,
    ApiKey,
    Channel,
    ConsoleSession,
    Hold,
    HoldResult,
    LedgerEntry,
    PasswordLink,
)
from chalicelib.core.errors import StorageError
from chalicelib.storage.secrets.envelope import SecretSealer
from chalicelib.storage.secrets.local import LocalKeyWrapper
from chalicelib.storage.sqlite.account_repo import SqliteAccountRepo
from chalicelib.storage.sqlite.catalog_repo import SqliteCatalogRepo
from chalicelib.storage.sqlite.database import SCHEMA_VERSION, Database
from chalicelib.storage.sqlite.key_repo import SqliteKeyRepo
from chalicelib.storage.sqlite.login_attempt_repo import SqliteLoginAttemptRepo
from chalicelib.storage.sqlite.password_link_repo import SqlitePasswordLinkRepo
from chalicelib.storage.sqlite.session_repo import SqliteSessionRepo
from chalicelib.storage.sqlite.wallet_repo import SqliteWalletRepo

KEY = ApiKey(key_id="key_1", key_hash="k" * 64, account_id="acct_1", name="Production", created_at=2,
             hint="sk-abc…wxyz")
FUNDS = 10_000


def open_repos(path: Path) -> tuple[SqliteAccountRepo, SqliteKeyRepo, SqliteWalletRepo]:
    db = Database(path)
    return SqliteAccountRepo(db), SqliteKeyRepo(db), SqliteWalletRepo(db)


def funded(path: Path, key: ApiKey = KEY) -> tuple[SqliteAccountRepo, SqliteKeyRepo, SqliteWalletRepo]:
    accounts, keys, wallets = open_repos(path)
    accounts.create(Account(account_id="acct_1", email="a@example.com", created_at=1))
    keys.create(key)
    wallets.credit(LedgerEntry("acct_1", "0000000000000#credit", "credit", FUNDS, 0))
    return accounts, keys, wallets


def hold(request_id: str, amount: int, *, key_quota: bool = False) -> Hold:
    return Hold(request_id=request_id, account_id="acct_1", key_hash=KEY.key_hash, amount=amount, created_at=1_000,
                expires_at=11_000, key_quota=key_quota)


def charge(request_id: str) -> LedgerEntry:
    return LedgerEntry(account_id="acct_1", entry_id=f"0000000001000#{request_id}", kind="charge", amount=0,
                       created_at=2_000, request_id=request_id, key_id="key_1")


# Worker processes racing on one wallet in one file.

def _spend(wallets: SqliteWalletRepo, worker: int, rounds: int, key_quota: bool, start: Any, results: Any) -> None:
    """One worker process: holds, then settles (often beyond the hold) or releases, reading the
    balance after each step. Reports (charged, holds placed, lowest available seen) or the error."""
    try:
        chance = random.Random(worker)
        start.wait()
        charged = placed = 0
        lowest = FUNDS
        for n in range(rounds):
            request = hold(f"w{worker}-{n}", chance.randint(1, 400), key_quota=key_quota)
            if wallets.hold(request) is HoldResult.HELD:
                placed += 1
                if chance.random() < 0.2:
                    wallets.release(request)
                else:
                    charged += wallets.settle(request, chance.randint(0, 900), charge(request.request_id)).charged
            lowest = min(lowest, wallets.balance("acct_1").available)
        results.put((charged, placed, lowest))
    except BaseException as exc:  # noqa: BLE001 - reported to the test process
        results.put(repr(exc))


def race_processes(wallets: SqliteWalletRepo, *, processes: int, rounds: int, key_quota: bool = False) -> list[Any]:
    """Run `_spend` in as many forked worker processes, started together. The wallet's database
    was opened (and used) by this process before the fork, as a server that loads the app
    before forking its workers does."""
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=_spend, args=(wallets, n, rounds, key_quota, start, results))
               for n in range(processes)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    assert [outcome for outcome in outcomes if isinstance(outcome, str)] == []
    return outcomes


def test_worker_processes_racing_on_one_wallet_never_take_it_below_zero(tmp_path):
    _, keys, wallets = funded(tmp_path / "tokenway.db")
    outcomes = race_processes(wallets, processes=4, rounds=150)

    balance = wallets.balance("acct_1")
    charged = sum(outcome[0] for outcome in outcomes)
    assert min(outcome[2] for outcome in outcomes) >= 0 and balance.available >= 0
    assert balance.held == 0 and balance.available == FUNDS - charged
    ledger = wallets.ledger("acct_1")
    assert sum(entry.amount for entry in ledger) == balance.available
    assert balance.shortfall == sum(entry.shortfall for entry in ledger)
    assert charged > FUNDS // 2  # the race did drain the wallet
    key = keys.get_by_id("key_1")
    assert (key.spent, key.reserved) == (charged, 0)
    assert wallets.expired_holds(10**15) == []


def test_worker_processes_racing_on_one_key_never_spend_past_its_quota(tmp_path):
    _, keys, wallets = funded(tmp_path / "tokenway.db", ApiKey(**{**KEY.__dict__, "quota": 3_000,
                                                                  "quota_left": 3_000}))
    outcomes = race_processes(wallets, processes=4, rounds=60, key_quota=True)

    key = keys.get_by_id("key_1")
    charged = sum(outcome[0] for outcome in outcomes)
    assert key.spent == charged == 3_000
    assert (key.quota_left, key.reserved) == (0, 0)
    assert wallets.balance("acct_1").available == FUNDS - 3_000
    assert sum(entry.amount for entry in wallets.ledger("acct_1")) == FUNDS - 3_000


def _open(path: Path, start: Any, results: Any) -> None:
    try:
        start.wait()
        accounts, _, wallets = open_repos(path)
        results.put(wallets.balance("acct_0").status)
    except BaseException as exc:  # noqa: BLE001 - reported to the test process
        results.put(repr(exc))


def test_processes_starting_together_on_a_new_file_create_its_schema_once(tmp_path):
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(4), context.Queue()
    workers = [context.Process(target=_open, args=(tmp_path / "new.db", start, results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    assert [results.get(timeout=60) for _ in workers] == ["missing"] * 4
    for worker in workers:
        worker.join(timeout=30)
    accounts, _, _ = open_repos(tmp_path / "new.db")
    accounts.create(Account(account_id="acct_0", email="z@example.com", created_at=1))


# The file.

def test_everything_written_is_there_when_the_file_is_opened_again(tmp_path):
    path = tmp_path / "tokenway.db"
    accounts, keys, wallets = funded(path)
    wallets.hold(hold("r1", 300))
    wallets.settle(hold("r1", 300), 120, charge("r1"))
    wallets.hold(hold("r2", 50))

    accounts, keys, wallets = open_repos(path)  # a restarted gateway
    assert accounts.get_by_email("A@example.com").account_id == "acct_1"
    assert keys.get_by_hash(KEY.key_hash).spent == 120
    balance = wallets.balance("acct_1")
    assert (balance.available, balance.held) == (FUNDS - 170, 50)
    assert [entry.amount for entry in wallets.ledger("acct_1")] == [FUNDS, -120]
    assert [h.request_id for h in wallets.expired_holds(11_000)] == ["r2"]


def test_a_new_file_is_in_wal_mode_at_the_current_schema_version(tmp_path):
    Database(tmp_path / "tokenway.db")
    with sqlite3.connect(tmp_path / "tokenway.db") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert raw.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


def test_a_file_from_a_newer_schema_is_refused_and_left_as_it_was(tmp_path):
    path = tmp_path / "tokenway.db"
    Database(path)
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StorageError, match=f"schema version {SCHEMA_VERSION + 1}"):
        Database(path)
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION + 1,)


def test_a_data_directory_that_cannot_be_made_is_a_clear_error_at_start(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StorageError, match=r"cannot open the database .*file/data/tokenway.db"):
        Database(tmp_path / "file" / "data" / "tokenway.db")


def test_a_writer_kept_waiting_past_the_busy_timeout_is_storage_unavailable(tmp_path):
    path = tmp_path / "tokenway.db"
    accounts, _, _ = open_repos(path)
    impatient = SqliteAccountRepo(Database(path, busy_timeout_ms=50))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with pytest.raises(StorageError) as failed:
            impatient.create(Account(account_id="acct_1", email="a@example.com", created_at=1))
        assert failed.value.status == 503 and failed.value.code == "storage_unavailable"
        assert failed.value.message == "storage is busy (write to the database)"
        assert accounts.get("acct_1") is None  # readers are not held up by the writer
    finally:
        other.execute("ROLLBACK")
        other.close()
    impatient.create(Account(account_id="acct_1", email="a@example.com", created_at=1))


def test_a_settlement_that_fails_midway_writes_none_of_it(tmp_path):
    path = tmp_path / "tokenway.db"
    _, keys, wallets = funded(path)
    wallets.hold(hold("r1", 300))
    with sqlite3.connect(path) as raw:  # the account vanishes between the hold and its settlement
        raw.execute("DELETE FROM accounts WHERE account_id = 'acct_1'")
    with pytest.raises(StorageError, match="account acct_1 of request r1 is missing"):
        wallets.settle(hold("r1", 300), 100, charge("r1"))
    assert [h.request_id for h in wallets.expired_holds(11_000)] == ["r1"]  # the hold is still open
    assert wallets.ledger("acct_1") == [LedgerEntry("acct_1", "0000000000000#credit", "credit", FUNDS, 0)]
    assert keys.get_by_id("key_1").reserved == 300


def test_a_write_that_would_break_an_invariant_is_refused_by_the_table_too(tmp_path):
    path = tmp_path / "tokenway.db"
    funded(path)
    with sqlite3.connect(path) as raw, pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        raw.execute("UPDATE accounts SET available = available - ? WHERE account_id = 'acct_1'", (FUNDS + 1,))


def test_expired_sessions_links_and_login_counters_are_removed_as_new_ones_are_written(tmp_path):
    db = Database(tmp_path / "tokenway.db")
    sessions, links, attempts = SqliteSessionRepo(db), SqlitePasswordLinkRepo(db), SqliteLoginAttemptRepo(db)
    sessions.create(ConsoleSession("old" * 20, "acct_1", 0, "c" * 64, created_at=1_000, expires_at=5_000))
    links.put(PasswordLink("acct_1", "l" * 64, created_at=1_000, expires_at=5_000))
    attempts.add("ip#1.2.3.4#1", 1, expires_at_s=5)
    sessions.create(ConsoleSession("new" * 20, "acct_2", 0, "c" * 64, created_at=6_000, expires_at=9_000))
    links.put(PasswordLink("acct_2", "m" * 64, created_at=6_000, expires_at=9_000))
    assert attempts.claim("lock#acct_2", now_s=6, until_s=60) == 0
    assert sessions.get("old" * 20) is None and sessions.get("new" * 20) is not None
    assert links.get("acct_1") is None and links.get("acct_2") is not None
    with sqlite3.connect(tmp_path / "tokenway.db") as raw:
        assert raw.execute("SELECT counter_id FROM login_attempts").fetchall() == [("lock#acct_2",)]


# Channel keys at rest.

def catalog(path: Path, key_file: Path) -> SqliteCatalogRepo:
    """The catalog as a newly started process builds it: nothing unwrapped yet."""
    return SqliteCatalogRepo(Database(path), sealer=SecretSealer(LocalKeyWrapper.from_file(key_file)))


def test_a_stored_channel_row_holds_no_plaintext_key_and_a_new_process_opens_it(tmp_path):
    key = "sk-up" + base64.urlsafe_b64encode(bytes(range(24))).decode() + "wxyz"
    catalog(tmp_path / "tokenway.db", tmp_path / "secrets.key").put_channel(
        Channel("deepseek", "https://api.deepseek.com/v1", key))
    with sqlite3.connect(tmp_path / "tokenway.db") as raw:
        raw.row_factory = sqlite3.Row
        (row,) = raw.execute("SELECT * FROM channels").fetchall()
    for value in tuple(row):
        assert key[5:-4].encode() not in (value if isinstance(value, bytes) else str(value).encode())
    assert row["api_key_wrapped_by"] == "local"
    channels, _, _ = catalog(tmp_path / "tokenway.db", tmp_path / "secrets.key").load()
    assert channels == [Channel("deepseek", "https://api.deepseek.com/v1", key)]


@pytest.mark.parametrize("column", ["api_key_sealed", "api_key_data_key"])
def test_a_channel_whose_sealed_key_was_altered_is_left_out_and_logged(tmp_path, column, caplog):
    path, key_file = tmp_path / "tokenway.db", tmp_path / "secrets.key"
    repo = catalog(path, key_file)
    repo.put_channel(Channel("tampered", "https://a.example/v1", "sk-one"))
    repo.put_channel(Channel("intact", "https://b.example/v1", "sk-two"))
    with sqlite3.connect(path) as raw:
        raw.execute(f"UPDATE channels SET {column} = substr({column}, 1, length({column}) - 1) || x'00' "
                    "WHERE name = 'tampered'")
    with caplog.at_level(logging.ERROR):
        assert [c.name for c in catalog(path, key_file).load()[0]] == ["intact"]
    assert "channel `tampered` is unavailable" in caplog.text and "sk-one" not in caplog.text


def test_a_sealed_key_moved_to_another_channel_or_made_text_does_not_open(tmp_path, caplog):
    path, key_file = tmp_path / "tokenway.db", tmp_path / "secrets.key"
    repo = catalog(path, key_file)
    for name in ("a", "b", "c"):
        repo.put_channel(Channel(name, f"https://{name}.example/v1", f"sk-{name}"))
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE channels SET (api_key_sealed, api_key_data_key) = "
                    "(SELECT api_key_sealed, api_key_data_key FROM channels WHERE name = 'a') WHERE name = 'b'")
        raw.execute("UPDATE channels SET api_key_sealed = 'text' WHERE name = 'c'")
    with caplog.at_level(logging.ERROR):
        assert [c.name for c in catalog(path, key_file).load()[0]] == ["a"]
    assert "channel `b` is unavailable" in caplog.text and "copied from another" in caplog.text
    assert "channel `c` is unavailable" in caplog.text
