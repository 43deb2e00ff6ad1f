"""infra/template.yaml has, for each stage's prefix (from its packaged functions' environment), every
table, index, key, stream, database, table, workgroup and key alias the code names, with the keys the
code reads them by. The names come from the code itself: the composition root's `table("…")` calls,
the DynamoDB adapters' index names and `Key=` dictionaries, and config.py's properties. (The contract
tests then run every adapter against tables the emulator provisions from this same template.)"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest

from chalicelib.config import Settings
from chalicelib.storage.local_usage_sink import USAGE_PREFIX
from tests.conftest import ROOT
from tests.deploy.conftest import STAGES, environment, resolve, resources_of

DEPS = ROOT / "chalicelib" / "deps.py"
DYNAMODB = ROOT / "chalicelib" / "storage" / "dynamodb"


def prefix_of(packaged: dict[str, Any], stage: str) -> str:
    env = environment(packaged[stage]["Resources"]["APIHandler"])
    return Settings(resource_prefix=env["TOKENWAY_RESOURCE_PREFIX"]).resource_prefix


def tables_by_repo() -> dict[str, set[str]]:
    """Repository class → the logical tables the composition root builds it with (`table("…")`)."""
    found: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse(DEPS.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id.startswith("Dynamo"):
            found[node.func.id] = {
                call.args[0].value for call in ast.walk(node)
                if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "table"}
    return found


def repo_modules() -> dict[str, Path]:
    """Repository class → the adapter module that defines it."""
    found = {}
    for path in DYNAMODB.glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef):
                found[node.name] = path
    return found


def index_names(path: Path) -> set[str]:
    """The GSI names a module uses: its string constants that name an index."""
    return {node.value for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"[a-z-]+-index",
                                                                                              node.value)}


def key_shapes(path: Path) -> set[frozenset[str]]:
    """The attribute names of each `Key=to_item({...})` (or `"Key": to_item({...})`) the module writes."""
    shapes: set[frozenset[str]] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        values = []
        if isinstance(node, ast.Call):
            values = [keyword.value for keyword in node.keywords if keyword.arg == "Key"]
        elif isinstance(node, ast.Dict):
            values = [value for key, value in zip(node.keys, node.values, strict=True)
                      if isinstance(key, ast.Constant) and key.value == "Key"]
        for value in values:
            if isinstance(value, ast.Call) and value.args and isinstance(value.args[0], ast.Dict):
                shapes.add(frozenset(key.value for key in value.args[0].keys if isinstance(key, ast.Constant)))
    return shapes


def key_schema(schema: list[dict[str, str]]) -> frozenset[str]:
    return frozenset(part["AttributeName"] for part in schema)


def infra_tables(infra: dict[str, Any], prefix: str) -> dict[str, dict[str, Any]]:
    """Table name (with `prefix`) → its properties."""
    return {resolve(table["Properties"]["TableName"], {"ResourcePrefix": prefix}): table["Properties"]
            for table in resources_of(infra, "AWS::DynamoDB::Table").values()}


def test_the_code_names_tables_indexes_and_keys() -> None:
    """The derivation below finds what it checks (an empty set would check nothing)."""
    repos = tables_by_repo()
    assert repos["DynamoWalletRepo"] == {"accounts", "holds", "ledger", "keys", "usage-rollups", "usage-outbox"}
    assert set().union(*repos.values()) >= {"accounts", "emails", "keys", "ledger", "holds", "catalog", "codes"}
    modules = repo_modules()
    assert index_names(modules["DynamoPaymentRepo"]) == {"account-index", "status-index", "payment-intent-index"}
    assert frozenset({"account_id", "entry_id"}) in key_shapes(modules["DynamoWalletRepo"])


@pytest.mark.parametrize("stage", STAGES)
def test_every_table_the_code_uses_exists_for_the_stages_prefix(
        packaged: dict[str, Any], infra: dict[str, Any], stage: str) -> None:
    settings = Settings(resource_prefix=prefix_of(packaged, stage))
    tables = infra_tables(infra, settings.resource_prefix)
    used = set().union(*tables_by_repo().values())
    assert {settings.table_name(table) for table in used} <= set(tables)
    # …and nothing in the template that no code uses.
    assert set(tables) == {settings.table_name(table) for table in used}


@pytest.mark.parametrize("stage", STAGES)
def test_every_index_is_on_a_table_its_repository_is_given(
        packaged: dict[str, Any], infra: dict[str, Any], stage: str) -> None:
    settings = Settings(resource_prefix=prefix_of(packaged, stage))
    tables = infra_tables(infra, settings.resource_prefix)
    modules = repo_modules()
    checked = 0
    for repo, logical in tables_by_repo().items():
        indexes = {index["IndexName"] for table in logical
                   for index in tables[settings.table_name(table)].get("GlobalSecondaryIndexes", [])}
        for name in index_names(modules[repo]):
            assert name in indexes, f"{repo} queries {name}, which none of {sorted(logical)} has"
            checked += 1
    assert checked >= 7


def test_every_key_the_code_reads_by_is_a_tables_whole_key(infra: dict[str, Any]) -> None:
    schemas = {key_schema(table["KeySchema"]) for table in infra_tables(infra, "any").values()}
    shapes = set().union(*(key_shapes(path) for path in DYNAMODB.glob("*.py")))
    assert len(shapes) >= 8
    for shape in shapes:
        assert shape in schemas, f"Key={sorted(shape)} is no table's key"


def test_every_index_key_is_declared_with_its_type(infra: dict[str, Any]) -> None:
    for properties in infra_tables(infra, "any").values():
        declared = {attribute["AttributeName"] for attribute in properties["AttributeDefinitions"]}
        keys = key_schema(properties["KeySchema"]).union(
            *(key_schema(index["KeySchema"]) for index in properties.get("GlobalSecondaryIndexes", [])))
        assert keys == declared, properties["TableName"]


@pytest.mark.parametrize("stage", STAGES)
def test_the_usage_stream_database_table_workgroup_and_secrets_key_are_the_ones_config_names(
        packaged: dict[str, Any], infra: dict[str, Any], stage: str) -> None:
    settings = Settings(resource_prefix=prefix_of(packaged, stage))
    parameters = {"ResourcePrefix": settings.resource_prefix}

    (stream,) = resources_of(infra, "AWS::KinesisFirehose::DeliveryStream").values()
    assert resolve(stream["Properties"]["DeliveryStreamName"], parameters) == settings.usage_stream_name
    destination = stream["Properties"]["ExtendedS3DestinationConfiguration"]
    # Firehose writes where the Glue table reads, in the layout the one-machine files copy.
    assert destination["BucketARN"] == {"Fn::GetAtt": ["UsageBucket", "Arn"]}
    assert destination["Prefix"].startswith(f"{USAGE_PREFIX}/year=")

    (database,) = resources_of(infra, "AWS::Glue::Database").values()
    assert resolve(database["Properties"]["DatabaseInput"]["Name"], parameters) == settings.usage_database
    (table,) = resources_of(infra, "AWS::Glue::Table").values()
    assert table["Properties"]["TableInput"]["Name"] == settings.usage_table
    assert table["Properties"]["DatabaseName"] == {"Ref": "UsageDatabase"}
    assert table["Properties"]["TableInput"]["StorageDescriptor"]["Location"] == {
        "Fn::Sub": f"s3://${{UsageBucket}}/{USAGE_PREFIX}/"}

    (workgroup,) = resources_of(infra, "AWS::Athena::WorkGroup").values()
    assert resolve(workgroup["Properties"]["Name"], parameters) == settings.usage_workgroup
    assert "${UsageBucket}" in workgroup["Properties"]["WorkGroupConfiguration"]["ResultConfiguration"][
        "OutputLocation"]["Fn::Sub"]

    (alias,) = resources_of(infra, "AWS::KMS::Alias").values()
    assert resolve(alias["Properties"]["AliasName"], parameters) == settings.secrets_kms_key_id


@pytest.mark.parametrize("stage", STAGES)
def test_the_infra_stack_accepts_the_stages_prefix(packaged: dict[str, Any], infra: dict[str, Any],
                                                    stage: str) -> None:
    pattern = infra["Parameters"]["ResourcePrefix"]["AllowedPattern"]
    assert re.fullmatch(pattern, prefix_of(packaged, stage))
