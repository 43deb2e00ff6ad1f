"""`make run`'s launcher, as a newcomer runs it: the manual's snippet works with the printed demo key,
and Ctrl-C or SIGTERM stops everything it started, in the foreground or as a background job, letting
a stream in flight finish first."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import boto3
import httpx
import pytest
from openai import OpenAI

from tests.api.servers import free_port as _free_port
from tests.api.servers import listening as _listening
from tests.conftest import ROOT
from tests.fakes.upstream import FakeUpstream, paced

ADMIN = {"Authorization": "Bearer launcher-test-token"}


class Launcher:
    """`python -m devstack` (what `make run` runs) in a process group of its own, as a shell starts a job."""

    def __init__(self, tmp_path: Path, *, background: bool = False, **env: str) -> None:
        self.port, self.aws_port = _free_port(), _free_port()
        variables = {name: value for name, value in os.environ.items()
                     if not name.endswith("_API_KEY") and not name.startswith("TOKENWAY_")}
        variables.update(PORT=str(self.port), AWS_EMULATOR_PORT=str(self.aws_port),
                         TOKENWAY_ADMIN_TOKEN="launcher-test-token",
                         TOKENWAY_SECRETS_KEY_FILE=str(tmp_path / "data" / "secrets.key"), **env)
        self.log = tmp_path / "run.log"
        with self.log.open("w") as out:
            # A shell without job control starts a background job (`make run &`) with SIGINT ignored.
            ignore_sigint = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if background else None
            self.process = subprocess.Popen([sys.executable, "-m", "devstack"], cwd=ROOT, env=variables, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True,
                                            preexec_fn=ignore_sigint)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 90
        while "Ctrl-C stops everything" not in self.output():
            assert self.process.poll() is None, self.output()
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.2)

    def output(self) -> str:
        return self.log.read_text()

    def stop(self, sig: int, timeout_s: float = 30) -> float:
        """`sig` to the launcher's whole process group, as a terminal or a job control does; the seconds
        until the launcher exited."""
        started = time.monotonic()
        os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise AssertionError(f"still running {timeout_s:g} s after the signal:\n{self.output()}") from None
        return time.monotonic() - started

    def assert_all_stopped(self) -> None:
        assert not _listening(self.port) and not _listening(self.aws_port)
        with pytest.raises(ProcessLookupError):
            os.killpg(self.process.pid, 0)  # no server worker, no process of the group left


def test_the_launcher_serves_the_manuals_snippet_and_stops_on_ctrl_c(tmp_path):
    launcher = Launcher(tmp_path)
    key_file = tmp_path / "data" / "secrets.key"
    try:
        output = launcher.output()
        key = re.search(r"Demo key\s+(sk-\w+)", output).group(1)
        port, aws_port = launcher.port, launcher.aws_port

        client = OpenAI(base_url=f"http://127.0.0.1:{port}", api_key=key, max_retries=0)
        reply = client.chat.completions.create(model="deepseek-chat", messages=[{"role": "user", "content": "Hello"}])
        assert "[demo upstream]" in reply.choices[0].message.content
        assert client.embeddings.create(model="text-embedding-3-small", input=["Hello world"]).data
        assert client.images.generate(model="dall-e-3", prompt="Chinese landscape painting, digital art").data

        accounts = httpx.get(f"http://127.0.0.1:{port}/admin/accounts?search=demo@tokenway.local",
                             headers=ADMIN).json()["data"]
        wallet = httpx.get(f"http://127.0.0.1:{port}/admin/accounts/{accounts[0]['account_id']}/wallet",
                           headers=ADMIN).json()
        assert Decimal(wallet["balance_usd"]) < Decimal("5.00") and wallet["held_usd"] == "0.00"

        # The demo channel's key is sealed under the key file the launcher made, private to its owner.
        assert f"Channel keys      sealed with the key in {key_file}" in output
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        dynamodb = boto3.client("dynamodb", endpoint_url=f"http://127.0.0.1:{aws_port}", region_name="us-east-1",
                                aws_access_key_id="local", aws_secret_access_key="local")
        demo = dynamodb.get_item(TableName="tokenway-dev-catalog",
                                 Key={"kind": {"S": "channel"}, "name": {"S": "demo"}})["Item"]
        assert "api_key" not in demo and demo["api_key_wrapped_by"] == {"S": "local"}
    finally:
        launcher.stop(signal.SIGINT)  # what Ctrl-C in a terminal does
    launcher.assert_all_stopped()


def test_started_in_the_background_it_still_stops_on_sigint(tmp_path):
    # A provider key set: no demo to seed, a quicker start.
    launcher = Launcher(tmp_path, background=True, DEEPSEEK_API_KEY="sk-unused")
    assert launcher.stop(signal.SIGINT) < 15
    launcher.assert_all_stopped()


def test_sigterm_to_its_group_lets_a_stream_in_flight_finish_then_stops_everything(tmp_path):
    launcher = Launcher(tmp_path)
    key = re.search(r"Demo key\s+(sk-\w+)", launcher.output()).group(1)
    with FakeUpstream() as slow, httpx.Client(base_url=launcher.url, timeout=30) as http:
        assert http.post("/admin/channels", headers=ADMIN, json={"name": "slow", "base_url": slow.base_url,
                                                                 "api_key": "up-key"}).status_code == 201
        assert http.post("/admin/models", headers=ADMIN, json={"name": "slow-chat", "channel": "slow",
                                                               "input_per_1m": "0.28",
                                                               "output_per_1m": "0.42"}).status_code == 201
        slow.fail_next(paced(0.2), path="/chat/completions")
        body = {"model": "slow-chat", "messages": [{"role": "user", "content": "one two three four five six"}],
                "stream": True, "stream_options": {"include_usage": True}}
        with http.stream("POST", "/v1/chat/completions", json=body,
                         headers={"Authorization": f"Bearer {key}"}) as response:
            lines = response.iter_lines()
            assert next(line for line in lines if line.startswith("data: "))
            started = time.monotonic()
            os.killpg(launcher.process.pid, signal.SIGTERM)
            rest = [line for line in lines if line]
            finished = time.monotonic()
        # The stream was still being written when the signal came, and went on to its end, settled:
        # its usage chunk says what the wallet paid.
        assert finished - started > 0.5
        assert rest[-1] == "data: [DONE]"
        usage = json.loads(rest[-2][6:])["usage"]
        assert usage["completion_tokens"] > 0 and Decimal(usage["cost_usd"]) > 0
        launcher.process.wait(timeout=30)
    assert time.monotonic() - started < 15
    launcher.assert_all_stopped()
