"""The gateway functions' IAM policy for one stage, derived from its resource prefix.

    python -m infra.iam_policy --prefix tokenway-dev > .chalice/policy-dev.json
    python -m infra.iam_policy --stages      # rewrites .chalice/policy-<stage>.json for every stage

Every function of a stage (the Chalice API, the sweeper, the streaming function) runs under Chalice's
role with this policy. It names the stage's own resources only — the tables and indexes of
infra/template.yaml, the usage stream, the request log's Athena workgroup with the Glue table and bucket
paths Athena reads and writes for the caller, the KMS key that seals channel keys, the stage's secret and
the functions' log groups — and only the actions the code performs there. tests/aws_calls.py records
the AWS operations the test suite makes from the gateway's code and fails when this policy lacks one
or grants one nothing uses.
"""

from __future__ import annotations

import argparse
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

# What the repositories do to items (chalicelib/storage/dynamodb/). A transaction is authorized item by
# item, with the action of each (PutItem, UpdateItem, DeleteItem, ConditionCheckItem): IAM has no
# TransactWriteItems action. The transactions hold Put, Update and Delete items only, each with its own
# condition, so ConditionCheckItem is not granted.
TABLE_ACTIONS = ("dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:Scan",
                 "dynamodb:UpdateItem")
INDEX_ACTIONS = ("dynamodb:Query",)


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

    @property
    def settings(self) -> Settings:
        return Settings(resource_prefix=self.prefix, storage="dynamodb")

    def arn(self, service: str, resource: str, *, region: bool = True, account: bool = True) -> str:
        return f"arn:aws:{service}:{self.region if region else ''}:{self.account if account else ''}:{resource}"

    @property
    def bucket_arn(self) -> str:
        return f"arn:aws:s3:::{self.bucket or self.prefix + '-usagebucket-*'}"


def _tables(stage: Stage) -> dict[str, Any]:
    tables, _ = template_tables(stage.prefix)
    return _allow("Tables", TABLE_ACTIONS, [stage.arn("dynamodb", f"table/{name}") for name in tables])


def _indexes(stage: Stage) -> dict[str, Any]:
    _, indexes = template_tables(stage.prefix)
    return _allow("TableIndexes", INDEX_ACTIONS,
                  [stage.arn("dynamodb", f"table/{table}/index/{index}") for table, index in indexes])


def _usage_stream(stage: Stage) -> dict[str, Any]:
    return _allow("UsageStream", ["firehose:PutRecord"],
                  [stage.arn("firehose", f"deliverystream/{stage.settings.usage_stream_name}")])


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
# what keeps it honest). Email, when the gateway sends it, joins as `ses:SendEmail` on the stage's
# sending identity (`arn:aws:ses:<region>:<account>:identity/<domain>`).
STATEMENTS: tuple[Callable[[Stage], dict[str, Any]], ...] = (
    _tables, _indexes, _usage_stream, _request_log, _request_log_catalog, _request_log_bucket,
    _request_log_reads, _request_log_results, _channel_keys, _secrets, _logs,
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
RUNTIME_ACTIONS = ("logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents")


def policy(stage: Stage) -> dict[str, Any]:
    """The stage's policy document."""
    return {"Version": "2012-10-17", "Statement": [statement(stage) for statement in STATEMENTS]}


def _allow(sid: str, actions: Any, resources: list[str]) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": sorted(actions), "Resource": resources}


class _TemplateLoader(yaml.SafeLoader):
    """CloudFormation's short-form tags (!Sub, !Ref, …) read as their long forms."""


_TemplateLoader.add_multi_constructor(
    "!", lambda loader, tag, node: {f"Fn::{tag}": loader.construct_scalar(node)
                                    if isinstance(node, yaml.ScalarNode) else None})


def template_tables(prefix: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The stage's DynamoDB tables and (table, index) pairs, as infra/template.yaml makes them."""
    template = yaml.load(TEMPLATE.read_text(encoding="utf-8"), Loader=_TemplateLoader)  # noqa: S506 (safe loader)
    tables, indexes = [], []
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::DynamoDB::Table":
            continue
        name = resource["Properties"]["TableName"]["Fn::Sub"].replace("${ResourcePrefix}", prefix)
        tables.append(name)
        indexes += [(name, index["IndexName"]) for index in resource["Properties"].get("GlobalSecondaryIndexes", [])]
    return tables, indexes


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
    args = parser.parse_args(argv)
    if args.stages:
        for path, document in stage_policies().items():
            path.write_text(render(document), encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)
        return 0
    stage = Stage(args.prefix, region=args.region, account=args.account, bucket=args.bucket, functions=args.functions)
    sys.stdout.write(render(policy(stage)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
