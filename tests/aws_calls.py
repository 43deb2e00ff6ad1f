"""Every AWS call the gateway's code makes during the test suite, checked against the stage policy.

A pytest plugin (tests/conftest.py loads it). Each test process registers a botocore
`provide-client-params` hook on every session it creates (botocore's built-in handlers list, read when a
session is made), and records a call when the code that made it — the innermost frame outside boto3 and
botocore — is the gateway's (`chalicelib/`): the repositories on a fixture's client count, a fixture's
own create_table or scan does not. Each call becomes the IAM requests AWS authorizes for it
(`iam_requests`), appended to this process's file in a directory the controller hands every pytest-xdist
worker.

The check runs on the controller in pytest_sessionfinish, after every worker has finished and written its
file; no test could be ordered after the tests of the other workers. It fails the run (exit status 1,
a section in the summary) when

- a recorded request is not allowed by the policy infra/iam_policy.py makes for the request's prefix
  (always: a subset of the suite proves this as well as the whole);
- the policy grants an action no recorded call needs, directly or through what AWS does on the code's
  behalf (`ON_BEHALF`, `RUNTIME_ACTIONS`), or a DynamoDB action on a table or index where no recorded call
  performs it — only when the whole suite ran and passed, since a partial or failing run need not have
  made every call.

`pytest --aws-calls PATH` also writes the recorded requests to PATH.

The one-machine server that some API tests run in a process of its own makes its AWS calls out of
sight; the same routes run in process too, and those are recorded.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.handlers
import pytest

from infra import iam_policy

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = str(ROOT / "chalicelib") + os.sep
LIBRARIES = tuple(os.path.dirname(module.__file__) + os.sep for module in (botocore, boto3))
# What the recording knows of the requests' account and region (the emulator's).
ACCOUNT, REGION = "123456789012", "us-east-1"

Request = tuple[str, str | None, str | None]  # IAM action, resource ARN (None: not named by the call), KMS alias


def iam_requests(service: str, operation: str, params: dict[str, Any]) -> list[Request]:
    """What IAM authorizes for one call: the botocore operation name is the IAM action under the service's
    signing name (dynamodb, firehose, athena, kms, secretsmanager; sesv2 signs as ses, so its SendEmail is
    ses:SendEmail), except where AWS authorizes a call by its parts."""
    def arn(kind: str, name: str) -> str:
        return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{kind}{name}"

    if service == "dynamodb":
        # A transaction is authorized item by item, with the action each item performs; IAM has no
        # TransactWriteItems or TransactGetItems action to grant. (BatchWriteItem and BatchGetItem, by
        # contrast, are actions of their own in IAM, granted per table.)
        if operation in ("TransactWriteItems", "TransactGetItems"):
            per_item = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                        "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}
            return [(f"dynamodb:{per_item[kind]}", arn("table/", part["TableName"]), None)
                    for item in params["TransactItems"] for kind, part in item.items()]
        if operation in ("BatchWriteItem", "BatchGetItem"):
            return [(f"dynamodb:{operation}", arn("table/", table), None) for table in params["RequestItems"]]
        table = params.get("TableName")
        if table and params.get("IndexName"):
            table = f"{table}/index/{params['IndexName']}"
        return [(f"dynamodb:{operation}", arn("table/", table) if table else None, None)]
    if service == "firehose" and "DeliveryStreamName" in params:
        return [(f"firehose:{operation}", arn("deliverystream/", params["DeliveryStreamName"]), None)]
    if service == "athena" and operation == "StartQueryExecution":
        return [("athena:StartQueryExecution", arn("workgroup/", params.get("WorkGroup", "primary")), None)]
    if service == "kms":
        # The key's ARN holds a random id; the policy names the key by its alias.
        key = params.get("KeyId", "")
        return [(f"kms:{operation}", arn("key/", "00000000-0000-0000-0000-000000000000"),
                 key if key.startswith("alias/") else None)]
    if service == "secretsmanager" and "SecretId" in params:
        secret = params["SecretId"]
        return [(f"secretsmanager:{operation}",
                 secret if secret.startswith("arn:") else arn("secret:", f"{secret}-AbCdEf"), None)]
    # The query's own calls (GetQueryExecution, …) name an execution id, whose workgroup the call does not say.
    return [(f"{service}:{operation}", None, None)]


def allows(policy: dict[str, Any], request: Request) -> bool:
    """Whether an Allow statement of `policy` covers the request (no Deny statements are used)."""
    action, resource, alias = request
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow", statement
        if not any(fnmatch.fnmatchcase(action, pattern) for pattern in _list(statement["Action"])):
            continue
        if resource is not None and not any(fnmatch.fnmatchcase(resource, pattern)
                                            for pattern in _list(statement["Resource"])):
            continue
        if _condition_holds(statement.get("Condition", {}), alias):
            return True
    return False


def _condition_holds(condition: dict[str, Any], alias: str | None) -> bool:
    for operator, keys in condition.items():
        for key, values in keys.items():
            if (operator, key) != ("ForAnyValue:StringEquals", "kms:ResourceAliases"):
                raise AssertionError(f"no evaluation here of the condition {operator} {key}")
            if alias not in _list(values):
                return False
    return True


def _list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def allowed_for_some_stage(request: Request) -> bool:
    """Whether the policy of the stage the request's resource belongs to allows it: the prefix is read off
    the resource's name (each `-` or `/` in it may end the prefix)."""
    action, resource, alias = request
    if alias:
        named = alias.removeprefix("alias/")
    else:  # `table/<name>…`, `secret:<name>…`: the name after the resource type
        named = re.split(r"[/:]", (resource or "").split(":", 5)[-1], maxsplit=1)[-1] if resource else ""
    candidates = {named[:i] for i, char in enumerate(named) if char in "-/"} or {"tokenway-dev"}
    return any(allows(iam_policy.policy(iam_policy.Stage(prefix)), request) for prefix in candidates)


def granted_actions() -> set[str]:
    return {action for statement in iam_policy.policy(iam_policy.Stage("any"))["Statement"]
            for action in _list(statement["Action"])}


class Recorder:
    """This process's recorded requests, each appended once to its file."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self._seen: set[Request] = set()
        self._lock = threading.Lock()

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if not self._from_product():
            return
        requests = iam_requests(model.service_model.signing_name, model.name, params)
        with self._lock:
            new = [request for request in requests if request not in self._seen]
            self._seen.update(new)
            if new and self.path is not None:
                with self.path.open("a", encoding="utf-8") as out:
                    out.writelines(json.dumps(request) + "\n" for request in new)

    @staticmethod
    def _from_product() -> bool:
        frame = sys._getframe(2)  # past this method and the call above it
        while frame is not None and frame.f_code.co_filename.startswith(LIBRARIES):
            frame = frame.f_back
        return frame is not None and frame.f_code.co_filename.startswith(PRODUCT)


RECORDER = Recorder()
botocore.handlers.BUILTIN_HANDLERS.append(("provide-client-params", RECORDER))


def read_requests(directory: Path) -> set[Request]:
    found = set()
    for path in directory.glob("*.jsonl"):
        found.update(tuple(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines())
    return found  # type: ignore[return-value]


def problems(requests: set[Request], *, whole_suite: bool) -> Iterator[str]:
    for request in sorted(requests, key=str):
        if not allowed_for_some_stage(request):
            action, resource, alias = request
            yield (f"the policy lacks {action} on {resource or 'its resource'}"
                   + (f" (key {alias})" if alias else "") + " (add it in infra/iam_policy.py)")
    if whole_suite:
        used = {action for action, _, _ in requests}
        needed = used | set(iam_policy.RUNTIME_ACTIONS)
        needed.update(*(iam_policy.ON_BEHALF.get(action, ()) for action in used))
        unused = sorted(granted_actions() - needed)
        # Each table and index is granted only what the code does there.
        touched = {_table_access(action, resource) for action, resource, _ in requests
                   if action.startswith("dynamodb:") and resource}
        granted = {(f"dynamodb:{action}", table, None) for table, actions in iam_policy.TABLE_ACCESS.items()
                   for action in actions}
        granted |= {("dynamodb:Query", table, index) for table, indexes in iam_policy.INDEX_QUERIES.items()
                    for index in indexes}
        unused += [f"{action} on " + (f"the index {index} of the table {table}" if index else f"the table {table}")
                   for action, table, index in sorted(granted - touched, key=str) if action not in unused]
        for grant in unused:
            yield (f"the policy grants {grant} but no call of the gateway's code needs it "
                   "(remove it from infra/iam_policy.py)")


def _table_access(action: str, resource: str) -> tuple[str, str | None, str | None]:
    """(action, table named without its prefix, index) of a DynamoDB request on a template table."""
    name, _, index = resource.split(":", 5)[-1].removeprefix("table/").partition("/index/")
    tables = [table for table in iam_policy.template_tables() if name.endswith(f"-{table}")]
    return action, max(tables, key=len) if tables else None, index or None


# Plugin hooks -----------------------------------------------------------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--aws-calls", metavar="PATH",
                     help="write the IAM requests recorded from the gateway's AWS calls to PATH (JSON)")


def pytest_configure(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        config._aws_calls_dir = Path(tempfile.mkdtemp(prefix="aws-calls-"))  # type: ignore[attr-defined]
        name = "controller"
    else:
        config._aws_calls_dir = Path(workerinput["aws_calls_dir"])  # type: ignore[attr-defined]
        name = workerinput["workerid"]
    RECORDER.path = config._aws_calls_dir / f"{name}.jsonl"  # type: ignore[attr-defined]


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    node.workerinput["aws_calls_dir"] = str(node.config._aws_calls_dir)


def _whole_suite(session: pytest.Session, exitstatus: int) -> bool:
    """The suite ran in full and passed: every test path, nothing selected away, nothing failed."""
    config, option = session.config, session.config.option
    return (exitstatus == pytest.ExitCode.OK and config.args_source == pytest.Config.ArgsSource.TESTPATHS
            and not option.keyword and not option.markexpr and not option.deselect and not option.ignore
            and not option.ignore_glob and not option.collectonly)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if hasattr(config, "workerinput"):
        return
    directory: Path = config._aws_calls_dir  # type: ignore[attr-defined]
    requests = read_requests(directory)
    shutil.rmtree(directory, ignore_errors=True)
    if config.option.aws_calls:
        Path(config.option.aws_calls).write_text(json.dumps(sorted(requests, key=str), indent=1) + "\n")
    if config.option.collectonly:
        return
    whole = _whole_suite(session, exitstatus)
    found = list(problems(requests, whole_suite=whole))
    config._aws_calls_report = (requests, whole, found)  # type: ignore[attr-defined]
    if found and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    report = getattr(config, "_aws_calls_report", None)
    if report is None:
        return
    requests, whole, found = report
    actions = sorted({action for action, _, _ in requests})
    if found:
        terminalreporter.write_sep("=", "the IAM policy and the gateway's AWS calls disagree", red=True)
        for line in found:
            terminalreporter.write_line(line)
    elif whole:
        terminalreporter.write_line(
            f"IAM policy: exactly the actions the gateway's code used, table by table ({', '.join(actions)})")
    elif actions:
        terminalreporter.write_line(f"IAM policy: grants every action these tests used ({', '.join(actions)}); "
                                    "unused grants are checked on a whole passing run")
