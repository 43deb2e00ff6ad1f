"""The stage policies: committed as infra/iam_policy.py makes them, each naming its own stage's resources
only, and the reading of AWS calls as IAM requests that tests/aws_calls.py checks them with."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from chalicelib.config import secret_env_names
from infra.iam_policy import (
    CHALICE_CONFIG,
    INDEX_QUERIES,
    RUNTIME_ACTIONS,
    TABLE_ACCESS,
    Stage,
    policy,
    render,
    secret_name,
    stage_policies,
)
from tests.aws_calls import allows, granted_actions, iam_requests, problems
from tests.conftest import ROOT

ARN = "arn:aws:{service}:eu-west-1:210987654321:{resource}"


def arn(service: str, resource: str) -> str:
    return ARN.format(service=service, resource=resource)


def test_each_stage_policy_file_is_the_generators_output_for_the_stages_prefix():
    files = stage_policies()
    assert {path.name for path in files} == {"policy-dev.json", "policy-prod.json"}
    for path, document in files.items():
        assert path.read_text(encoding="utf-8") == render(document), \
            f"{path.name} is stale: python -m infra.iam_policy --stages"
    assert not (CHALICE_CONFIG.parent / "policy.json").exists()


def test_each_stage_names_its_policy_and_its_secret_and_holds_no_secret_value():
    config = json.loads(CHALICE_CONFIG.read_text())
    assert config["autogen_policy"] is False and "iam_policy_file" not in config
    for name, stage in config["stages"].items():
        env = stage["environment_variables"]
        assert stage["iam_policy_file"] == f"policy-{name}.json"
        assert env["TOKENWAY_SECRETS_ID"] == secret_name(env["TOKENWAY_RESOURCE_PREFIX"])
        assert not set(env) & set(secret_env_names())
    assert not set(config["environment_variables"]) & set(secret_env_names())


def test_a_custom_prefix_gets_a_policy_for_its_own_resources_only():
    printed = subprocess.run([sys.executable, "-m", "infra.iam_policy", "--prefix", "acme-stg"], cwd=ROOT,
                             check=True, capture_output=True, text=True).stdout
    assert "tokenway" not in printed
    document = json.loads(printed)
    own = [
        ("dynamodb:PutItem", arn("dynamodb", "table/acme-stg-ledger"), None),
        ("dynamodb:UpdateItem", arn("dynamodb", "table/acme-stg-accounts"), None),
        ("dynamodb:Query", arn("dynamodb", "table/acme-stg-keys/index/key-id-index"), None),
        ("firehose:PutRecordBatch", arn("firehose", "deliverystream/acme-stg-usage"), None),
        ("dynamodb:GetRecords", arn("dynamodb", "table/acme-stg-usage-outbox/stream/2026-11-27T00:00:00.000"), None),
        ("athena:StartQueryExecution", arn("athena", "workgroup/acme-stg-usage"), None),
        ("glue:GetTable", arn("glue", "table/acme_stg/usage_events"), None),
        ("s3:PutObject", "arn:aws:s3:::acme-stg-usagebucket-1x2y3z/athena-results/q.csv", None),
        ("kms:Decrypt", arn("kms", "key/1234abcd-12ab-34cd-56ef-1234567890ab"), "alias/acme-stg-secrets"),
        ("secretsmanager:GetSecretValue", arn("secretsmanager", "secret:acme-stg/secrets-a1B2c3"), None),
        ("logs:PutLogEvents", arn("logs", "log-group:/aws/lambda/acme-stg-sweep:log-stream:x"), None),
        ("logs:CreateLogGroup", arn("logs", "log-group:/aws/lambda/acme-stg"), None),
        ("logs:CreateLogStream", arn("logs", "log-group:/aws/lambda/acme-stg:log-stream:x"), None),
    ]
    for request in own:
        assert allows(document, request), request
    others = [
        ("dynamodb:PutItem", arn("dynamodb", "table/acme-stg2-ledger"), None),
        ("dynamodb:PutItem", arn("dynamodb", "table/acme-stg-keys/index/key-id-index"), None),
        ("dynamodb:Query", arn("dynamodb", "table/acme-stg-keys/index/other-index"), None),
        ("dynamodb:DeleteTable", arn("dynamodb", "table/acme-stg-ledger"), None),
        ("dynamodb:ConditionCheckItem", arn("dynamodb", "table/acme-stg-accounts"), None),
        ("dynamodb:UpdateItem", arn("dynamodb", "table/acme-stg-ledger"), None),  # the ledger is append-only
        ("dynamodb:DeleteItem", arn("dynamodb", "table/acme-stg-ledger"), None),
        ("dynamodb:Query", arn("dynamodb", "table/acme-stg-accounts/index/email-index"), None),  # not queried
        ("firehose:PutRecordBatch", arn("firehose", "deliverystream/tokenway-dev-usage"), None),
        ("firehose:PutRecord", arn("firehose", "deliverystream/acme-stg-usage"), None),  # batches only
        ("s3:PutObject", "arn:aws:s3:::acme-stg-usagebucket-1x2y3z/usage/forged.json", None),
        ("kms:Decrypt", arn("kms", "key/1234abcd-12ab-34cd-56ef-1234567890ab"), "alias/tokenway-dev-secrets"),
        ("kms:Encrypt", arn("kms", "key/1234abcd-12ab-34cd-56ef-1234567890ab"), "alias/acme-stg-secrets"),
        ("secretsmanager:GetSecretValue", arn("secretsmanager", "secret:acme-stg/other-a1B2c3"), None),
        ("secretsmanager:PutSecretValue", arn("secretsmanager", "secret:acme-stg/secrets-a1B2c3"), None),
        ("logs:PutLogEvents", arn("logs", "log-group:/aws/lambda/acme-stg2:log-stream:x"), None),
    ]
    for request in others:
        assert not allows(document, request), request


def test_the_bucket_region_and_account_can_be_named():
    document = policy(Stage("acme-stg", region="eu-west-1", account="210987654321", bucket="my-usage"))
    assert allows(document, ("s3:GetObject", "arn:aws:s3:::my-usage/usage/year=2026/a.json", None))
    assert not allows(document, ("s3:GetObject", "arn:aws:s3:::acme-stg-usagebucket-1x2y3z/usage/a.json", None))
    assert not allows(document, ("dynamodb:GetItem", "arn:aws:dynamodb:us-east-1:210987654321:table/acme-stg-keys",
                                 None))


def test_the_dev_stage_may_not_touch_a_prod_resource():
    dev, prod = (json.loads((CHALICE_CONFIG.parent / f"policy-{name}.json").read_text()) for name in ("dev", "prod"))
    for statement in prod["Statement"]:
        for action in statement["Action"]:
            for resource in statement["Resource"]:
                if resource.endswith((":catalog", ":identity/*")) or resource == "*":
                    # The account's one Glue catalog and its SES sending identities (a stage pins its sender
                    # with --mail-from); listing the region's DynamoDB streams.
                    continue
                alias = statement.get("Condition", {}).get("ForAnyValue:StringEquals", {}).get("kms:ResourceAliases")
                assert not allows(dev, (action, resource.replace("*", "x"), alias)), (action, resource)


def test_a_transaction_is_authorized_item_by_item_and_an_index_query_on_the_index():
    table = "arn:aws:dynamodb:us-east-1:123456789012:table/"
    assert iam_requests("dynamodb", "TransactWriteItems", {"TransactItems": [
        {"Put": {"TableName": "p-ledger"}}, {"Update": {"TableName": "p-accounts"}},
        {"ConditionCheck": {"TableName": "p-keys"}}, {"Delete": {"TableName": "p-holds"}},
    ]}) == [("dynamodb:PutItem", table + "p-ledger", None), ("dynamodb:UpdateItem", table + "p-accounts", None),
            ("dynamodb:ConditionCheckItem", table + "p-keys", None), ("dynamodb:DeleteItem", table + "p-holds", None)]
    assert iam_requests("dynamodb", "Query", {"TableName": "p-keys", "IndexName": "account-index"}) == [
        ("dynamodb:Query", table + "p-keys/index/account-index", None)]
    assert iam_requests("dynamodb", "BatchWriteItem", {"RequestItems": {"p-codes": []}}) == [
        ("dynamodb:BatchWriteItem", table + "p-codes", None)]


def test_the_check_names_an_action_lacking_always_and_one_unused_on_a_whole_run():
    used = {("dynamodb:GetItem", "arn:aws:dynamodb:us-east-1:123456789012:table/p-keys", None),
            ("dynamodb:DeleteItem", "arn:aws:dynamodb:us-east-1:123456789012:table/p-ledger", None),
            ("dynamodb:GetItem", "arn:aws:dynamodb:us-east-1:123456789012:table/p-unknown", None)}
    partial = list(problems(used, whole_suite=False))
    assert partial == [
        "the policy lacks dynamodb:DeleteItem on arn:aws:dynamodb:us-east-1:123456789012:table/p-ledger "
        "(add it in infra/iam_policy.py)",
        "the policy lacks dynamodb:GetItem on arn:aws:dynamodb:us-east-1:123456789012:table/p-unknown "
        "(add it in infra/iam_policy.py)",
    ]
    whole = list(problems(used, whole_suite=True))
    assert whole[:2] == partial
    unused_actions = {line.split()[3] for line in whole[2:] if " on the " not in line}
    assert unused_actions == granted_actions() - {"dynamodb:GetItem", "dynamodb:DeleteItem", *RUNTIME_ACTIONS}
    assert "athena:StartQueryExecution" in unused_actions and "glue:GetTable" in unused_actions
    # GetItem is used, on the keys table only: its grant on every other table is unused.
    unused_tables = {line.split()[7] for line in whole[2:] if "dynamodb:GetItem on the table" in line}
    assert unused_tables == {table for table, actions in TABLE_ACCESS.items() if "GetItem" in actions} - {"keys"}


def test_every_table_and_index_grant_is_named_when_a_whole_run_did_not_use_it():
    every = {(f"dynamodb:{action}", f"arn:aws:dynamodb:us-east-1:123456789012:table/p-{table}", None)
             for table, actions in TABLE_ACCESS.items() for action in actions}
    every |= {("dynamodb:Query", f"arn:aws:dynamodb:us-east-1:123456789012:table/p-{table}/index/{index}", None)
              for table, indexes in INDEX_QUERIES.items() for index in indexes}
    others = {(action, None, "alias/p-secrets" if action.startswith("kms:") else None)
              for action in granted_actions() if not action.startswith("dynamodb:")}
    assert list(problems(every | others, whole_suite=True)) == []
    scan = ("dynamodb:Scan", "arn:aws:dynamodb:us-east-1:123456789012:table/p-catalog", None)
    by_day = ("dynamodb:Query", "arn:aws:dynamodb:us-east-1:123456789012:table/p-usage-rollups/index/day-index", None)
    assert list(problems(every - {scan, by_day} | others, whole_suite=True)) == [
        "the policy grants dynamodb:Query on the index day-index of the table usage-rollups but no call of the "
        "gateway's code needs it (remove it from infra/iam_policy.py)",
        "the policy grants dynamodb:Scan on the table catalog but no call of the gateway's code needs it "
        "(remove it from infra/iam_policy.py)",
    ]


@pytest.mark.parametrize("operation, on_behalf", [("StartQueryExecution", "glue:GetTable"),
                                                  ("GetQueryResults", "s3:GetObject")])
def test_what_athena_does_as_the_caller_is_granted_only_when_the_code_queries(operation, on_behalf):
    query = ("athena:" + operation, None, None)
    unused = {line.split()[3] for line in problems({query}, whole_suite=True)}
    assert on_behalf not in unused and "athena:" + operation not in unused
