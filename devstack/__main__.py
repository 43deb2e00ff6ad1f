"""`make run`: the whole gateway on one machine.

Storage by TOKENWAY_STORAGE: `sqlite` (the default here) keeps everything in the data directory
${TOKENWAY_DATA_DIR:-./data} (chalicelib/storage/data_dir.py), which the launcher opens and locks
before it starts anything, so a restart finds every account, key, wallet, ledger entry, session
and usage file, and the same admin token; `dynamodb` starts the AWS emulator on
127.0.0.1:${AWS_EMULATOR_PORT:-4566} and provisions it from infra/template.yaml (in memory: a stop
forgets everything). The gateway is served on 127.0.0.1:${PORT:-8000} by the one-machine server
(chalicelib/api/server.py: gunicorn's threaded workers, streams written as they come).

When no Stripe key is set it starts the demo payment provider (devstack/demo_payments.py), which
speaks Stripe's API and signs its webhooks with a secret made for this start, so top-ups run
the product's real code path. When no provider key is set it also starts the demo upstream; on a first start (an empty
database) it seeds a funded demo account and prints its key, once; on later starts it points the
demo channel at the demo upstream's new port, so the demo account's keys keep working.

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
from chalicelib.config import PROVIDER_KEY_ENV, Settings
from chalicelib.core.errors import DataDirectoryUnusable
from chalicelib.core.money import units_to_usd
from chalicelib.storage.data_dir import SECRETS_KEY_FILE, DataDirectory
from chalicelib.storage.secrets.local import load_key_file
from chalicelib.storage.usage_sinks import FirehoseUsageSink
from devstack.demo_payments import DemoPayments
from devstack.demo_upstream import DemoUpstream
from devstack.emulator import Emulator, provision
from devstack.stream_poller import StreamPoller
from tokenway_cli import main as cli

ROOT = Path(__file__).resolve().parents[1]
STAGE_PREFIX = "tokenway-dev"  # .chalice/config.json, stage dev
DEMO_EMAIL = "demo@tokenway.local"
DEMO_CREDIT_USD = "5.00"
EMULATOR_DATA_DIR = ROOT / ".data"  # with the emulator, what is kept on disk: the key file
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
    # One machine keeps its tables in SQLite unless told otherwise; the gateway's own default
    # (dynamodb) is the AWS deployment's.
    os.environ.setdefault("TOKENWAY_STORAGE", "sqlite")
    os.environ.update({name: os.environ.get(name, value) for name, value in LOCAL_AWS.items()})
    settings = Settings()
    host = "127.0.0.1"
    port = int(os.environ.get("PORT", "8000"))
    url = f"http://{host}:{port}"
    # Before anything starts: a directory that cannot be used stops the launch here, in one line.
    data = _open_data_dir(settings) if settings.storage == "sqlite" else None

    emulator: Emulator | None = None
    forwarder: StreamPoller | None = None
    demo: DemoUpstream | None = None
    payments: DemoPayments | None = None
    server: subprocess.Popen[bytes] | None = None
    try:
        if data is not None:
            admin_token, token_origin = _admin_token(data)
            print(f"Storage           SQLite in {data.path}  (TOKENWAY_DATA_DIR; kept across restarts)")
            env = {"TOKENWAY_STORAGE": "sqlite", "TOKENWAY_DATA_DIR": str(data.path),
                   **_secrets_key(settings.secrets_key_file or data.secrets_key_path)}
        else:
            emulator = Emulator(host, int(os.environ.get("AWS_EMULATOR_PORT", "4566")))
            emulator.start()
            outputs = provision(emulator.client, ROOT / "infra" / "template.yaml", STAGE_PREFIX)
            admin_token = os.environ.get("TOKENWAY_ADMIN_TOKEN") or secrets.token_urlsafe(24)
            token_origin = ("from TOKENWAY_ADMIN_TOKEN" if os.environ.get("TOKENWAY_ADMIN_TOKEN")
                            else "generated for this run; set TOKENWAY_ADMIN_TOKEN to choose one")
            print(f"Storage           DynamoDB on the AWS emulator {emulator.endpoint_url}  (tables, bucket and "
                  "stream from infra/template.yaml; in memory: a stop forgets everything)")
            env = {"TOKENWAY_RESOURCE_PREFIX": STAGE_PREFIX, "TOKENWAY_AWS_ENDPOINT_URL": emulator.endpoint_url,
                   **_emulator_secrets_key()}
            # What the usage forwarder does on AWS: the usage-outbox stream's events put on Firehose.
            forwarder = _usage_forwarder(emulator, outputs)
            forwarder.start()
        os.environ.update(env, TOKENWAY_ADMIN_TOKEN=admin_token)
        # The links the gateway hands out (password resets, top-up returns) point at where it serves.
        os.environ.setdefault("TOKENWAY_PUBLIC_URL", url)
        if not os.environ.get("STRIPE_SECRET_KEY"):
            payments = _demo_payments(url, host)
        command = [sys.executable, "-m", "chalicelib.api.server", "--host", host, "--port", str(port)]
        if data is not None:
            # The server shares the launcher's lock (its copy of the descriptor keeps the directory held
            # while any of its processes lives) and its workers open the directory without locking it.
            command.append("--data-dir-locked")
        server = subprocess.Popen(command, cwd=ROOT, env=dict(os.environ), stdout=subprocess.DEVNULL,
                                  pass_fds=(data.lock_fd,) if data is not None and data.lock_fd is not None else ())
        _wait_until_serving(url, server)
        print(f"Gateway           {url}  (gunicorn, {settings.server_workers} workers of "
              f"{settings.server_threads} threads; TOKENWAY_SERVER_WORKERS, TOKENWAY_SERVER_THREADS)")
        print(f"Console           {url}/  (the web console: sign up or log in there)")
        print(f"Admin token       {admin_token}  ({token_origin})")
        print("Payments          " + (f"DEMO payment provider at {payments.base_url} (no money moves; "
                                      "set STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET for Stripe)"
                                      if payments is not None else "Stripe (STRIPE_SECRET_KEY set)"))
        live = settings.provider_keys()
        print("Providers         " + (", ".join(f"{name} ({PROVIDER_KEY_ENV[name]} set)" for name in sorted(live))
                                     if live else "none live (no provider key set)"))
        if not live:
            demo = _demo(url, admin_token, host)
        _print_catalog()
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
        if payments is not None:
            payments.stop()
        if forwarder is not None:
            forwarder.stop()
        if emulator is not None:
            emulator.stop()
        if data is not None:
            data.close()


def _open_data_dir(settings: Settings) -> DataDirectory:
    """The data directory, checked and locked for this gateway; one line and exit status 1 if it cannot be."""
    try:
        return DataDirectory.open(settings.data_dir, exclusive=True)
    except DataDirectoryUnusable as exc:
        raise SystemExit(f"make run: {exc}") from None


def _admin_token(data: DataDirectory) -> tuple[str, str]:
    """The operator token (TOKENWAY_ADMIN_TOKEN, else the data directory's), and where it came from."""
    configured = os.environ.get("TOKENWAY_ADMIN_TOKEN")
    if configured:
        return configured, "from TOKENWAY_ADMIN_TOKEN"
    made = not data.admin_token_path.exists()
    try:
        token = data.admin_token()
    except DataDirectoryUnusable as exc:
        raise SystemExit(f"make run: {exc}") from None
    return token, f"{'made now, ' if made else ''}kept in {data.admin_token_path}; TOKENWAY_ADMIN_TOKEN overrides it"


def _demo(url: str, token: str, host: str) -> DemoUpstream | None:
    """With no provider key: the demo upstream, and the demo account made on the first start (its key
    printed then, once) or found again (its channel pointed at this start's demo upstream)."""
    existing = _cli(url, token, "account", "list", "--search", DEMO_EMAIL)["data"]
    if not existing and _cli(url, token, "account", "list")["data"]:
        print("Demo              not made: the database already has accounts and none is the demo account")
        return None
    demo = DemoUpstream(host, int(os.environ.get("DEMO_UPSTREAM_PORT", "0")))
    demo.start()
    if existing:
        # The demo upstream listens on a new port each start: the channel follows it.
        _cli(url, token, "channel", "add", "demo", "--base-url", demo.base_url, "--api-key", "demo")
        _print_demo_again(existing[0]["account_id"], demo.base_url)
    else:
        _print_demo(url, _seed_demo(url, token, demo.base_url), demo.base_url)
    return demo


def _demo_payments(url: str, host: str) -> DemoPayments:
    """With no Stripe key: the demo payment provider, speaking Stripe's API, with a webhook secret made for
    this start; the gateway is pointed at it, so top-ups run the real code path end to end."""
    webhook_secret = f"whsec_{secrets.token_hex(16)}"
    payments = DemoPayments(host, int(os.environ.get("DEMO_PAYMENTS_PORT", "0")),
                            secret_key=f"sk_test_demo_{secrets.token_hex(8)}",
                            webhook_url=f"{url}/webhooks/stripe", webhook_secret=webhook_secret)
    payments.start()
    os.environ.update(STRIPE_SECRET_KEY=payments.secret_key, STRIPE_WEBHOOK_SECRET=webhook_secret,
                      STRIPE_API_BASE=payments.base_url)
    return payments


def _print_catalog() -> None:
    """Each catalog model: routable, or the one line saying why not (the server's own view of it)."""
    from chalicelib.deps import build_gateway  # the launcher's settings are now the server's

    gateway = build_gateway(Settings())
    print("Models")
    for model, reason in gateway.catalog.availability():
        print(f"  {model.name:<24}{'routable' if reason is None else 'not routable: ' + reason}")


def _stop_server(server: subprocess.Popen[bytes], graceful_timeout_s: float) -> None:
    """SIGTERM, and wait while it finishes the requests in flight (bounded by its own timeouts)."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=graceful_timeout_s + 15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def _secrets_key(key_file: Path) -> dict[str, str]:
    """The gateway's setting for sealing channel keys: the key file, made now if it is new, so a
    broken one stops the launch with its reason."""
    try:
        load_key_file(key_file)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"make run: cannot use the key file for channel keys: {exc}") from None
    print(f"Channel keys      sealed with the key in {key_file}")
    return {"TOKENWAY_SECRETS_KEY_FILE": str(key_file)}


def _usage_forwarder(emulator: Emulator, outputs: dict[str, str]) -> StreamPoller:
    sink = FirehoseUsageSink(emulator.client("firehose"), outputs["UsageStreamName"])
    return StreamPoller(emulator.client("dynamodbstreams"), outputs["UsageOutboxStreamArn"],
                        lambda event, context: sink.forward(event["Records"]))


def _emulator_secrets_key() -> dict[str, str]:
    """With the emulator: the KMS key named in the environment, else the key file."""
    if os.environ.get("TOKENWAY_KMS_KEY_ID"):
        print(f"Channel keys      sealed with the emulator's KMS key {os.environ['TOKENWAY_KMS_KEY_ID']}")
        return {}
    return _secrets_key(Path(os.environ.get("TOKENWAY_SECRETS_KEY_FILE") or EMULATOR_DATA_DIR / SECRETS_KEY_FILE))


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
    # `=`: a token may begin with `-`, which argparse would take for an option.
    status = cli.main([f"--url={url}", f"--admin-token={token}", *args], stdout=out, stderr=err)
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
                "--cache-write-per-1m", units_to_usd(prices.cache_write_rate),
                "--per-image", units_to_usd(prices.per_image)]
        if model.max_output_tokens:
            args += ["--max-output-tokens", str(model.max_output_tokens)]
        if model.context_window:
            args += ["--context-window", str(model.context_window)]
        _cli(url, token, *args)
    account = _cli(url, token, "account", "create", DEMO_EMAIL)
    _cli(url, token, "wallet", "credit", account["account_id"], DEMO_CREDIT_USD, "--note", "demo credit")
    return _cli(url, token, "key", "create", account["account_id"], "Demo")["key"]


def _print_demo(url: str, key: str, demo_url: str) -> None:
    print(f"""
DEMO MODE: no provider key is set (DEEPSEEK_API_KEY, OPENAI_API_KEY, …), so every
catalog model is served by the demo upstream at {demo_url}. It echoes
deterministic replies with real usage numbers; it is not a language model.

Demo account      {DEMO_EMAIL}, funded with ${DEMO_CREDIT_USD}
Demo key          {key}   (shown this once: it is not kept anywhere readable)

    from openai import OpenAI
    client = OpenAI(base_url="{url}", api_key="{key}")
    client.chat.completions.create(model="deepseek-chat", messages=[{{"role": "user", "content": "Hello"}}])
""")


def _print_demo_again(account_id: str, demo_url: str) -> None:
    print(f"""
DEMO MODE: no provider key is set, so every catalog model is served by the demo
upstream at {demo_url} (its `demo` channel now points there).

Demo account      {DEMO_EMAIL} ({account_id}) exists, made on the first start; its key was
                  printed then. Another key: tokenway key create {account_id} NAME
""")


if __name__ == "__main__":
    sys.exit(main())
