"""Token Management over HTTP, and the relay honouring every limit a key carries."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.api.conftest import Stack
from tests.fakes import upstream as faults

HELLO = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "Hello"}]}
PASSWORD = "correct horse 42"


class Customer:
    """A signed-up, logged-in customer with a funded wallet, speaking to the console API."""

    def __init__(self, stack: Stack, usd: str = "1") -> None:
        self.stack = stack
        self.email = f"{uuid.uuid4().hex[:10]}@example.com"
        signup = stack.http.post("/api/auth/signup", json={"email": self.email, "password": PASSWORD})
        assert signup.status_code == 201, signup.text
        self.account_id = signup.json()["account_id"]
        login = stack.http.post("/api/auth/login", json={"email": self.email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        self.session = login.json()["token"]
        if usd != "0":
            stack.admin("POST", f"/admin/accounts/{self.account_id}/credit", {"amount_usd": usd})

    def call(self, method: str, path: str, json=None, *, session: str | None = None) -> httpx.Response:
        return self.stack.http.request(method, path, json=json,
                                       headers={"Authorization": f"Bearer {session or self.session}"})

    def new_key(self, **settings) -> dict:
        response = self.call("POST", "/api/tokens", {"name": "Production", **settings})
        assert response.status_code == 201, response.text
        return response.json()

    def relay(self, key: str, body=HELLO, headers=None) -> httpx.Response:
        return self.stack.http.post("/v1/chat/completions", json=body,
                          headers={"Authorization": f"Bearer {key}", **(headers or {})})


@pytest.fixture
def alice(stack, upstream) -> Customer:
    return Customer(stack)


@pytest.fixture
def bob(stack) -> Customer:
    return Customer(stack)


def test_a_key_is_created_shown_once_listed_with_its_limits_and_used(alice):
    created = alice.new_key(quota_usd="0.50", models=["deepseek-chat"], allowed_ips=["127.0.0.0/8"])
    secret = created["key"]
    assert secret.startswith("sk-") and len(secret) >= 51
    assert created["hint"].endswith(secret[-4:]) and created["quota_usd"] == "0.50"

    listed = alice.call("GET", "/api/tokens").json()["data"]
    assert [k["id"] for k in listed] == [created["id"]]
    assert "key" not in listed[0] and secret not in str(listed)
    assert alice.call("GET", f"/api/tokens/{created['id']}").json()["models"] == ["deepseek-chat"]

    assert alice.relay(secret).status_code == 200
    usage = alice.call("GET", f"/api/tokens/{created['id']}/usage").json()
    assert usage["requests"] == 1 and usage["total_tokens"] > 0 and usage["spent_usd"] != "0.00"
    shown = alice.call("GET", f"/api/tokens/{created['id']}").json()
    assert shown["last_used_at"] and shown["spent_usd"] == usage["spent_usd"]


def test_updates_and_the_relay_follow_each_other(alice):
    created = alice.new_key()
    key_id, secret = created["id"], created["key"]
    updated = alice.call("PATCH", f"/api/tokens/{key_id}", {"name": "Testing", "enabled": False}).json()
    assert (updated["name"], updated["status"]) == ("Testing", "disabled")
    refused = alice.relay(secret)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "api_key_disabled"
    alice.call("PATCH", f"/api/tokens/{key_id}", {"enabled": True})
    assert alice.relay(secret).status_code == 200


def test_regenerate_kills_the_old_secret_and_delete_revokes(alice):
    created = alice.new_key()
    again = alice.call("POST", f"/api/tokens/{created['id']}/regenerate")
    assert again.status_code == 200 and again.json()["id"] == created["id"]
    assert alice.relay(created["key"]).status_code == 401
    assert alice.relay(again.json()["key"]).status_code == 200
    assert alice.call("DELETE", f"/api/tokens/{created['id']}").status_code == 204
    revoked = alice.relay(again.json()["key"])
    assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "api_key_revoked"
    assert alice.call("GET", f"/api/tokens/{created['id']}").status_code == 404
    assert alice.call("GET", "/api/tokens").json()["data"] == []


@pytest.mark.parametrize("settings, status, code", [
    ({"models": ["gpt-4o"]}, 403, "model_not_allowed"),
    ({"allowed_ips": ["10.0.0.0/8"]}, 403, "ip_not_allowed"),
    ({"quota_usd": "0.000000001"}, 403, "key_quota_exceeded"),
])
def test_the_relay_refuses_what_a_key_does_not_allow_and_charges_nothing(alice, upstream, settings, status, code):
    secret = alice.new_key(**settings)["key"]
    response = alice.relay(secret)
    assert response.status_code == status and response.json()["error"]["code"] == code, response.text
    assert upstream.requests == []
    wallet = alice.stack.wallet(alice.account_id)
    assert (wallet["balance_usd"], wallet["held_usd"]) == ("1.00", "0.00")


def test_an_expired_key_is_refused(alice, stack):
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    created = alice.new_key(expires_at=soon)
    keys_table = stack.outputs["KeysTableName"]
    stack.aws("dynamodb").update_item(  # let time pass: move its expiry into the past
        TableName=keys_table, Key={"key_hash": {"S": _hash(created["key"])}},
        UpdateExpression="SET expires_at = :past", ExpressionAttributeValues={":past": {"N": "1000"}})
    response = alice.relay(created["key"])
    assert response.status_code == 401 and response.json()["error"]["code"] == "api_key_expired"


def test_a_disabled_account_stops_every_key(alice, stack):
    secret = alice.new_key()["key"]
    stack.admin("PATCH", f"/admin/accounts/{alice.account_id}", {"status": "disabled"})
    response = alice.relay(secret)
    assert response.status_code == 403 and response.json()["error"]["code"] == "account_disabled"
    stack.admin("PATCH", f"/admin/accounts/{alice.account_id}", {"status": "active"})
    assert alice.relay(secret).status_code == 200


def test_a_group_prices_with_its_multiplier(alice, stack, upstream):
    stack.admin("POST", "/admin/groups", {"name": "pro-2x", "multiplier": "2", "models": ["deepseek-chat"]})
    refused = alice.call("POST", "/api/tokens", {"name": "k", "group": "pro-2x"})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "group"
    stack.admin("PATCH", f"/admin/accounts/{alice.account_id}", {"groups": ["pro-2x"]})
    assert {g["name"] for g in alice.call("GET", "/api/groups").json()["data"]} == {"default", "pro-2x"}
    plain, doubled = alice.new_key()["key"], alice.new_key(group="pro-2x")["key"]
    upstream.fail_next(faults.usage(prompt=1000, completion=1000), times=2)
    costs = [alice.relay(key).headers["x-tokenway-cost-usd"] for key in (plain, doubled)]
    assert costs == ["0.0007", "0.0014"]  # 1000 × $0.28/1M + 1000 × $0.42/1M, then twice that


def test_a_plan_taken_from_an_account_stops_its_keys_at_once(alice, stack, upstream):
    plan = f"pro-{uuid.uuid4().hex[:6]}"
    stack.admin("POST", "/admin/groups", {"name": plan, "multiplier": "0.9", "description": "Every model, 10% off"})
    stack.admin("PATCH", f"/admin/accounts/{alice.account_id}", {"groups": [plan]})
    secret = alice.new_key(group=plan)["key"]
    upstream.fail_next(faults.usage(prompt=1000, completion=1000))
    assert alice.relay(secret).headers["x-tokenway-cost-usd"] == "0.00063"  # list price × 0.9
    balance = alice.stack.wallet(alice.account_id)

    stack.admin("PATCH", f"/admin/accounts/{alice.account_id}", {"groups": []})
    refused = alice.relay(secret)
    assert refused.status_code == 403, refused.text
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("permission_error", "group_not_allowed") and plan in error["message"]
    assert refused.headers["x-tokenway-cost-usd"] == "0.00"
    assert len(upstream.requests) == 1 and alice.stack.wallet(alice.account_id) == balance

    stack.admin("PATCH", f"/admin/accounts/{alice.account_id}", {"groups": [plan]})
    assert alice.relay(secret).status_code == 200


def test_an_account_confined_to_its_plans_loses_the_default_plan(alice, stack, upstream):
    plan = f"team-{uuid.uuid4().hex[:6]}"
    stack.admin("POST", "/admin/groups", {"name": plan, "multiplier": "0.8"})
    plain = alice.new_key()["key"]  # on `default`, which every account has until confined
    changed = stack.admin("PATCH", f"/admin/accounts/{alice.account_id}", {"groups": [plan], "default_plan": False})
    assert (changed["groups"], changed["default_plan"]) == ([plan], False)

    refused = alice.relay(plain)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "group_not_allowed"
    assert [g["name"] for g in alice.call("GET", "/api/groups").json()["data"]] == [plan]
    for body in ({"name": "k"}, {"name": "k", "group": "default"}):
        response = alice.call("POST", "/api/tokens", body)
        assert response.status_code == 400 and response.json()["error"]["param"] == "group", response.text
    assert alice.relay(alice.new_key(group=plan)["key"]).status_code == 200

    stack.admin("PATCH", f"/admin/accounts/{alice.account_id}", {"default_plan": True})
    assert alice.relay(plain).status_code == 200


@pytest.mark.parametrize("body, param", [
    ({"name": "x" * 51}, "name"),
    ({"name": "k", "allowed_ips": ["300.1.1.1/8"]}, "allowed_ips"),
    ({"name": "k", "group": "no-such-group"}, "group"),
    ({"name": "k", "models": ["no-such-model"]}, "models"),
    ({"name": "k", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
    ({"name": "k", "quota_usd": "-5"}, "quota_usd"),
])
def test_bad_key_settings_are_400_naming_the_field_and_nothing_is_written(alice, body, param):
    response = alice.call("POST", "/api/tokens", body)
    assert response.status_code == 400 and response.json()["error"]["param"] == param, response.text
    assert alice.call("GET", "/api/tokens").json()["data"] == []


def _hash(secret: str) -> str:
    from chalicelib.keys.auth import KeyHasher

    return KeyHasher()(secret)



def test_models_lists_only_what_the_key_may_call(alice):
    from openai import OpenAI

    secret = alice.new_key(models=["deepseek-chat", "dall-e-3"])["key"]
    client = OpenAI(base_url=alice.stack.url, api_key=secret, max_retries=0)
    assert sorted(model.id for model in client.models.list()) == ["dall-e-3", "deepseek-chat"]
