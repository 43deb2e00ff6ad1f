"""The AWS-call check fails a pytest run as `make test` runs it (two xdist workers): a call the policy
lacks fails any run; a grant nothing used fails only a whole, passing run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

CHECKS = '''
import boto3
from moto import mock_aws

from chalicelib.storage.secrets.kms import KmsKeyWrapper


def seal_with(alias):
    with mock_aws():
        kms = boto3.client("kms", region_name="us-east-1")
        kms.create_alias(AliasName=alias, TargetKeyId=kms.create_key()["KeyMetadata"]["KeyId"])
        KmsKeyWrapper(kms, alias).generate({"channel": "c"})


def test_seals_with_the_stages_key():
    seal_with("alias/acme-secrets")


def test_seals_again():
    seal_with("alias/acme-secrets")
'''

ELSEWHERE = '''

def test_seals_with_a_key_the_policy_does_not_name():
    seal_with("alias/elsewhere")
'''


def run(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider", *args],
                          cwd=project, env=env, capture_output=True, text=True, timeout=300)


def project(tmp_path: Path, checks: str) -> Path:
    (tmp_path / "pytest.ini").write_text("[pytest]\ntestpaths = checks\n")
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["tests.aws_calls"]\n')
    (tmp_path / "checks").mkdir()
    (tmp_path / "checks" / "test_calls.py").write_text(checks)
    return tmp_path


def test_a_whole_run_fails_on_grants_no_call_used_and_a_selection_does_not(tmp_path):
    whole = run(project(tmp_path, CHECKS))
    assert whole.returncode == 1, whole.stdout
    assert "2 passed" in whole.stdout
    assert "the IAM policy and the gateway's AWS calls disagree" in whole.stdout
    assert "the policy grants dynamodb:GetItem but no call of the gateway's code needs it" in whole.stdout
    assert "kms:GenerateDataKey but" not in whole.stdout and "lacks" not in whole.stdout

    selected = run(tmp_path, "-k", "again")
    assert selected.returncode == 0, selected.stdout
    assert "IAM policy: grants every action these tests used (kms:GenerateDataKey)" in selected.stdout


def test_a_call_the_policy_lacks_fails_even_a_selection(tmp_path):
    result = run(project(tmp_path, CHECKS + ELSEWHERE), "checks/test_calls.py")
    assert result.returncode == 1, result.stdout
    assert "3 passed" in result.stdout
    assert ("the policy lacks kms:GenerateDataKey on arn:aws:kms:us-east-1:123456789012:key/"
            "00000000-0000-0000-0000-000000000000 (key alias/elsewhere)") in result.stdout
    assert "grants" not in result.stdout.split("disagree")[1]
