"""The gateway functions' IAM policy for one stage, derived from its resource prefix.

    python -m infra.iam_policy --prefix tokenway-dev > .chalice/policy-dev.json
    python -m infra.iam_policy --stages      # rewrites .chalice/policy-<stage>.json for every stage

Every function of a stage (the Chalice API, the sweeper, the usage forwarder, the streaming function)
runs under a role with this policy. It names the stage's own resources only — the tables and indexes of
infra/template.yaml, the usage stream, the request log's Athena workgroup with the Glue table and bucket
paths Athena reads and writes for the caller, the KMS key that seals channel keys, the stage's secret and
the functions' log groups — and only the actions the code performs there. tests/aws_calls.py records
the AWS operations the test suite makes from the gateway's code and fails when this policy lacks one
or grants one nothing uses.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from chalicelib.config import Settings

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "infra" / "template.yaml"
CHALICE_CONFIG = ROOT / ".chalice" / "config.json"

# What the code does to each table of infra/template.yaml (named without the prefix), and the indexes it
# queries: chalicelib/storage/dynamodb/. A table or index not listed is not reachable. A transaction is
# authorized item by item, with the action of each (PutItem, UpdateItem, DeleteItem, ConditionCheckItem):
# IAM has no TransactWriteItems action. The transactions hold Put, Update and Delete items, each with its
# own condition, and no ConditionCheck items.
TABLE_ACCESS: dict[str, tuple[str, ...]] = {
    "accounts": ("GetItem", "PutItem", "Scan", "UpdateItem"),
    "emails": ("GetItem", "PutItem"),
    "sessions": ("DeleteItem", "GetItem", "PutItem"),
    "login-attempts": ("DeleteItem", "GetItem", "UpdateItem"),
    "limits": ("DeleteItem", "GetItem", "PutItem", "Scan", "UpdateItem"),
    "password-links": ("DeleteItem", "GetItem", "PutItem"),
    # Keys found through an index (which holds keys only) are read from the table, many at once.
    "keys": ("BatchGetItem", "GetItem", "PutItem", "UpdateItem"),
    # The ledger is append-only: an entry is never updated or deleted.
    "ledger": ("GetItem", "PutItem", "Query"),
    "holds": ("DeleteItem", "PutItem", "Scan"),
    "catalog": ("GetItem", "PutItem", "Scan", "UpdateItem"),
    "orders": ("GetItem", "PutItem", "Scan", "UpdateItem"),
    "payment-events": ("GetItem", "PutItem"),
    "codes": ("DeleteItem", "GetItem", "PutItem", "Scan", "UpdateItem"),
    "usage-rollups": ("Query", "UpdateItem"),
    # Written by the transaction that closes a request; read only through its stream (below).
    "usage-outbox": ("PutItem",),
}
INDEX_QUERIES: dict[str, tuple[str, ...]] = {
    "keys": ("account-index", "key-id-index"),
    "orders": ("account-index", "payment-intent-index", "status-index"),
    "codes": ("code-id-index",),
    "usage-rollups": ("day-index",),
}


def secret_name(prefix: str) -> str:
    """The stage's Secrets Manager secret (TOKENWAY_SECRETS_ID in .chalice/config.json)."""
    return f"{prefix}/secrets"


@dataclass(frozen=True)
class Stage:
    """One stage's names. Region and account default to any: the names are the stage's own in each."""

    prefix: str
    region: str = "*"
    account: str = "*"
    # The usage bucket (the stack's output UsageBucketName). CloudFormation names it
    # `<stack>-usagebucket-<random>`; by default the stack is named as the prefix (the README's command).
    bucket: str | None = None
    # The functions' names start with this (Chalice: `<app>-<stage>`, `<app>-<stage>-<function>`).
    functions: str | None = None
    # The only sender the functions may send email as (TOKENWAY_MAIL_FROM's address); None: any.
    mail_from: str | None = None

    @property
    def settings(self) -> Settings:
        """The names the gateway derives from the prefix; not read from this machine's environment."""
        return Settings.model_construct(resource_prefix=self.prefix)

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account}:{resource}"

    @property
    def bucket_arn(self) -> str:
        return f"arn:aws:s3:::{self.bucket or self.prefix + '-usagebucket-*'}"


def _tables(stage: Stage) -> list[dict[str, Any]]:
    # One statement per set of actions, for the tables granted exactly that set.
    by_actions: dict[tuple[str, ...], list[str]] = {}
    for table in template_tables():
        if table in TABLE_ACCESS:
            arn = stage.arn("dynamodb", f"table/{stage.prefix}-{table}")
            by_actions.setdefault(TABLE_ACCESS[table], []).append(arn)
    return [_allow(f"Tables{number}", [f"dynamodb:{action}" for action in actions], resources)
            for number, (actions, resources) in enumerate(by_actions.items(), start=1)]


def _indexes(stage: Stage) -> list[dict[str, Any]]:
    return [_allow("TableIndexes", ["dynamodb:Query"],
                   [stage.arn("dynamodb", f"table/{stage.prefix}-{table}/index/{index}")
                    for table, indexes in template_tables().items() for index in indexes
                    if index in INDEX_QUERIES.get(table, ())])]


def _usage_stream(stage: Stage) -> dict[str, Any]:
    # The usage forwarder's batches, and an event whose transaction could not carry it (a batch of one).
    return _allow("UsageStream", ["firehose:PutRecordBatch"],
                  [stage.arn("firehose", f"deliverystream/{stage.settings.usage_stream_name}")])


def _outbox_stream(stage: Stage) -> list[dict[str, Any]]:
    # Read by Lambda for the usage forwarder (its event source), with the function's role; ListStreams
    # names no resource.
    return [_allow("UsageOutboxStream", ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"],
                   [stage.arn("dynamodb", f"table/{stage.prefix}-usage-outbox/stream/*")]),
            _allow("UsageOutboxStreams", ["dynamodb:ListStreams"], ["*"])]


def _mail(stage: Stage) -> dict[str, Any]:
    # The password-reset emails, through SES (providers/ses_mail.py). An identity's ARN names the sender's
    # domain or address, which the stage chooses with TOKENWAY_MAIL_FROM: any identity of the account in
    # the region, and only that sender when the policy is made with --mail-from.
    statement = _allow("Mail", ["ses:SendEmail"], [stage.arn("ses", "identity/*")])
    if stage.mail_from:
        statement["Condition"] = {"StringEquals": {"ses:FromAddress": stage.mail_from}}
    return statement


def _request_log(stage: Stage) -> dict[str, Any]:
    return _allow("RequestLogQueries", ["athena:GetQueryExecution", "athena:GetQueryResults",
                                        "athena:StartQueryExecution", "athena:StopQueryExecution"],
                  [stage.arn("athena", f"workgroup/{stage.settings.usage_workgroup}")])


def _request_log_catalog(stage: Stage) -> dict[str, Any]:
    # Athena reads the table's definition from Glue with the caller's permissions.
    database, table = stage.settings.usage_database, stage.settings.usage_table
    return _allow("RequestLogCatalog", ["glue:GetDatabase", "glue:GetPartitions", "glue:GetTable"],
                  [stage.arn("glue", "catalog"), stage.arn("glue", f"database/{database}"),
                   stage.arn("glue", f"table/{database}/{table}")])


def _request_log_bucket(stage: Stage) -> dict[str, Any]:
    return _allow("RequestLogBucket", ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
                  [stage.bucket_arn])


def _request_log_reads(stage: Stage) -> dict[str, Any]:
    # Athena reads the usage objects and hands back results it wrote, as the caller.
    return _allow("RequestLogReads", ["s3:GetObject"],
                  [f"{stage.bucket_arn}/usage/*", f"{stage.bucket_arn}/athena-results/*"])


def _request_log_results(stage: Stage) -> dict[str, Any]:
    # The workgroup's result location (infra/template.yaml), written by Athena as the caller.
    return _allow("RequestLogResults", ["s3:AbortMultipartUpload", "s3:ListMultipartUploadParts", "s3:PutObject"],
                  [f"{stage.bucket_arn}/athena-results/*"])


def _channel_keys(stage: Stage) -> dict[str, Any]:
    # A key's ARN holds a random id: the key is named by the alias the template gives it.
    statement = _allow("ChannelKeySealing", ["kms:Decrypt", "kms:GenerateDataKey"], [stage.arn("kms", "key/*")])
    statement["Condition"] = {"ForAnyValue:StringEquals": {"kms:ResourceAliases": stage.settings.secrets_kms_key_id}}
    return statement


def _secrets(stage: Stage) -> dict[str, Any]:
    # Secrets Manager appends a hyphen and six random characters to a secret's name in its ARN.
    return _allow("StageSecrets", ["secretsmanager:GetSecretValue"],
                  [stage.arn("secretsmanager", f"secret:{secret_name(stage.prefix)}-??????")])


def _logs(stage: Stage) -> dict[str, Any]:
    # Written by the Lambda runtime for the functions, not by the gateway's code. `chalice deploy` names the
    # functions `<app>-<stage>` and `<app>-<stage>-<function>` (the prefix, for the stages of config.json); a
    # packaged stack names them `<stack>-<LogicalId>-<random>` (a stack named `<prefix>-api`).
    group = f"log-group:/aws/lambda/{stage.functions or stage.prefix}"
    return _allow("FunctionLogs", ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                  [stage.arn("logs", group), stage.arn("logs", f"{group}:*"), stage.arn("logs", f"{group}-*")])


# One statement per use; a new use of AWS is one more function here (and its calls, in the tests, are
# what keeps it honest).
STATEMENTS: tuple[Callable[[Stage], dict[str, Any] | list[dict[str, Any]]], ...] = (
    _tables, _indexes, _usage_stream, _outbox_stream, _request_log, _request_log_catalog, _request_log_bucket,
    _request_log_reads, _request_log_results, _channel_keys, _secrets, _mail, _logs,
)

# Granted for what AWS does on the code's behalf rather than for a call the code makes: Athena reads
# the Glue table and the bucket, and writes its results, with the caller's permissions; Lambda writes
# the functions' logs.
ON_BEHALF = {
    "athena:StartQueryExecution": ("glue:GetDatabase", "glue:GetPartitions", "glue:GetTable",
                                   "s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads",
                                   "s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload",
                                   "s3:ListMultipartUploadParts"),
    "athena:GetQueryResults": ("s3:GetObject",),
}
RUNTIME_ACTIONS = ("logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
                   # Lambda reading the usage-outbox stream for the usage forwarder.
                   "dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator",
                   "dynamodb:ListStreams")


def policy(stage: Stage) -> dict[str, Any]:
    """The stage's policy document."""
    statements: list[dict[str, Any]] = []
    for make in STATEMENTS:
        made = make(stage)
        statements += made if isinstance(made, list) else [made]
    return {"Version": "2012-10-17", "Statement": statements}


def _allow(sid: str, actions: Any, resources: list[str]) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": sorted(actions), "Resource": resources}


class _TemplateLoader(yaml.SafeLoader):
    """CloudFormation's short-form tags (!Sub, !Ref, …) read as their long forms."""


_TemplateLoader.add_multi_constructor(
    "!", lambda loader, tag, node: {f"Fn::{tag}": loader.construct_scalar(node)
                                    if isinstance(node, yaml.ScalarNode) else None})


@functools.cache
def template_tables() -> dict[str, tuple[str, ...]]:
    """The DynamoDB tables of infra/template.yaml, named without the prefix, and each one's indexes."""
    template = yaml.load(TEMPLATE.read_text(encoding="utf-8"), Loader=_TemplateLoader)  # noqa: S506 (safe loader)
    tables = {}
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::DynamoDB::Table":
            continue
        name = resource["Properties"]["TableName"]["Fn::Sub"]
        assert name.startswith("${ResourcePrefix}-"), name
        tables[name.removeprefix("${ResourcePrefix}-")] = tuple(
            index["IndexName"] for index in resource["Properties"].get("GlobalSecondaryIndexes", []))
    unknown = (TABLE_ACCESS.keys() | INDEX_QUERIES.keys()) - tables.keys()
    unknown |= {f"{table}/{index}" for table, indexes in INDEX_QUERIES.items() for index in indexes
                if index not in tables.get(table, ())}
    if unknown:
        raise ValueError(f"not in {TEMPLATE.name}: {', '.join(sorted(unknown))}")
    return tables


def stage_policies() -> dict[Path, dict[str, Any]]:
    """Each stage's policy file of .chalice/config.json and its content, from the stage's prefix."""
    config = json.loads(CHALICE_CONFIG.read_text(encoding="utf-8"))
    return {CHALICE_CONFIG.parent / stage["iam_policy_file"]:
            policy(Stage(stage["environment_variables"]["TOKENWAY_RESOURCE_PREFIX"]))
            for stage in config["stages"].values()}


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.iam_policy", description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--prefix", help="the stage's resource prefix (TOKENWAY_RESOURCE_PREFIX): print its policy")
    which.add_argument("--stages", action="store_true", help="write every stage's policy file of .chalice/config.json")
    parser.add_argument("--bucket", help="the usage bucket's name (stack output UsageBucketName); "
                                         "default: the one of a stack named as the prefix")
    parser.add_argument("--region", default="*")
    parser.add_argument("--account", default="*")
    parser.add_argument("--functions", help="the start of the functions' names (default: the prefix)")
    parser.add_argument("--mail-from", help="the one address the functions may send email as (TOKENWAY_MAIL_FROM)")
    args = parser.parse_args(argv)
    if args.stages:
        for path, document in stage_policies().items():
            path.write_text(render(document), encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)
        return 0
    stage = Stage(args.prefix, region=args.region, account=args.account, bucket=args.bucket, functions=args.functions,
                  mail_from=args.mail_from)
    sys.stdout.write(render(policy(stage)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
