"""Every customer endpoint checks who is asking: another account's ids, no session, an expired
session and a relay key in place of a session all get 404 or 401/403, never data."""

from __future__ import annotations

import pytest

from tests.api.test_tokens_api import Customer

# (method, path with {key} for the owner's key id, body)
ENDPOINTS = [
    ("GET", "/api/tokens", None),
    ("POST", "/api/tokens", {"name": "x"}),
    ("GET", "/api/tokens/{key}", None),
    ("PATCH", "/api/tokens/{key}", {"name": "stolen"}),
    ("DELETE", "/api/tokens/{key}", None),
    ("POST", "/api/tokens/{key}/regenerate", None),
    ("GET", "/api/tokens/{key}/usage", None),
    ("GET", "/api/groups", None),
    ("GET", "/api/auth/me", None),
    ("POST", "/api/auth/password", {"current_password": "x", "new_password": "y"}),
    ("POST", "/api/auth/logout", None),
]
OWNED = [e for e in ENDPOINTS if "{key}" in e[1]]


@pytest.fixture(scope="module")
def owner_key(stack):
    owner = Customer(stack)
    created = owner.new_key()
    return owner, created


def send(stack, method, path, body, headers):
    return stack.http.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize("method, path, body", OWNED)
def test_another_accounts_key_is_not_found(stack, owner_key, method, path, body):
    owner, created = owner_key
    intruder = Customer(stack, usd="0")
    response = intruder.call(method, path.format(key=created["id"]), body)
    assert response.status_code == 404, response.text
    assert created["key"] not in response.text and "Production" not in response.text
    assert owner.call("GET", f"/api/tokens/{created['id']}").json()["name"] == "Production"


@pytest.mark.parametrize("method, path, body", ENDPOINTS)
@pytest.mark.parametrize("credential", ["none", "garbage", "expired", "relay-key", "wrong-scheme"])
def test_without_a_live_session_nothing_is_answered(stack, owner_key, expired_session, credential, method, path,
                                                    body):
    owner, created = owner_key
    headers = {
        "none": {},
        "garbage": {"Authorization": "Bearer sess_not-a-session"},
        "expired": {"Authorization": f"Bearer {expired_session}"},
        "relay-key": {"Authorization": f"Bearer {created['key']}"},
        "wrong-scheme": {"Authorization": f"Basic {owner.session}"},
    }[credential]
    response = send(stack, method, path.format(key=created["id"]), body, headers)
    assert response.status_code == 401, response.text
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert created["id"] not in response.text
    assert owner.call("GET", f"/api/tokens/{created['id']}").status_code == 200


@pytest.fixture(scope="module")
def expired_session(stack) -> str:
    customer = Customer(stack, usd="0")
    from chalicelib.identity.sessions import token_hash

    table = stack.outputs["SessionsTableName"]
    stack.aws("dynamodb").update_item(
        TableName=table, Key={"session_hash": {"S": token_hash(customer.session)}},
        UpdateExpression="SET expires_at = :past", ExpressionAttributeValues={":past": {"N": "1"}})
    return customer.session
