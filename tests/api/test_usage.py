"""Usage monitoring over HTTP on the one-machine storage (SQLite rollups, DuckDB over the usage files):
totals that agree with the ledger and with the log, failed requests at no cost, the log and its CSV
export, the billing endpoints chat clients read, bad input, and no account seeing another's usage."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal

import pytest

from chalicelib import deps
from tests.api.conftest import ADMIN_TOKEN, Stack, configure_catalog
from tests.api.test_sqlite_gateway import sqlite_settings
from tests.api.test_tokens_api import Customer
from tests.fakes import upstream as faults

WIDE = "from=2000-01-01&to=2100-01-01"  # more than 400 days: refused


@pytest.fixture
def local(stack, upstream, tmp_path) -> Iterator[Stack]:
    """The app on SQLite storage with its usage files in a data directory of its own."""
    previous = deps.get_gateway()
    settings = sqlite_settings(stack, tmp_path / "data")
    deps.use_gateway(deps.build_gateway(settings))
    try:
        configure_catalog(stack)
        yield replace(stack, settings=settings)
    finally:
        deps.use_gateway(previous)


def chat(customer: Customer, key: str, model: str = "deepseek-chat") -> str:
    reply = customer.relay(key, {"model": model, "messages": [{"role": "user", "content": "Hello there"}]})
    return reply.headers["x-request-id"]


def get(customer: Customer, path: str) -> dict:
    response = customer.call("GET", path)
    assert response.status_code == 200, response.text
    return response.json()


def charges(customer: Customer) -> Decimal:
    lines = get(customer, "/api/wallet/ledger?limit=200")["data"]
    return -sum(Decimal(line["amount_usd"]) for line in lines if line["kind"] == "charge")


def test_totals_equal_the_ledgers_charges_and_a_failed_request_is_an_error_at_no_cost(local, upstream):
    alice = Customer(local, usd="5")
    first, second = alice.new_key()["key"], alice.new_key(name="Second")["key"]
    for _ in range(3):
        chat(alice, first)
    chat(alice, second, "deepseek-chat")
    upstream.fail_next(faults.http_error(500), times=1)
    assert alice.relay(second).status_code == 502

    summary = get(alice, "/api/usage/summary?group_by=key&tz=Asia/Shanghai")
    totals = summary["totals"]
    assert (totals["requests"], totals["successful_requests"], totals["failed_requests"]) == (5, 4, 1)
    assert Decimal(totals["spend_usd"]) == charges(alice) > 0
    assert totals["latency_p50_ms"] is not None and totals["prompt_tokens"] > 0
    by_key = {row["key_id"]: row for row in summary["breakdown"]}
    keys = {key["name"]: key["id"] for key in get(alice, "/api/tokens")["data"]}
    assert by_key[keys["Production"]]["requests"] == 3
    assert (by_key[keys["Second"]]["requests"], by_key[keys["Second"]]["failed_requests"]) == (2, 1)
    assert sum(point["requests"] for point in summary["series"]) == 5
    assert summary["tz"] == "Asia/Shanghai" and summary["from"].endswith("+08:00")

    logs = get(alice, "/api/usage/logs?limit=200")["data"]
    assert len(logs) == 5
    assert sum(Decimal(row["cost_usd"]) for row in logs) == Decimal(totals["spend_usd"])
    failed = [row for row in logs if row["status"] >= 400]
    assert len(failed) == 1 and failed[0]["cost_usd"] == "0.00"
    assert "channel" not in logs[0] and "account_id" not in logs[0]


def test_the_log_pages_newest_first_and_filters(local):
    alice = Customer(local, usd="5")
    key = alice.new_key()
    ids = [chat(alice, key["key"]) for _ in range(5)]
    first = get(alice, "/api/usage/logs?limit=2")
    second = get(alice, f"/api/usage/logs?limit=2&cursor={first['next_cursor']}")
    third = get(alice, f"/api/usage/logs?limit=2&cursor={second['next_cursor']}")
    seen = [row["request_id"] for page in (first, second, third) for row in page["data"]]
    assert seen == list(reversed(ids)) and third["next_cursor"] is None
    assert first["as_of"]
    assert get(alice, f"/api/usage/logs?key_id={key['id']}&status=success")["data"]
    assert get(alice, "/api/usage/logs?status=error")["data"] == []
    assert get(alice, "/api/usage/logs?model=qwen-plus")["data"] == []


def test_the_csv_export_has_the_logs_rows(local):
    alice = Customer(local, usd="5")
    key = alice.new_key()["key"]
    for _ in range(3):
        chat(alice, key)
    response = alice.call("GET", "/api/usage/export.csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 3
    logs = get(alice, "/api/usage/logs")["data"]
    assert sorted(row["request_id"] for row in rows) == sorted(row["request_id"] for row in logs)
    by_id = {row["request_id"]: row for row in logs}
    for row in rows:
        assert row["cost_usd"] == by_id[row["request_id"]]["cost_usd"]
        assert int(row["prompt_tokens"]) == by_id[row["request_id"]]["prompt_tokens"]


def test_the_billing_endpoints_give_a_chat_client_the_balance_and_the_months_spend(local):
    alice = Customer(local, usd="5")
    key = alice.new_key()["key"]
    chat(alice, key)
    for prefix in ("/v1", ""):
        subscription = local.http.get(f"{prefix}/dashboard/billing/subscription",
                                      headers={"Authorization": f"Bearer {key}"}).json()
        wallet = local.wallet(alice.account_id)
        assert Decimal(str(subscription["hard_limit_usd"])) == Decimal(wallet["available_usd"])
        usage = local.http.get(f"{prefix}/dashboard/billing/usage", headers={"Authorization": f"Bearer {key}"}).json()
        assert Decimal(str(usage["total_usage"])) == charges(alice) * 100
    assert local.http.get("/v1/dashboard/billing/subscription",
                          headers={"Authorization": "Bearer sk-wrong"}).status_code == 401


@pytest.mark.parametrize(("query", "param"), [
    ("from=2026-11-02&to=2026-11-01", "from"),
    ("from=someday", "from"),
    (WIDE, "to"),
    ("tz=Mars/Olympus", "tz"),
    ("granularity=minute", "granularity"),
    ("group_by=channel", "group_by"),  # operators only
])
def test_a_bad_summary_query_is_refused_naming_the_field(local, query, param):
    alice = Customer(local, usd="0")
    response = alice.call("GET", f"/api/usage/summary?{query}")
    assert response.status_code == 400 and response.json()["error"]["param"] == param


def test_no_account_reads_another_accounts_usage(local):
    alice, bob = Customer(local, usd="5"), Customer(local, usd="5")
    alice_key = alice.new_key()
    chat(alice, alice_key["key"])
    assert get(bob, "/api/usage/summary")["totals"]["requests"] == 0
    assert get(bob, "/api/usage/logs")["data"] == []
    assert bob.call("GET", "/api/usage/export.csv").text.count("\n") == 1  # the header alone
    foreign = bob.call("GET", f"/api/usage/logs?key_id={alice_key['id']}")
    assert foreign.status_code == 404 and foreign.json()["error"]["param"] == "key_id"
    assert bob.call("GET", "/api/usage/logs?cursor=bogus").json()["error"]["param"] == "cursor"
    assert bob.call("GET", "/api/usage/logs?status=maybe").json()["error"]["param"] == "status"
    for path in ("/api/usage/summary", "/api/usage/logs", "/api/usage/export.csv"):
        assert local.http.get(path).status_code == 401


def test_operators_read_every_account_or_one_by_channel(local):
    alice, bob = Customer(local, usd="5"), Customer(local, usd="5")
    chat(alice, alice.new_key()["key"])
    chat(bob, bob.new_key()["key"])
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    everyone = local.http.get("/admin/usage/summary?group_by=account", headers=admin).json()
    accounts = {row["account"] for row in everyone["breakdown"]}
    assert {alice.account_id, bob.account_id} <= accounts
    one = local.http.get(f"/admin/usage/summary?account_id={alice.account_id}&group_by=channel", headers=admin).json()
    assert one["totals"]["requests"] == 1 and one["breakdown"][0]["channel"] == "fake"
    logs = local.http.get(f"/admin/usage/logs?account_id={bob.account_id}", headers=admin).json()["data"]
    assert [row["account_id"] for row in logs] == [bob.account_id] and logs[0]["channel"] == "fake"
    assert local.http.get("/admin/usage/summary").status_code == 401


def test_on_dynamodb_the_rollups_written_with_each_settlement_agree_with_the_ledger(stack, upstream):
    alice = Customer(stack, usd="5")
    key = alice.new_key()["key"]
    for _ in range(3):
        chat(alice, key)
    upstream.fail_next(faults.http_error(500), times=1)
    assert alice.relay(key).status_code == 502
    totals = get(alice, "/api/usage/summary?tz=America/St_Johns")["totals"]
    assert (totals["requests"], totals["failed_requests"]) == (4, 1)
    assert Decimal(totals["spend_usd"]) == charges(alice) > 0
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    everyone = stack.http.get("/admin/usage/summary?group_by=account", headers=admin).json()["breakdown"]
    assert next(row for row in everyone if row["account"] == alice.account_id)["requests"] == 4
