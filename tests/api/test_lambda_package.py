"""The streaming function as Lambda runs it, from the packaged deployment.zip: its handler script
started as the Web Adapter's wrapper starts it (LAMBDA_TASK_ROOT the unzipped package, the runtime's
directory supplying boto3, a Python that sees nothing else installed), with the packaged function's
environment, on the emulator's tables and no data directory. The adapter's readiness check passes,
and a stream reaches the client event by event, settled as anywhere else."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import yaml

from tests.api.conftest import ADMIN_TOKEN, Stack
from tests.api.servers import free_port
from tests.deploy.conftest import environment, packaged_stage
from tests.fakes import upstream as faults

STAGE = "dev"
CHAT = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "one two three four five six"}]}
# What Lambda's Python runtime provides beside the interpreter (its LAMBDA_RUNTIME_DIR), and the package omits.
RUNTIME_LIBRARIES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3")


def runtime_dir(root: Path) -> Path:
    """A directory holding the libraries Lambda's runtime directory holds (links to the installed ones)."""
    runtime = root / "runtime"
    runtime.mkdir()
    for name in RUNTIME_LIBRARIES:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (runtime / source.name).symlink_to(source)
    return runtime


def bare_python(root: Path) -> Path:
    """`python` as the handler script finds it on PATH: this interpreter without any site-packages."""
    bin_dir = root / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "python"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    shim.chmod(0o755)
    return bin_dir


@dataclass
class Function:
    url: str
    process: subprocess.Popen[bytes]


def stage_secret(stack: Stack) -> str:
    """This stack's Secrets Manager secret (made once), holding its admin token."""
    name = f"{stack.settings.resource_prefix}/secrets"
    secrets = stack.aws("secretsmanager")
    if not any(entry["Name"] == name for entry in secrets.list_secrets()["SecretList"]):
        secrets.create_secret(Name=name, SecretString=json.dumps({"TOKENWAY_ADMIN_TOKEN": ADMIN_TOKEN}))
    return name


@pytest.fixture(scope="module")
def function(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Function]:
    build = packaged_stage(STAGE)
    root = tmp_path_factory.mktemp("lambda")
    task = root / "task"
    with zipfile.ZipFile(build / "deployment.zip") as package:
        package.extractall(task)
        for info in package.infolist():  # extractall drops the modes the zip records
            (task / info.filename).chmod((info.external_attr >> 16) & 0o777 or 0o644)
    function = yaml.safe_load((build / "sam.yaml").read_text())["Resources"]["StreamFunction"]
    port = free_port()
    env = {
        **environment(function),
        # What Lambda sets, and where the Web Adapter asks the server to listen.
        "PATH": f"{bare_python(root)}:/usr/bin:/bin", "LAMBDA_TASK_ROOT": str(task),
        "LAMBDA_RUNTIME_DIR": str(runtime_dir(root)), "AWS_LWA_PORT": str(port),
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
        # This test's stack instead of the stage's: the emulator's tables, its KMS key, short timeouts.
        "TOKENWAY_RESOURCE_PREFIX": stack.settings.resource_prefix,
        "TOKENWAY_AWS_ENDPOINT_URL": stack.emulator.endpoint_url,
        "TOKENWAY_KMS_KEY_ID": stack.outputs["SecretsKeyAlias"],
        "TOKENWAY_KEY_CACHE_TTL_S": "0", "TOKENWAY_CATALOG_CACHE_TTL_S": "0",
        # The stage's secret settings from this stack's secret, as the stage reads its own.
        "TOKENWAY_SECRETS_ID": stage_secret(stack),
    }
    assert "TOKENWAY_DATA_DIR" not in env and "TOKENWAY_STORAGE" not in env  # DynamoDB, no data directory
    log = root / "server.log"
    handler = task / function["Properties"]["Handler"]
    with log.open("w") as out:
        process = subprocess.Popen([str(handler)], cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        # The Web Adapter's readiness check: its path answers with a healthy status.
        readiness = url + env["AWS_LWA_READINESS_CHECK_PATH"]
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                status = httpx.get(readiness, timeout=1).status_code
                assert str(status) == env["AWS_LWA_READINESS_CHECK_HEALTHY_STATUS"], log.read_text()
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield Function(url, process)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
        assert "Traceback" not in log.read_text(), log.read_text()


@pytest.fixture
def stream_function(function: Function) -> str:
    return function.url


def test_the_packaged_streaming_function_streams_event_by_event_and_settles(stack: Stack, upstream,
                                                                           stream_function: str) -> None:
    account_id, key = stack.customer("1")
    upstream.fail_next(faults.paced(0.2), path="/chat/completions")
    arrivals: list[float] = []
    lines: list[str] = []
    sent = time.monotonic()
    with httpx.Client(timeout=30) as http, http.stream(
            "POST", stream_function + "/v1/chat/completions", json={**CHAT, "stream": True},
            headers={"Authorization": f"Bearer {key}"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        assert "content-length" not in response.headers
        for line in response.iter_lines():
            if line.startswith("data: {"):
                arrivals.append(time.monotonic() - sent)
                lines.append(line)
            elif line == "data: [DONE]":
                lines.append(line)
    assert lines[-1] == "data: [DONE]" and len(arrivals) >= 6
    text = "".join((json.loads(line[6:])["choices"] or [{}])[0].get("delta", {}).get("content") or ""
                   for line in lines[:-1])
    assert text.endswith("one two three four five six")
    # An event every 200 ms, each passed on as it comes: spread over the stream, not together at its end.
    assert arrivals[-1] - arrivals[0] > 1.0, arrivals
    assert sum(arrivals[-1] - arrival > 0.5 for arrival in arrivals) >= 3, arrivals
    wallet = stack.wallet(account_id)
    assert wallet["held_usd"] == "0.00" and 0 < Decimal(wallet["balance_usd"]) < 1


def test_the_packaged_function_serves_every_route_of_the_app(stack: Stack, stream_function: str) -> None:
    """The same handlers as on the REST API: the console API, and its own 404 for an unknown URL."""
    unknown = httpx.get(stream_function + "/v2/nothing", headers={"Authorization": "Bearer sk-secret-value"})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "unknown_url"
    assert "sk-secret-value" not in unknown.text
    _, key = stack.customer("0")
    models = httpx.get(stream_function + "/models", headers={"Authorization": f"Bearer {key}"})
    assert models.status_code == 200 and models.json()["object"] == "list"


def test_a_freeze_between_requests_keeps_the_adapters_connection(function: Function) -> None:
    """Lambda freezes the environment between requests; once thawed, the server must still hold the
    connection the adapter kept alive (the one-machine default, 5 s, would have dropped it)."""
    limits = httpx.Limits(keepalive_expiry=60)  # the client keeps it too
    with httpx.Client(limits=limits, timeout=10) as http:
        def served_from() -> tuple[int, object]:
            response = http.get(function.url + "/api/openapi.json")
            return response.status_code, response.extensions["network_stream"].get_extra_info("client_addr")

        status, before = served_from()
        os.killpg(function.process.pid, signal.SIGSTOP)
        time.sleep(6)
        os.killpg(function.process.pid, signal.SIGCONT)
        time.sleep(1.5)  # the server's loop runs its idle-connection check at least once a second
        assert served_from() == (status, before) == (200, before)


def test_the_function_takes_its_secret_settings_from_the_stages_secret(function: Function):
    # The admin token is in the secret only, not in the function's environment.
    with httpx.Client(base_url=function.url, timeout=30) as http:
        assert http.get("/admin/models", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200
        assert http.get("/admin/models", headers={"Authorization": "Bearer not-the-token"}).status_code == 401
