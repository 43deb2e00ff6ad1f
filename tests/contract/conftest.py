"""Each repository contract runs against the in-memory implementation and against
DynamoDB (moto), with tables provisioned from infra/template.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from chalicelib.storage.account_repo import DynamoAccountRepo, InMemoryAccountRepo
from chalicelib.storage.dynamodb_repo import DynamoCatalogRepo, DynamoKeyRepo
from chalicelib.storage.dynamodb_wallet_repo import DynamoWalletRepo
from chalicelib.storage.memory_repo import InMemoryCatalogRepo, InMemoryKeyRepo, InMemoryWalletRepo
from chalicelib.storage.ports import AccountRepo, CatalogRepo, KeyRepo, WalletRepo
from devstack.emulator import provision
from tests.conftest import TEMPLATE

PREFIX = "contract"


@dataclass
class Repos:
    accounts: AccountRepo
    keys: KeyRepo
    wallets: WalletRepo
    catalog: CatalogRepo
    dynamodb: Any = None  # the raw client, for tests that scan what was written


def _memory() -> Repos:
    keys = InMemoryKeyRepo()
    wallets = InMemoryWalletRepo(keys)
    return Repos(InMemoryAccountRepo(wallets), keys, wallets, InMemoryCatalogRepo())


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
    _wipe(client)
    name = lambda table: f"{PREFIX}-{table}"  # noqa: E731
    return Repos(
        DynamoAccountRepo(client, name("accounts")),
        DynamoKeyRepo(client, name("keys")),
        DynamoWalletRepo(client, accounts=name("accounts"), holds=name("holds"), ledger=name("ledger"),
                         keys=name("keys")),
        DynamoCatalogRepo(client, name("catalog")),
        dynamodb=client,
    )


@pytest.fixture(params=["memory", "dynamodb"])
def repos(request) -> Repos:
    if request.param == "memory":
        return _memory()
    return _dynamodb(request.getfixturevalue("_aws"))
