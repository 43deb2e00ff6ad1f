"""`make run`'s launcher, as a newcomer runs it: the manual's snippet works with the printed demo key;
Ctrl-C or SIGTERM stops everything it started, in the foreground or as a background job, letting a
stream in flight finish first; the data directory keeps everything across a stop, and a crash in the
middle of requests in flight leaves no charge doubled and no hold open past the sweeper."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import boto3
import httpx
import pytest
from openai import OpenAI

from chalicelib.storage.local_usage_sink import read_usage_events
from tests.api.servers import free_port as _free_port
from tests.api.servers import listening as _listening
from tests.conftest import ROOT
from tests.fakes.upstream import FakeUpstream, paced
from tokenway_cli import main as cli

ADMIN = {"Authorization": "Bearer launcher-test-token"}
PASSWORD = "correct horse 42"
READY = "Ctrl-C stops everything"


class Launcher:
    """`python -m devstack` (what `make run` runs) in a process group of its own, as a shell starts a job,
    on the data directory `tmp_path/data` (TOKENWAY_ADMIN_TOKEN set unless `admin_token` is None)."""

    def __init__(self, tmp_path: Path, *, background: bool = False, admin_token: str | None = "launcher-test-token",
                 wait: bool = True, log: str = "run.log", **env: str) -> None:
        self.port, self.aws_port = _free_port(), _free_port()
        self.data_dir = tmp_path / "data"
        variables = {name: value for name, value in os.environ.items()
                     if not name.endswith("_API_KEY") and not name.startswith(("TOKENWAY_", "STRIPE_"))}
        variables.update(PORT=str(self.port), AWS_EMULATOR_PORT=str(self.aws_port),
                         TOKENWAY_DATA_DIR=str(self.data_dir), **env)
        if admin_token is not None:
            variables["TOKENWAY_ADMIN_TOKEN"] = admin_token
        self.log = tmp_path / log
        with self.log.open("w") as out:
            # A shell without job control starts a background job (`make run &`) with SIGINT ignored.
            ignore_sigint = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if background else None
            self.process = subprocess.Popen([sys.executable, "-m", "devstack"], cwd=ROOT, env=variables, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True,
                                            preexec_fn=ignore_sigint)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 90
        while wait and READY not in self.output():
            assert self.process.poll() is None, self.output()
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.2)

    def output(self) -> str:
        return self.log.read_text()

    def refusal(self, timeout_s: float = 60) -> str:
        """What a start that is refused prints, once it exited with status 1 (one that is not refused is
        stopped, and fails the test)."""
        try:
            status = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.stop(signal.SIGTERM)
            raise AssertionError(f"not refused:\n{self.output()}") from None
        assert status == 1, self.output()
        return self.output()

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


def test_the_launcher_serves_the_manuals_snippet_on_the_emulator_and_stops_on_ctrl_c(tmp_path):
    key_file = tmp_path / "keys" / "secrets.key"
    launcher = Launcher(tmp_path, TOKENWAY_STORAGE="dynamodb", TOKENWAY_SECRETS_KEY_FILE=str(key_file))
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

        assert f"Storage           DynamoDB on the AWS emulator http://127.0.0.1:{aws_port}" in output
        assert not launcher.data_dir.exists()  # the emulator keeps nothing on disk
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


def test_a_top_up_runs_through_the_demo_payment_provider_end_to_end(tmp_path):
    """No Stripe key: the demo provider speaks Stripe's API; its checkout page's Pay delivers a signed webhook
    and sends the customer back to a page that shows the credit. (The admin token begins with `-`, as a
    generated one may: the launcher's own CLI calls still take it.)"""
    launcher = Launcher(tmp_path, admin_token="-dash-first-admin-token")
    try:
        assert re.search(r"Payments +DEMO payment provider at http://127\.0\.0\.1:\d+ \(no money moves",
                         launcher.output())
        with httpx.Client(base_url=launcher.url, timeout=30) as http:
            account = {"email": "payer@example.com", "password": "correct horse 42"}
            assert http.post("/api/auth/signup", json=account).status_code == 201
            session = _bearer(http.post("/api/auth/login", json=account).json()["token"])
            order = http.post("/api/wallet/topups", json={"amount_usd": "20"}, headers=session).json()
            page = httpx.get(order["checkout_url"])
            assert "DEMO PAYMENT" in page.text and "20.00 USD" in page.text
            paid = httpx.post(f"{order['checkout_url']}/pay", follow_redirects=True)
            assert paid.url.path == "/wallet/topup-return" and "22.00 USD credited" in paid.text
            assert http.get("/api/wallet", headers=session).json()["balance_usd"] == "22.00"
    finally:
        launcher.stop(signal.SIGINT)
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


def _demo_key(output: str) -> str:
    return re.search(r"Demo key\s+(sk-\w+)", output).group(1)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _chat(http: httpx.Client, key: str, model: str = "deepseek-chat", content: str = "Hello") -> httpx.Response:
    return http.post("/v1/chat/completions", headers=_bearer(key),
                     json={"model": model, "messages": [{"role": "user", "content": content}]})


def _ledger(data_dir: Path) -> list[tuple]:
    with sqlite3.connect(data_dir / "tokenway.db") as db:
        return db.execute("SELECT * FROM ledger ORDER BY account_id, entry_id").fetchall()


def test_a_data_directory_in_use_or_that_is_a_file_stops_the_launch_with_one_line(tmp_path):
    running = Launcher(tmp_path, DEEPSEEK_API_KEY="sk-unused", ANTHROPIC_API_KEY="sk-ant-unused")
    try:
        # Its startup names the live providers, never their keys, and says why each other model is not routable.
        output = running.output()
        assert "Providers         anthropic (ANTHROPIC_API_KEY set), deepseek (DEEPSEEK_API_KEY set)" in output
        assert "sk-unused" not in output and "sk-ant-unused" not in output
        assert re.search(r"^  deepseek-chat\s+routable$", output, re.M)
        assert re.search(r"^  claude-sonnet\s+routable$", output, re.M)
        assert re.search(r"^  gpt-4o\s+not routable: no channel `openai` \(set OPENAI_API_KEY or add the channel\)$",
                         output, re.M)
        second = Launcher(tmp_path, wait=False, log="second.log", DEEPSEEK_API_KEY="sk-unused")
        [line] = second.refusal().splitlines()
        assert re.fullmatch(rf"make run: data directory {re.escape(str(running.data_dir))} is in use by another "
                            rf"running gateway \(pid={running.process.pid} host=\S+ since=\S+\): stop that gateway, "
                            r"or set TOKENWAY_DATA_DIR to another directory", line), line
        assert not _listening(second.port) and not _listening(second.aws_port)
        assert httpx.get(f"{running.url}/v1/models", headers=ADMIN).status_code in (200, 401)  # still serving
    finally:
        running.stop(signal.SIGTERM)
    running.assert_all_stopped()

    (tmp_path / "file").mkdir()
    (tmp_path / "file" / "data").write_text("not a directory\n")
    refused = Launcher(tmp_path / "file", wait=False)
    [line] = refused.refusal().splitlines()
    assert line == (f"make run: data directory {tmp_path / 'file' / 'data'} is a file, not a directory: move the file "
                    "away or set TOKENWAY_DATA_DIR to another directory")
    assert (tmp_path / "file" / "data").read_text() == "not a directory\n"
    assert not _listening(refused.port)


def test_a_restart_on_the_same_data_directory_keeps_everything(tmp_path):
    first = Launcher(tmp_path, admin_token=None)
    try:
        output = first.output()
        token = re.search(r"Admin token\s+(\S+)", output).group(1)
        token_file = first.data_dir / "admin_token"
        assert token_file.read_text().strip() == token and stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert f"Storage           SQLite in {first.data_dir}" in output and "Emulator" not in output
        assert "Providers         none live" in output
        assert re.search(r"^  deepseek-chat\s+routable$", output, re.M)
        demo_key = _demo_key(output)
        admin = _bearer(token)
        with httpx.Client(base_url=first.url, timeout=30) as http:
            credentials = {"email": "restart@example.com", "password": PASSWORD}
            assert http.post("/api/auth/signup", json=credentials).status_code == 201
            session = http.post("/api/auth/login", json=credentials).json()["token"]
            me = http.get("/api/auth/me", headers=_bearer(session)).json()
            account_id = me["account_id"]
            created = http.post("/api/tokens", headers=_bearer(session), json={"name": "laptop"})
            assert created.status_code == 201, created.text
            key = created.json()["key"]
            assert http.post(f"/admin/accounts/{account_id}/credit", headers=admin,
                             json={"amount_usd": "2.00", "note": "top-up"}).status_code in (200, 201)
            for content in ("one", "two three", "four five six"):
                assert _chat(http, key, content=content).status_code == 200
            assert _chat(http, demo_key).status_code == 200

            def snapshot() -> dict:
                accounts = http.get("/admin/accounts", headers=admin).json()["data"]
                return {
                    "accounts": accounts,
                    "wallets": {a["account_id"]: http.get(f"/admin/accounts/{a['account_id']}/wallet",
                                                          headers=admin).json() for a in accounts},
                    "keys": {a["account_id"]: http.get(f"/admin/accounts/{a['account_id']}/keys",
                                                       headers=admin).json() for a in accounts},
                    "me": http.get("/api/auth/me", headers=_bearer(session)).json(),
                    "tokens": http.get("/api/tokens", headers=_bearer(session)).json(),
                }

            before = snapshot()
        assert Decimal(before["wallets"][account_id]["balance_usd"]) < Decimal("2.00")
    finally:
        first.stop(signal.SIGTERM)
    first.assert_all_stopped()
    ledger = _ledger(first.data_dir)
    usage = sorted(read_usage_events(first.data_dir), key=lambda event: event["request_id"])
    assert len([entry for entry in ledger if entry[2] == "charge"]) == 4 and len(usage) == 4

    second = Launcher(tmp_path, admin_token=None, log="run2.log")
    try:
        output = second.output()
        assert re.search(r"Admin token\s+(\S+)", output).group(1) == token
        assert token_file.read_text().strip() == token
        assert "Demo key" not in output and demo_key not in output
        demo_account = next(a["account_id"] for a in before["accounts"] if a["email"] == "demo@tokenway.local")
        assert f"tokenway key create {demo_account} NAME" in output
        with httpx.Client(base_url=second.url, timeout=30) as http:
            after = snapshot()
            assert after == before
            assert _ledger(second.data_dir) == ledger
            assert sorted(read_usage_events(second.data_dir), key=lambda event: event["request_id"]) == usage
            # The same key, the same session, and the demo key through the demo upstream on its new port.
            assert _chat(http, key).status_code == 200
            assert _chat(http, demo_key).status_code == 200
            assert http.post("/api/tokens", headers=_bearer(session), json={"name": "second"}).status_code == 201
    finally:
        second.stop(signal.SIGTERM)
    second.assert_all_stopped()


def test_a_crash_in_the_middle_of_32_requests_doubles_no_charge_and_leaves_no_hold_after_the_sweep(tmp_path):
    # The model's timeout (3 s) plus the grace (1 s): the holds the crash leaves expire 4 s after they were taken.
    settings = {"DEEPSEEK_API_KEY": "sk-unused", "TOKENWAY_HOLD_GRACE_S": "1"}
    launcher = Launcher(tmp_path, **settings)
    with FakeUpstream() as slow:
        try:
            with httpx.Client(base_url=launcher.url, timeout=30, headers=ADMIN) as http:
                assert http.post("/admin/channels", json={"name": "slow", "base_url": slow.base_url,
                                                          "api_key": "up-key"}).status_code == 201
                assert http.post("/admin/models", json={"name": "slow-chat", "channel": "slow", "timeout_s": 3,
                                                        "input_per_1m": "0.28",
                                                        "output_per_1m": "0.42"}).status_code == 201
                account_id = http.post("/admin/accounts", json={"email": "crash@example.com"}).json()["account_id"]
                assert http.post(f"/admin/accounts/{account_id}/credit", json={"amount_usd": "5.00"}).status_code \
                    in (200, 201)
                key = http.post(f"/admin/accounts/{account_id}/keys", json={"name": "load"}).json()["key"]
                for _ in range(3):  # charges settled before the crash
                    assert _chat(http, key, "slow-chat").status_code == 200

            slow.fail_next(paced(0.25), times=32, path="/chat/completions")
            streaming = threading.Semaphore(0)
            request_ids: list[str] = []

            def stream() -> None:
                body = {"model": "slow-chat", "stream": True,
                        "messages": [{"role": "user", "content": " ".join(["word"] * 60)}]}
                try:
                    with httpx.Client(base_url=launcher.url, timeout=30) as client, \
                            client.stream("POST", "/v1/chat/completions", json=body, headers=_bearer(key)) as reply:
                        request_ids.append(reply.headers["x-request-id"])
                        lines = reply.iter_lines()
                        for line in lines:
                            if line.startswith("data: "):
                                streaming.release()
                                break
                        for _ in lines:
                            pass
                except httpx.HTTPError:
                    pass  # cut by the crash

            threads = [threading.Thread(target=stream) for _ in range(32)]
            for thread in threads:
                thread.start()
            for _ in threads:
                assert streaming.acquire(timeout=30), launcher.output()
            os.killpg(launcher.process.pid, signal.SIGKILL)  # the launcher, the server and every worker
            for thread in threads:
                thread.join(timeout=30)
            launcher.process.wait(timeout=10)
            with sqlite3.connect(launcher.data_dir / "tokenway.db") as db:
                assert db.execute("SELECT count(*) FROM holds").fetchone()[0] == 32  # all in flight at the crash
        finally:
            if launcher.process.poll() is None:
                os.killpg(launcher.process.pid, signal.SIGKILL)

        restarted = Launcher(tmp_path, log="run2.log", **settings)
        try:
            deadline = time.monotonic() + 30
            while True:
                out, err = io.StringIO(), io.StringIO()
                assert cli.main(["--url", restarted.url, "--admin-token", "launcher-test-token", "holds", "sweep"],
                                stdout=out, stderr=err) == 0, err.getvalue()
                with sqlite3.connect(restarted.data_dir / "tokenway.db") as db:
                    if db.execute("SELECT count(*) FROM holds").fetchone()[0] == 0:
                        break
                assert time.monotonic() < deadline, "holds still open past their expiry and a sweep"
                time.sleep(0.5)
        finally:
            restarted.stop(signal.SIGTERM)

    with sqlite3.connect(launcher.data_dir / "tokenway.db") as db:
        charges = db.execute("SELECT request_id, count(*) FROM ledger WHERE kind = 'charge' GROUP BY request_id")
        assert all(count == 1 for _, count in charges.fetchall())  # no request charged twice
        in_flight = ",".join("?" * len(request_ids))
        assert db.execute(f"SELECT count(*) FROM ledger WHERE kind = 'charge' AND request_id IN ({in_flight})",
                          request_ids).fetchone()[0] == 0  # the cut requests' holds were released, not charged
        for account, available, held in db.execute("SELECT account_id, available, held FROM accounts").fetchall():
            total = db.execute("SELECT coalesce(sum(amount), 0) FROM ledger WHERE account_id = ?", (account,))
            assert held == 0 and total.fetchone()[0] == available, account
        assert db.execute("SELECT count(*) FROM ledger WHERE account_id = ? AND kind = 'charge'",
                          (account_id,)).fetchone()[0] == 3


def test_the_server_keeps_the_data_directory_held_when_the_launcher_dies_and_a_second_server_is_refused(tmp_path):
    launcher = Launcher(tmp_path, DEEPSEEK_API_KEY="sk-unused")
    try:
        os.kill(launcher.process.pid, signal.SIGKILL)  # the launcher alone: its server goes on serving
        launcher.process.wait(timeout=10)
        assert httpx.get(f"{launcher.url}/v1/models", timeout=5).status_code == 401
        refused = Launcher(tmp_path, wait=False, log="second.log", DEEPSEEK_API_KEY="sk-unused")
        assert "is in use by another running gateway" in refused.refusal()
        # The server run alone on the same directory locks it itself, and is refused too.
        alone = subprocess.run(
            [sys.executable, "-m", "chalicelib.api.server", "--port", str(_free_port())], cwd=ROOT, timeout=60,
            capture_output=True, text=True,
            env={**os.environ, "TOKENWAY_STORAGE": "sqlite", "TOKENWAY_DATA_DIR": str(launcher.data_dir)})
        assert alone.returncode == 1 and "is in use by another running gateway" in alone.stderr, alone.stderr
    finally:
        os.killpg(launcher.process.pid, signal.SIGTERM)  # the server's processes, left in the launcher's group
    deadline = time.monotonic() + 30
    with pytest.raises(ProcessLookupError):
        while True:  # until the last of the server's processes has exited
            os.killpg(launcher.process.pid, 0)
            assert time.monotonic() < deadline
            time.sleep(0.2)
    restarted = Launcher(tmp_path, log="third.log", DEEPSEEK_API_KEY="sk-unused")  # the lock went with them
    restarted.stop(signal.SIGTERM)
    restarted.assert_all_stopped()
