"""The whole gateway on SQLite storage (`TOKENWAY_STORAGE=sqlite`): everything it keeps lands in
`<data dir>/tokenway.db`, nothing in DynamoDB, survives a restart, and the wallet's invariants hold
under concurrent requests."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from chalicelib import deps
from chalicelib.config import Settings
from chalicelib.storage.local_usage_sink import read_usage_events
from tests.api.conftest import Stack, configure_catalog
from tests.api.test_tokens_api import Customer
from tests.fakes import upstream as faults


def sqlite_settings(stack: Stack, data_dir) -> Settings:
    # No KMS key named: channel keys are sealed under `<data dir>/secrets.key`.
    return stack.settings.model_copy(update={"storage": "sqlite", "data_dir": data_dir, "kms_key_id": None})


@pytest.fixture
def on_sqlite(stack, upstream, tmp_path) -> Iterator[Stack]:
    """The app served from a SQLite file in a data directory of its own."""
    previous = deps.get_gateway()
    deps.use_gateway(deps.build_gateway(sqlite_settings(stack, tmp_path / "data")))
    try:
        configure_catalog(stack)
        yield replace(stack, settings=sqlite_settings(stack, tmp_path / "data"))
    finally:
        deps.use_gateway(previous)


def restart(stack: Stack) -> None:
    """A new process on the same data directory: nothing carried over in memory."""
    deps.use_gateway(deps.build_gateway(stack.settings))


def test_the_settings_choose_sqlite_and_the_data_directory():
    settings = Settings(storage="sqlite", data_dir="/srv/tokenway")
    assert str(settings.database_path) == "/srv/tokenway/tokenway.db"
    assert str(settings.secrets_key_path) == "/srv/tokenway/secrets.key"
    assert Settings().storage == "dynamodb" and Settings().secrets_key_path is None
    assert str(Settings(storage="sqlite").database_path) == "data/tokenway.db"
    assert Settings(storage="sqlite", kms_key_id="alias/mine").secrets_key_path is None


def test_what_a_customer_does_is_kept_in_the_file_and_survives_a_restart(on_sqlite):
    stack = on_sqlite
    alice = Customer(stack, usd="1")
    key = alice.new_key()
    reply = alice.relay(key["key"])
    assert reply.status_code == 200, reply.text
    cost = reply.headers["x-tokenway-cost-usd"]
    wallet = stack.wallet(alice.account_id)
    assert wallet["held_usd"] == "0.00"

    data_dir = stack.settings.data_dir
    assert sorted(path.name for path in data_dir.iterdir() if not path.name.startswith("tokenway.db-")) == [
        "secrets.key", "tokenway.db", "usage"]
    # The usage event is a JSON line under the bucket's partition layout, not on Firehose.
    [event] = [e for e in read_usage_events(data_dir) if e["account_id"] == alice.account_id]
    assert event["status"] == 200 and event["cost_usd"] == cost and event["key_id"] == key["id"]
    with sqlite3.connect(data_dir / "tokenway.db") as raw:
        (available,) = raw.execute("SELECT available FROM accounts WHERE account_id = ?",
                                   (alice.account_id,)).fetchone()
        amounts = [row[0] for row in raw.execute("SELECT amount FROM ledger WHERE account_id = ?",
                                                 (alice.account_id,))]
    assert sum(amounts) == available and len(amounts) == 2
    accounts = stack.aws("dynamodb").scan(TableName=stack.outputs["AccountsTableName"])["Items"]
    assert alice.account_id not in str(accounts)  # nothing went to DynamoDB

    restart(stack)
    assert stack.wallet(alice.account_id) == wallet
    assert alice.call("GET", "/api/auth/me").status_code == 200  # the console session too
    again = alice.relay(key["key"])  # the key, the channel (its key sealed in the data dir) and the model
    assert again.status_code == 200 and again.headers["x-tokenway-cost-usd"] == cost
    listed = alice.call("GET", "/api/tokens").json()
    assert [k["id"] for k in listed["data"]] == [key["id"]]


def test_fifty_racing_requests_on_a_wallet_that_affords_ten_never_overdraw_it(on_sqlite, upstream):
    stack = on_sqlite
    stack.admin("POST", "/admin/models", {"name": "race-model", "channel": "fake", "input_per_1m": "0",
                                          "output_per_1m": "1"})
    account_id, key = stack.customer("0.001")
    upstream.fail_next(faults.usage(prompt=7, completion=100, cached=0), times=50)
    body = {"model": "race-model", "messages": [{"role": "user", "content": "go"}], "max_tokens": 100}

    def one(_: int) -> int:
        # In process, on threads: this gateway is the one on SQLite (the socket server runs its own).
        return stack.http.post("/v1/chat/completions", json=body,
                               headers={"Authorization": f"Bearer {key}"}, timeout=60).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(one, range(50)))

    assert (statuses.count(200), statuses.count(402)) == (10, 40)
    wallet = stack.wallet(account_id)
    assert (wallet["balance_usd"], wallet["held_usd"]) == ("0.00", "0.00")
    with sqlite3.connect(stack.settings.database_path) as raw:
        amounts = sorted(row[0] for row in raw.execute("SELECT amount FROM ledger WHERE account_id = ?",
                                                       (account_id,)))
    assert amounts == [-100_000] * 10 + [1_000_000]



def test_a_payment_whose_crediting_fails_in_storage_is_answered_5xx_and_its_redelivery_credits_once(
        stack, upstream, tmp_path):
    """The database is locked while the webhook credits: 503, nothing written, so the provider delivers
    again; the next delivery credits once."""
    from devstack.demo_payments import sign
    from tests.api.conftest import WEBHOOK_SECRET

    settings = sqlite_settings(stack, tmp_path / "data").model_copy(update={"sqlite_busy_timeout_ms": 200})
    previous = deps.get_gateway()
    deps.use_gateway(deps.build_gateway(settings))
    stack.payments.auto_deliver = False
    try:
        alice = Customer(stack, usd="0")
        order = alice.call("POST", "/api/wallet/topups", {"amount_usd": "20"}).json()
        event = stack.payments.pay(order["checkout_url"].rsplit("/", 1)[-1])
        body = json.dumps(event).encode()

        def deliver():
            return stack.http.post("/webhooks/stripe", content=body, headers={
                "Stripe-Signature": sign(body, WEBHOOK_SECRET, int(time.time())), "Content-Type": "application/json"})

        lock = sqlite3.connect(settings.database_path, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # another writer holds the file's write lock
        try:
            refused = deliver()
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        assert refused.status_code == 503, refused.text
        assert alice.call("GET", "/api/wallet").json()["balance_usd"] == "0.00"
        assert [deliver().status_code for _ in range(3)] == [200, 200, 200]
        assert alice.call("GET", "/api/wallet").json()["balance_usd"] == "22.00"
        assert [line["kind"] for line in alice.call("GET", "/api/wallet/ledger").json()["data"]] == ["bonus", "topup"]
    finally:
        stack.payments.auto_deliver = True
        deps.use_gateway(previous)


def test_without_a_webhook_secret_webhooks_are_refused_and_without_a_key_there_are_no_top_ups(stack, tmp_path):
    settings = sqlite_settings(stack, tmp_path / "data")
    previous = deps.get_gateway()
    try:
        deps.use_gateway(deps.build_gateway(settings.model_copy(update={"stripe_webhook_secret": None})))
        body = b'{"id": "evt_1", "type": "checkout.session.completed"}'
        refused = stack.http.post("/webhooks/stripe", content=body, headers={"Stripe-Signature": "t=1,v1=00"})
        assert (refused.status_code, refused.json()["error"]["code"]) == (503, "payments_not_configured")

        deps.use_gateway(deps.build_gateway(settings.model_copy(update={"stripe_secret_key": None})))
        alice = Customer(stack, usd="0")
        assert alice.call("GET", "/api/wallet/topup-options").json()["enabled"] is False
        closed = alice.call("POST", "/api/wallet/topups", {"amount_usd": "20"})
        assert (closed.status_code, closed.json()["error"]["code"]) == (503, "payments_not_configured")
    finally:
        deps.use_gateway(previous)
