"""`make run`'s launcher, as a newcomer runs it: the manual's snippet works with the printed demo key,
and Ctrl-C stops everything it started."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from decimal import Decimal

import boto3
import httpx
from openai import OpenAI

from tests.conftest import ROOT


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_the_launcher_serves_the_manuals_snippet_and_stops_on_ctrl_c(tmp_path):
    port, aws_port = _free_port(), _free_port()
    env = {name: value for name, value in os.environ.items()
           if not name.endswith("_API_KEY") and not name.startswith("TOKENWAY_")}
    key_file = tmp_path / "data" / "secrets.key"
    env.update(PORT=str(port), AWS_EMULATOR_PORT=str(aws_port), TOKENWAY_ADMIN_TOKEN="launcher-test-token",
               TOKENWAY_SECRETS_KEY_FILE=str(key_file))
    log = tmp_path / "run.log"
    with log.open("w") as out:
        launcher = subprocess.Popen([sys.executable, "-m", "devstack"], cwd=ROOT, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while "Ctrl-C stops everything" not in log.read_text():
            assert launcher.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        output = log.read_text()
        key = re.search(r"Demo key\s+(sk-\w+)", output).group(1)

        client = OpenAI(base_url=f"http://127.0.0.1:{port}", api_key=key, max_retries=0)
        reply = client.chat.completions.create(model="deepseek-chat", messages=[{"role": "user", "content": "Hello"}])
        assert "[demo upstream]" in reply.choices[0].message.content
        assert client.embeddings.create(model="text-embedding-3-small", input=["Hello world"]).data
        assert client.images.generate(model="dall-e-3", prompt="Chinese landscape painting, digital art").data

        accounts = httpx.get(f"http://127.0.0.1:{port}/admin/accounts?search=demo@tokenway.local",
                             headers={"Authorization": "Bearer launcher-test-token"}).json()["data"]
        wallet = httpx.get(f"http://127.0.0.1:{port}/admin/accounts/{accounts[0]['account_id']}/wallet",
                           headers={"Authorization": "Bearer launcher-test-token"}).json()
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
        os.killpg(launcher.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        launcher.wait(timeout=30)
    assert not _listening(port) and not _listening(aws_port)
