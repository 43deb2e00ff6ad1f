"""Each repository contract runs against SQLite (a database file in the test's temporary
directory) and against DynamoDB (moto), with tables provisioned from infra/template.yaml."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chalicelib.storage.dynamodb.account_repo import DynamoAccountRepo
from chalicelib.storage.dynamodb.catalog_repo import DynamoCatalogRepo
from chalicelib.storage.dynamodb.key_repo import DynamoKeyRepo
from chalicelib.storage.dynamodb.limit_repo import DynamoLimitRepo
from chalicelib.storage.dynamodb.login_attempt_repo import DynamoLoginAttemptRepo
from chalicelib.storage.dynamodb.password_link_repo import DynamoPasswordLinkRepo
from chalicelib.storage.dynamodb.session_repo import DynamoSessionRepo
from chalicelib.storage.dynamodb.usage_rollup_repo import DynamoUsageRollupRepo
from chalicelib.storage.dynamodb.wallet_repo import DynamoWalletRepo
from chalicelib.storage.ports import (
    AccountRepo,
    CatalogRepo,
    KeyRepo,
    LimitRepo,
    LoginAttemptRepo,
    PasswordLinkRepo,
    PaymentRepo,
    RedemptionRepo,
    SessionRepo,
    UsageRollupRepo,
    WalletRepo,
)
from chalicelib.storage.secrets.envelope import SecretSealer
from chalicelib.storage.secrets.local import KEY_BYTES, LocalKeyWrapper
from chalicelib.storage.sqlite.account_repo import SqliteAccountRepo
from chalicelib.storage.sqlite.catalog_repo import SqliteCatalogRepo
from chalicelib.storage.sqlite.database import Database
from chalicelib.storage.sqlite.key_repo import SqliteKeyRepo
from chalicelib.storage.sqlite.limit_repo import SqliteLimitRepo
from chalicelib.storage.sqlite.login_attempt_repo import SqliteLoginAttemptRepo
from chalicelib.storage.sqlite.password_link_repo import SqlitePasswordLinkRepo
from chalicelib.storage.sqlite.payment_repo import SqlitePaymentRepo
from chalicelib.storage.sqlite.redemption_repo import SqliteRedemptionRepo
from chalicelib.storage.sqlite.session_repo import SqliteSessionRepo
from chalicelib.storage.sqlite.usage_rollup_repo import SqliteUsageRollupRepo
from chalicelib.storage.sqlite.wallet_repo import SqliteWalletRepo
from devstack.emulator import provision
from tests.conftest import TEMPLATE

PREFIX = "contract"


@dataclass
class Repos:
    accounts: AccountRepo
    keys: KeyRepo
    wallets: WalletRepo
    catalog: CatalogRepo
    sessions: SessionRepo
    login_attempts: LoginAttemptRepo
    password_links: PasswordLinkRepo
    payments: PaymentRepo
    codes: RedemptionRepo
    rollups: UsageRollupRepo
    limits: LimitRepo | None = None
    dynamodb: Any = None  # the raw client, for tests that scan what was written
    sqlite: Database | None = None  # the database, for tests that read its rows


def _sqlite(path: Path) -> Repos:
    db = Database(path)
    return Repos(SqliteAccountRepo(db), SqliteKeyRepo(db), SqliteWalletRepo(db),
                 SqliteCatalogRepo(db, sealer=SecretSealer(LocalKeyWrapper(os.urandom(KEY_BYTES)))),
                 sessions=SqliteSessionRepo(db), login_attempts=SqliteLoginAttemptRepo(db),
                 password_links=SqlitePasswordLinkRepo(db), payments=SqlitePaymentRepo(db),
                 codes=SqliteRedemptionRepo(db), rollups=SqliteUsageRollupRepo(db),
                 limits=SqliteLimitRepo(db), sqlite=db)


@pytest.fixture(scope="session")
def _aws(emulator):
    provision(emulator.client, TEMPLATE, PREFIX)
    return emulator.client("dynamodb")


def _wipe(client: Any) -> None:
    for table in [t for t in client.list_tables()["TableNames"] if t.startswith(f"{PREFIX}-")]:
        schema = [k["AttributeName"] for k in client.describe_table(TableName=table)["Table"]["KeySchema"]]
        for page in client.get_paginator("scan").paginate(TableName=table):
            for item in page["Items"]:
                client.delete_item(TableName=table, Key={name: item[name] for name in schema})


def _dynamodb(client: Any) -> Repos:
    # Imported here, so that the SQLite cases run wherever the DynamoDB modules do not import.
    from chalicelib.storage.dynamodb.payment_repo import DynamoPaymentRepo
    from chalicelib.storage.dynamodb.redemption_repo import DynamoRedemptionRepo

    _wipe(client)
    name = lambda table: f"{PREFIX}-{table}"  # noqa: E731
    return Repos(
        DynamoAccountRepo(client, name("accounts"), emails=name("emails")),
        DynamoKeyRepo(client, name("keys")),
        DynamoWalletRepo(client, accounts=name("accounts"), holds=name("holds"), ledger=name("ledger"),
                         keys=name("keys"), rollups=name("usage-rollups"), outbox=name("usage-outbox")),
        DynamoCatalogRepo(client, name("catalog"), sealer=SecretSealer(LocalKeyWrapper(os.urandom(KEY_BYTES)))),
        sessions=DynamoSessionRepo(client, name("sessions")),
        login_attempts=DynamoLoginAttemptRepo(client, name("login-attempts")),
        password_links=DynamoPasswordLinkRepo(client, name("password-links")),
        payments=DynamoPaymentRepo(client, orders=name("orders"), events=name("payment-events"),
                                   catalog=name("catalog"), accounts=name("accounts"), ledger=name("ledger")),
        codes=DynamoRedemptionRepo(client, codes=name("codes"), accounts=name("accounts"), ledger=name("ledger")),
        rollups=DynamoUsageRollupRepo(client, name("usage-rollups")),
        limits=DynamoLimitRepo(client, name("limits")),
        dynamodb=client,
    )


@pytest.fixture(params=["sqlite", "dynamodb"])
def repos(request, tmp_path) -> Repos:
    if request.param == "sqlite":
        return _sqlite(tmp_path / "tokenway.db")
    return _dynamodb(request.getfixturevalue("_aws"))


@pytest.fixture
def dynamo_repos(_aws) -> Repos:
    """The DynamoDB implementations alone, for what only they have."""
    return _dynamodb(_aws)


@pytest.fixture
def sqlite_repos(tmp_path) -> Repos:
    """The SQLite implementations alone, for what only they have."""
    return _sqlite(tmp_path / "tokenway.db")
