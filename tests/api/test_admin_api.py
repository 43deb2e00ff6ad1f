"""The operator's view of accounts, groups and keys: over HTTP, through the CLI, and for admin sessions."""

from __future__ import annotations

import json
import uuid

from tests.api.conftest import Stack
from tests.api.test_cli import cli
from tests.api.test_tokens_api import PASSWORD, Customer


def test_accounts_are_listed_searched_disabled_and_given_groups_through_the_cli(stack: Stack, upstream):
    alice = Customer(stack)
    secret = alice.new_key()["key"]
    found = cli(stack, "account", "list", "--search", alice.email[:8])["data"]
    assert [a["account_id"] for a in found] == [alice.account_id]
    assert found[0]["email"] == alice.email and found[0]["status"] == "active"

    assert cli(stack, "account", "disable", alice.account_id)["status"] == "disabled"
    assert alice.relay(secret).status_code == 403
    assert alice.call("GET", "/api/tokens").status_code == 403  # the console too
    assert cli(stack, "account", "enable", alice.account_id)["status"] == "active"
    assert alice.relay(secret).status_code == 200

    group = cli(stack, "group", "add", "cli-plan", "--multiplier", "1.25", "--models", "deepseek-chat")
    assert (group["multiplier"], group["models"]) == ("1.25", ["deepseek-chat"])
    assert "cli-plan" in {g["name"] for g in cli(stack, "group", "list")["data"]}
    assert cli(stack, "account", "groups", alice.account_id, "cli-plan")["groups"] == ["cli-plan"]
    assert alice.new_key(group="cli-plan")["group"] == "cli-plan"


def test_an_operator_sees_any_accounts_keys_but_never_their_secrets(stack: Stack):
    alice = Customer(stack, usd="0")
    created = alice.new_key(quota_usd="3")
    listed = cli(stack, "key", "list", alice.account_id)["data"]
    assert [(k["id"], k["quota_usd"]) for k in listed] == [(created["id"], "3.00")]
    assert created["key"] not in json.dumps(listed)


def test_bad_admin_input_is_400_naming_the_field(stack: Stack):
    alice = Customer(stack, usd="0")
    cases = [
        ("POST", "/admin/groups", {"name": "g", "multiplier": "0"}, "multiplier"),
        ("POST", "/admin/groups", {"name": "g", "multiplier": "1.0000001"}, "multiplier"),
        ("POST", "/admin/groups", {"name": "g", "models": ["no-such-model"]}, "models"),
        ("PATCH", f"/admin/accounts/{alice.account_id}", {"groups": ["no-such-group"]}, "groups"),
        ("PATCH", f"/admin/accounts/{alice.account_id}", {"status": "sleeping"}, "status"),
    ]
    for method, path, body, param in cases:
        response = stack.http.request(method, path, json=body,
                                 headers={"Authorization": f"Bearer {stack.settings.admin_token.get_secret_value()}"})
        assert response.status_code == 400 and response.json()["error"]["param"] == param, (body, response.text)
    assert stack.admin("GET", f"/admin/accounts?search={alice.account_id}")["data"][0]["groups"] == []


def test_an_admin_session_may_use_the_admin_api_and_a_customer_session_may_not(stack: Stack):
    customer = Customer(stack, usd="0")
    assert customer.call("GET", "/admin/groups").status_code == 403
    operator = Customer(stack, usd="0")
    stack.admin("PATCH", f"/admin/accounts/{operator.account_id}", {"role": "admin"})
    assert operator.call("GET", "/admin/groups").status_code == 200
    # Cookie-borne writes need the CSRF token from the login response.
    login = stack.http.post("/api/auth/login", json={"email": operator.email, "password": PASSWORD})
    cookie = {"Cookie": f"tokenway_session={login.json()['token']}"}
    body = {"name": "by-cookie", "multiplier": "1"}
    refused = stack.http.post("/admin/groups", json=body, headers=cookie)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
    allowed = stack.http.post("/admin/groups", json=body,
                         headers={**cookie, "X-CSRF-Token": login.json()["csrf_token"]})
    assert allowed.status_code == 201


def test_no_item_written_in_a_keys_life_holds_its_secret(stack: Stack, upstream):
    alice = Customer(stack)
    created = alice.new_key(quota_usd="1", models=["deepseek-chat"])
    secrets = [created["key"]]
    assert alice.relay(created["key"]).status_code == 200
    alice.call("PATCH", f"/api/tokens/{created['id']}", {"name": "Renamed", "enabled": False})
    regenerated = alice.call("POST", f"/api/tokens/{created['id']}/regenerate").json()["key"]
    secrets.append(regenerated)
    alice.call("PATCH", f"/api/tokens/{created['id']}", {"enabled": True})
    assert alice.relay(regenerated).status_code == 200
    assert alice.call("DELETE", f"/api/tokens/{created['id']}").status_code == 204

    dynamodb = stack.aws("dynamodb")
    for table in dynamodb.list_tables()["TableNames"]:
        for page in dynamodb.get_paginator("scan").paginate(TableName=table):
            dumped = json.dumps(page["Items"])
            for secret in secrets:
                assert secret[3:] not in dumped, table


def test_an_operator_confines_an_account_to_its_plans_through_the_cli(stack: Stack, upstream):
    alice = Customer(stack)
    plain = alice.new_key()["key"]
    plan = f"pro-{uuid.uuid4().hex[:6]}"
    created = cli(stack, "group", "add", plan, "--multiplier", "0.9", "--description", "Every model, 10% off")
    assert (created["multiplier"], created["models"]) == ("0.9", [])
    shown = cli(stack, "account", "groups", alice.account_id, plan, "--no-default")
    assert (shown["groups"], shown["default_plan"]) == ([plan], False)
    assert alice.relay(plain).status_code == 403
    assert alice.relay(alice.new_key(group=plan)["key"]).status_code == 200
    assert cli(stack, "account", "groups", alice.account_id, plan, "--default")["default_plan"] is True
    assert alice.relay(plain).status_code == 200


def test_an_operator_hands_a_new_account_a_set_password_link_from_the_cli(stack: Stack):
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    account = cli(stack, "account", "create", email)
    listed = cli(stack, "account", "list", "--search", email)["data"]
    assert [(a["password_set"], a["default_plan"]) for a in listed] == [(False, True)]
    link = cli(stack, "account", "password-link", account["account_id"])
    assert link["url"].endswith(f"#/set-password?token={link['token']}")
    done = stack.http.post("/api/auth/password/set", json={"token": link["token"], "password": PASSWORD})
    assert done.status_code == 204, done.text
    login = stack.http.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200 and login.json()["account"]["account_id"] == account["account_id"]
    assert cli(stack, "account", "list", "--search", email)["data"][0]["password_set"] is True


def test_bad_plan_settings_are_400_naming_the_field(stack: Stack):
    alice = Customer(stack, usd="0")
    token = stack.settings.admin_token.get_secret_value()
    for body, param in [({"default_plan": "no"}, "default_plan"), ({"default_plan": 0}, "default_plan"),
                        ({"groups": "pro"}, "groups"), ({"plans": ["pro"]}, "plans")]:
        response = stack.http.patch(f"/admin/accounts/{alice.account_id}", json=body, timeout=30,
                               headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 400 and response.json()["error"]["param"] == param, (body, response.text)
