"""`make run`: the whole gateway on one machine.

Starts the AWS emulator on 127.0.0.1:${AWS_EMULATOR_PORT:-4566}, provisions it from
infra/template.yaml, and serves the gateway on 127.0.0.1:${PORT:-8000} with the one-machine
server (chalicelib/api/server.py: gunicorn's threaded workers, streams written as they come).
Channel keys are sealed under the key file ${TOKENWAY_SECRETS_KEY_FILE:-.data/secrets.key},
created on the first run (or, with TOKENWAY_KMS_KEY_ID set, under that key on the emulator).
When no provider key is set it also starts the demo upstream and seeds a funded demo account,
so the manual's snippets run as written.

Ctrl-C or SIGTERM (to the launcher or to its process group) stops everything it started: the
server first, which finishes and settles the requests in flight (see the server's graceful
timeout), then the demo upstream and the emulator those requests still need.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from chalicelib.catalog.catalog import BUILTIN_MODELS
from chalicelib.config import Settings
from chalicelib.core.money import units_to_usd
from chalicelib.storage.secrets.local import load_key_file
from devstack.demo_upstream import DemoUpstream
from devstack.emulator import Emulator, provision
from tokenway_cli import main as cli

ROOT = Path(__file__).resolve().parents[1]
STAGE_PREFIX = "tokenway-dev"  # .chalice/config.json, stage dev
DEMO_CREDIT_USD = "5.00"
DATA_DIR = ROOT / ".data"  # what the one-machine gateway keeps on disk: the key file
LOCAL_AWS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1"}
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Stop(BaseException):
    """Ctrl-C or SIGTERM, while starting or serving (a BaseException, as KeyboardInterrupt is, so that
    no `except Exception` on the way swallows it)."""


def _stop(signum: int, frame: object) -> None:
    raise _Stop


def main() -> int:
    # Set, not inherited: a shell starts a background job with SIGINT ignored, and Python keeps
    # an ignored SIGINT ignored.
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, _stop)
    settings = Settings()
    host = "127.0.0.1"
    port = int(os.environ.get("PORT", "8000"))
    emulator_port = int(os.environ.get("AWS_EMULATOR_PORT", "4566"))
    admin_token = os.environ.get("TOKENWAY_ADMIN_TOKEN") or secrets.token_urlsafe(24)
    generated_token = "TOKENWAY_ADMIN_TOKEN" not in os.environ
    url = f"http://{host}:{port}"
    os.environ.update({name: os.environ.get(name, value) for name, value in LOCAL_AWS.items()})

    emulator = Emulator(host, emulator_port)
    demo: DemoUpstream | None = None
    server: subprocess.Popen[bytes] | None = None
    try:
        emulator.start()
        provision(emulator.client, ROOT / "infra" / "template.yaml", STAGE_PREFIX)
        print(f"AWS emulator      {emulator.endpoint_url}  (tables, bucket and stream from infra/template.yaml)")
        env = {**os.environ, "TOKENWAY_RESOURCE_PREFIX": STAGE_PREFIX, "TOKENWAY_AWS_ENDPOINT_URL":
               emulator.endpoint_url, "TOKENWAY_ADMIN_TOKEN": admin_token, **_secrets_key()}
        server = subprocess.Popen(
            [sys.executable, "-m", "chalicelib.api.server", "--host", host, "--port", str(port)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        )
        _wait_until_serving(url, server)
        print(f"Gateway           {url}  (gunicorn, {settings.server_workers} workers of "
              f"{settings.server_threads} threads; TOKENWAY_SERVER_WORKERS, TOKENWAY_SERVER_THREADS)")
        print(f"Admin token       {admin_token}" + ("  (generated; set TOKENWAY_ADMIN_TOKEN to choose one)"
                                                   if generated_token else "  (from TOKENWAY_ADMIN_TOKEN)"))
        if not settings.provider_keys():
            demo = DemoUpstream(host, int(os.environ.get("DEMO_UPSTREAM_PORT", "0")))
            demo.start()
            key = _seed_demo(url, admin_token, demo.base_url)
            _print_demo(url, key, demo.base_url)
        print("Ctrl-C stops everything.", flush=True)
        return server.wait()
    except _Stop:
        return 0
    finally:
        # Stopping is not interrupted: a signal now would leave things half-stopped. (Ctrl-C
        # again reaches the server too, which then stops at once.)
        for stop_signal in STOP_SIGNALS:
            signal.signal(stop_signal, signal.SIG_IGN)
        print("Stopping…", flush=True)
        if server is not None:
            _stop_server(server, settings.server_graceful_timeout_s)
        if demo is not None:
            demo.stop()
        emulator.stop()


def _stop_server(server: subprocess.Popen[bytes], graceful_timeout_s: float) -> None:
    """SIGTERM, and wait while it finishes the requests in flight (bounded by its own timeouts)."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=graceful_timeout_s + 15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def _secrets_key() -> dict[str, str]:
    """The gateway's setting for sealing channel keys: the key file, made now if it is new, so a
    broken one stops the launch with its reason; or the KMS key named in the environment."""
    if os.environ.get("TOKENWAY_KMS_KEY_ID"):
        print(f"Channel keys      sealed with the emulator's KMS key {os.environ['TOKENWAY_KMS_KEY_ID']}")
        return {}
    key_file = Path(os.environ.get("TOKENWAY_SECRETS_KEY_FILE") or DATA_DIR / "secrets.key")
    try:
        load_key_file(key_file)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"cannot use the key file for channel keys: {exc}") from None
    print(f"Channel keys      sealed with the key in {key_file}")
    return {"TOKENWAY_SECRETS_KEY_FILE": str(key_file)}


def _wait_until_serving(url: str, server: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the gateway exited with status {server.returncode}")
        try:
            httpx.get(f"{url}/v1/models", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"the gateway did not start serving on {url} within {timeout_s:g} s")


def _cli(url: str, token: str, *args: str) -> dict[str, Any]:
    """Run one operator CLI command against the local gateway."""
    out, err = io.StringIO(), io.StringIO()
    status = cli.main(["--url", url, "--admin-token", token, *args], stdout=out, stderr=err)
    if status != 0:
        raise SystemExit(f"seeding the demo failed: {' '.join(args[:2])}: {err.getvalue().strip()}")
    return json.loads(out.getvalue())


def _seed_demo(url: str, token: str, demo_url: str) -> str:
    """A `demo` channel serving the whole catalog at list prices, and a funded account; its key."""
    _cli(url, token, "channel", "add", "demo", "--base-url", demo_url, "--api-key", "demo")
    for model in BUILTIN_MODELS.values():
        prices = model.prices
        args = ["model", "add", model.name, "--channel", "demo", "--kind", model.kind.value,
                "--input-per-1m", units_to_usd(prices.input_per_1m),
                "--output-per-1m", units_to_usd(prices.output_per_1m),
                "--cached-input-per-1m", units_to_usd(prices.cached_rate),
                "--per-image", units_to_usd(prices.per_image)]
        if model.max_output_tokens:
            args += ["--max-output-tokens", str(model.max_output_tokens)]
        if model.context_window:
            args += ["--context-window", str(model.context_window)]
        _cli(url, token, *args)
    account = _cli(url, token, "account", "create", "demo@tokenway.local")
    _cli(url, token, "wallet", "credit", account["account_id"], DEMO_CREDIT_USD, "--note", "demo credit")
    return _cli(url, token, "key", "create", account["account_id"], "Demo")["key"]


def _print_demo(url: str, key: str, demo_url: str) -> None:
    print(f"""
DEMO MODE: no provider key is set (DEEPSEEK_API_KEY, OPENAI_API_KEY, …), so every
catalog model is served by the demo upstream at {demo_url}. It echoes
deterministic replies with real usage numbers; it is not a language model.

Demo account      demo@tokenway.local, funded with ${DEMO_CREDIT_USD}
Demo key          {key}   (shown once)

    from openai import OpenAI
    client = OpenAI(base_url="{url}", api_key="{key}")
    client.chat.completions.create(model="deepseek-chat", messages=[{{"role": "user", "content": "Hello"}}])
""")


if __name__ == "__main__":
    sys.exit(main())
