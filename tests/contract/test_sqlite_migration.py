"""A data directory of an earlier gateway (schema version 1) opens at version 2 with its money
as it was: the wallet's new counters at zero, ledger kinds and credit claims renamed as the
customer reads them, and the new tables (payments, usage rollups) usable."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from chalicelib.core.domain import Channel, Hold, LedgerEntry, ModelEntry, ModelKind, Prices, Route
from chalicelib.core.payments import OrderStatus, TopupOrder
from chalicelib.core.usage import QUARTER_HOUR_MS, UsageDelta
from chalicelib.storage.secrets.envelope import SecretSealer
from chalicelib.storage.secrets.local import LocalKeyWrapper
from chalicelib.storage.sqlite.catalog_repo import SqliteCatalogRepo
from chalicelib.storage.sqlite.database import SCHEMA_VERSION, Database
from chalicelib.storage.sqlite.payment_repo import SqlitePaymentRepo
from chalicelib.storage.sqlite.usage_rollup_repo import SqliteUsageRollupRepo
from chalicelib.storage.sqlite.wallet_repo import SqliteWalletRepo

SCHEMA_V1 = Path(__file__).parent / "data" / "schema_v1.sql"
# What a version-1 gateway wrote: its kinds, and credits' claims in their entry ids.
V1_LEDGER = [
    ("0000000000001#credit#operator#aa", "operator", 300),
    ("0000000000002#credit#payment#bb", "payment", 500),
    ("0000000000003#credit#redemption#cc", "redemption", 100),
    ("0000000000004#credit", "credit", 100),
    ("0000000000005#r1", "charge", -300),
]
V1_CLAIMS = [("credit#operator#aa", "0000000000001#credit#operator#aa"),
             ("credit#payment#bb", "0000000000002#credit#payment#bb"),
             ("credit#redemption#cc", "0000000000003#credit#redemption#cc")]


@pytest.fixture
def v1_file(tmp_path) -> Path:
    path = tmp_path / "tokenway.db"
    with sqlite3.connect(path) as raw:
        raw.executescript(SCHEMA_V1.read_text())
        raw.execute("PRAGMA user_version = 1")
        raw.execute("INSERT INTO accounts (account_id, email, email_key, created_at, status, role, session_epoch, "
                    "groups, default_plan, available, held, shortfall) "
                    "VALUES ('acct_1', 'a@example.com', 'a@example.com', 1, 'active', 'customer', 0, '[]', 1, 600, "
                    "100, 40)")
        raw.executemany("INSERT INTO ledger (account_id, entry_id, kind, amount, created_at) "
                        "VALUES ('acct_1', ?, ?, ?, 0)", V1_LEDGER)
        raw.executemany("INSERT INTO credit_claims (claim, account_id, entry_id) VALUES (?, 'acct_1', ?)", V1_CLAIMS)
    raw.close()
    return path


def test_a_version_1_file_opens_at_version_2_with_its_balances_as_they_were(v1_file):
    wallets = SqliteWalletRepo(Database(v1_file))
    balance = wallets.balance("acct_1")
    assert (balance.available, balance.held, balance.shortfall) == (600, 100, 40)
    assert (balance.frozen, balance.debt, balance.disputes) == (0, 0, 0)
    assert sum(entry.amount for entry in wallets.ledger("acct_1")) == balance.net
    with sqlite3.connect(v1_file) as raw:
        assert raw.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,) == (2,)
    raw.close()


def test_ledger_kinds_claims_and_the_entry_ids_that_embed_them_are_renamed(v1_file):
    wallets = SqliteWalletRepo(Database(v1_file))
    assert [(entry.entry_id, entry.kind, entry.amount) for entry in wallets.ledger("acct_1")] == [
        ("0000000000001#credit#adjustment#aa", "adjustment", 300),
        ("0000000000002#credit#topup#bb", "topup", 500),
        ("0000000000003#credit#redeem#cc", "redeem", 100),
        ("0000000000004#credit", "adjustment", 100),
        ("0000000000005#r1", "charge", -300),
    ]
    # A credit repeated under the claim's new name finds the credit made before the upgrade.
    again = wallets.credit(LedgerEntry("acct_1", "0000000000009#credit#topup#bb", "topup", 500, 9),
                           claim="credit#topup#bb")
    assert not again.applied and again.entry.entry_id == "0000000000002#credit#topup#bb"
    assert wallets.balance("acct_1").available == 600


def test_the_upgraded_file_has_the_new_tables_and_guards(v1_file):
    db = Database(v1_file)
    payments = SqlitePaymentRepo(db)
    made = TopupOrder(order_id="ord_1", account_id="acct_1", status=OrderStatus.PENDING, pay_cents=500,
                      credit_units=5 * 10**9, bonus_units=0, created_at=10)
    payments.create_order(made)
    assert payments.get_order("ord_1") == made
    assert payments.record_event("evt_1", "checkout.session.completed", 10, 100)
    with sqlite3.connect(v1_file) as raw, pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        raw.execute("UPDATE accounts SET debt = -1 WHERE account_id = 'acct_1'")
    raw.close()
    # Opened again, the file is at version 2 already: nothing is renamed twice.
    assert [entry.kind for entry in SqliteWalletRepo(Database(v1_file)).ledger("acct_1")][:2] == ["adjustment",
                                                                                              "topup"]


def test_the_upgraded_file_rolls_up_usage_with_each_settlement(v1_file):
    db = Database(v1_file)
    wallets, rollups = SqliteWalletRepo(db), SqliteUsageRollupRepo(db)
    at = 100 * QUARTER_HOUR_MS
    # A hold left open by the earlier gateway, settled after the upgrade.
    with sqlite3.connect(v1_file) as raw:
        raw.execute("INSERT INTO holds (request_id, account_id, key_hash, amount, created_at, expires_at, key_quota, "
                    "plan) VALUES ('r9', 'acct_1', 'gone', 100, ?, ?, 0, 'default')", (at, at + 60_000))
    raw.close()
    hold = Hold(request_id="r9", account_id="acct_1", key_hash="gone", amount=100, created_at=at,
                expires_at=at + 60_000)
    delta = UsageDelta(at=at + 5, key_id="key_1", model="gpt-4o", channel=None, error=False, prompt_tokens=7,
                       latency_ms=80)
    settled = wallets.settle(hold, 60, LedgerEntry("acct_1", f"{at:013d}#r9", "charge", 0, at), delta)
    assert settled.charged == 60
    (row,) = rollups.rows("acct_1", at, at + QUARTER_HOUR_MS)
    assert (row.bucket, row.requests, row.cost, row.prompt_tokens, row.histogram[1]) == (at, 1, 60, 7, 1)
    assert rollups.rows(None, at, at + QUARTER_HOUR_MS) == [row]
    with sqlite3.connect(v1_file) as raw:
        assert raw.execute("SELECT name FROM sqlite_master WHERE name = 'usage_rollups_by_bucket'").fetchone()
    raw.close()


def test_the_upgraded_files_models_keep_their_prices_and_take_a_cache_write_price(v1_file):
    with sqlite3.connect(v1_file) as raw:
        raw.execute("INSERT INTO models (name, kind, input_per_1m, output_per_1m, cached_input_per_1m, per_image, "
                    "image_prices, routes, use_case, owned_by, cap_field, pass_through) VALUES ('old', 'chat', "
                    "3000, 15000, 300, 0, '[]', '[{\"channel\": \"c\", \"upstream_model\": \"u\"}]', '', "
                    "'c', 'max_tokens', '[]')")
    raw.close()
    catalog = SqliteCatalogRepo(Database(v1_file), sealer=SecretSealer(LocalKeyWrapper(b"k" * 32)))
    (old,) = catalog.load()[1]
    assert old.prices == Prices(input_per_1m=3000, output_per_1m=15000, cached_input_per_1m=300)
    assert old.prices.cache_write_rate == 3000  # none set: cache writes cost the input price
    catalog.put_channel(Channel("c", "https://api.anthropic.com/v1", "secret", kind="anthropic"))
    new = ModelEntry(name="new", kind=ModelKind.CHAT, routes=(Route("c", "u"),), max_output_tokens=10,
                     prices=Prices(input_per_1m=3000, output_per_1m=15000, cache_write_per_1m=3750))
    catalog.put_model(new)
    assert catalog.load()[1] == [new, old]
