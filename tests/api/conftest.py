"""The whole gateway over HTTP: the AWS emulator provisioned from infra/template.yaml, a fake
OpenAI-compatible upstream on loopback, and the app behind the one-machine server that `make run`
starts (`stack.url`, for SDK clients, subprocesses, streams and races: a process of its own,
configured as this stack) and in process (`stack.http`, for the rest: the same Lambda events,
without a socket, streams joined as on Lambda)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from chalicelib import deps
from chalicelib.config import Settings
from devstack.demo_payments import DemoPayments
from devstack.emulator import Emulator, provision
from devstack.local_server import InProcessTransport
from devstack.stream_poller import StreamPoller
from tests.api.servers import Server
from tests.conftest import TEMPLATE
from tests.fakes.upstream import FakeUpstream

ADMIN_TOKEN = "admin-" + uuid.uuid4().hex
PREFIX = "apitest"
# The stack believes X-Forwarded-For from these (documentation) addresses; tests play such a proxy
# by giving the in-process transport one of them as the peer.
TRUSTED_PROXIES = ("192.0.2.0/24",)
WEBHOOK_SECRET = "whsec_" + uuid.uuid4().hex


@dataclass
class Stack:
    url: str
    http: httpx.Client
    emulator: Emulator
    upstream: FakeUpstream
    settings: Settings
    outputs: dict[str, str]
    payments: DemoPayments  # Stripe's API, as the gateway's payment provider

    def admin(self, method: str, path: str, json: Any = None) -> Any:
        response = self.http.request(method, path, json=json, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert response.status_code < 300, response.text
        return response.json()

    def customer(self, usd: str, *, email: str | None = None) -> tuple[str, str]:
        """A new account funded with `usd` and a key for it: (account_id, key)."""
        account = self.admin("POST", "/admin/accounts", {"email": email or f"{uuid.uuid4().hex[:8]}@example.com"})
        if usd != "0":
            self.admin("POST", f"/admin/accounts/{account['account_id']}/credit", {"amount_usd": usd})
        key = self.admin("POST", f"/admin/accounts/{account['account_id']}/keys", {"name": "Testing"})
        return account["account_id"], key["key"]

    def wallet(self, account_id: str) -> dict[str, str]:
        return self.admin("GET", f"/admin/accounts/{account_id}/wallet")

    def aws(self, service: str) -> Any:
        return self.emulator.client(service)

    def usage_events(self, request_id: str, *, within_s: float = 20) -> list[dict[str, Any]]:
        """Every usage event of the request in the bucket, waiting up to `within_s` for the first (it
        travels from the settlement through the usage-outbox stream and Firehose). Every page of the
        listing is read: Firehose writes an object per batch, and a session writes thousands."""
        s3, bucket = self.aws("s3"), self.outputs["UsageBucketName"]
        deadline, read, found = time.monotonic() + within_s, set(), []
        # Written since the request: the tests ask right after it (a minute's margin for a busy machine).
        since = datetime.now(UTC) - timedelta(minutes=1)
        while True:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for item in page.get("Contents", []):
                    if item["Key"] in read or item["LastModified"] < since:
                        continue  # an object is written once: what it held was seen
                    read.add(item["Key"])
                    lines = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode().splitlines()
                    found += [event for event in map(json.loads, filter(None, lines))
                              if event["request_id"] == request_id]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.1)


@pytest.fixture(scope="session")
def stack(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    outputs = provision(emulator.client, TEMPLATE, PREFIX)
    upstream = FakeUpstream()
    upstream.start()
    payments = DemoPayments(webhook_secret=WEBHOOK_SECRET, retry_delays=(0.2, 0.5))
    payments.start()
    settings = Settings(
        resource_prefix=PREFIX, aws_endpoint_url=emulator.endpoint_url, aws_region="us-east-1",
        admin_token=ADMIN_TOKEN, key_cache_ttl_s=0, catalog_cache_ttl_s=0, upstream_timeout_s=10,
        first_token_timeout_s=3,
        signups_per_ip=100_000,  # every test customer signs up from 127.0.0.1
        kms_key_id=outputs["SecretsKeyAlias"],  # channel keys sealed with the template's KMS key
        trusted_proxies=TRUSTED_PROXIES,
        stripe_secret_key=payments.secret_key, stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=payments.base_url, payment_methods=("card", "alipay"),
    )
    gateway = deps.build_gateway(settings)
    deps.use_gateway(gateway)
    from app import app

    # The usage-outbox stream carried to Firehose, as the app stack's usage forwarder does it (on this
    # stack's own sink: other tests may replace the process's gateway meanwhile).
    forwarder = StreamPoller(emulator.client("dynamodbstreams"), outputs["UsageOutboxStreamArn"],
                             lambda event, context: gateway.usage_sink.forward(event["Records"]))
    forwarder.start()

    server = Server(settings, tmp_path_factory.mktemp("server") / "server.log")
    http = in_process(app)
    payments.webhook_url = f"{server.url}/webhooks/stripe"
    stack = Stack(server.url, http, emulator, upstream, settings, outputs, payments)
    configure_catalog(stack)
    try:
        yield stack
    finally:
        http.close()
        server.stop()
        assert "Traceback" not in server.output(), server.output()
        upstream.stop()
        payments.stop()
        forwarder.stop()
        deps.use_gateway(None)


def in_process(app: Any, *, client_ip: str = "127.0.0.1") -> httpx.Client:
    """An httpx client whose requests reach `app` in process, from the peer address `client_ip`."""
    return httpx.Client(base_url="http://gateway.test", transport=InProcessTransport(app, client_ip=client_ip),
                        timeout=30)


def configure_catalog(stack: Stack) -> None:
    """The fake upstream as a channel serving the manual's models at their built-in prices."""
    stack.admin("POST", "/admin/channels", {"name": "fake", "base_url": stack.upstream.base_url, "api_key": "up-key"})
    # The manual's models, served by the fake upstream at the built-in prices.
    for name in ("deepseek-chat", "text-embedding-3-small", "dall-e-3"):
        stack.admin("POST", "/admin/models", _same_prices(stack, name))


def _same_prices(stack: Stack, name: str) -> dict[str, Any]:
    from chalicelib.catalog.catalog import BUILTIN_MODELS
    from chalicelib.core.money import units_to_usd

    model = BUILTIN_MODELS[name]
    return {
        "name": name, "channel": "fake", "kind": model.kind.value,
        "input_per_1m": units_to_usd(model.prices.input_per_1m),
        "output_per_1m": units_to_usd(model.prices.output_per_1m),
        "cached_input_per_1m": units_to_usd(model.prices.cached_rate),
        "per_image": units_to_usd(model.prices.per_image),
    }


@pytest.fixture
def upstream(stack: Stack) -> Iterator[FakeUpstream]:
    stack.upstream.reset()
    yield stack.upstream
    stack.upstream.reset()
