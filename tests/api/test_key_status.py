"""A key's status takes effect at once on every relay route, with keys cached per container."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chalicelib import deps
from tests.api.test_tokens_api import Customer


@pytest.fixture
def cached_keys(stack, upstream) -> Iterator[None]:
    """The app as a container runs it: each looked-up key reused for a minute."""
    previous = deps.get_gateway()
    deps.use_gateway(deps.build_gateway(stack.settings.model_copy(update={"key_cache_ttl_s": 60})))
    try:
        yield
    finally:
        deps.use_gateway(previous)


def models(customer: Customer, secret: str, path: str = "/v1/models"):
    return customer.stack.http.get(path, headers={"Authorization": f"Bearer {secret}"})


def code(response) -> str:
    return response.json()["error"]["code"]


def test_models_refuses_a_regenerated_revoked_or_disabled_key_at_once(stack, cached_keys):
    alice = Customer(stack)
    created = alice.new_key()
    assert models(alice, created["key"]).status_code == 200  # looked up, and cached

    renewed = alice.call("POST", f"/api/tokens/{created['id']}/regenerate").json()["key"]
    for path in ("/v1/models", "/models", "/v1/models/deepseek-chat"):
        assert models(alice, created["key"], path).status_code == 401, path
    assert models(alice, renewed).status_code == 200

    assert alice.call("PATCH", f"/api/tokens/{created['id']}", {"enabled": False}).status_code == 200
    assert code(models(alice, renewed)) == "api_key_disabled"
    assert alice.call("DELETE", f"/api/tokens/{created['id']}").status_code == 204
    refused = models(alice, renewed, "/v1/models/deepseek-chat")
    assert (refused.status_code, code(refused)) == (401, "api_key_revoked")


def test_a_refusal_is_never_answered_from_a_stale_cached_key(stack, cached_keys):
    alice = Customer(stack)
    created = alice.new_key()
    alice.call("PATCH", f"/api/tokens/{created['id']}", {"enabled": False})
    assert code(alice.relay(created["key"])) == "api_key_disabled"  # the disabled key is now cached

    alice.call("PATCH", f"/api/tokens/{created['id']}", {"enabled": True})
    assert alice.relay(created["key"]).status_code == 200

    alice.call("PATCH", f"/api/tokens/{created['id']}", {"enabled": False})
    assert code(alice.relay(created["key"])) == "api_key_disabled"
    alice.call("DELETE", f"/api/tokens/{created['id']}")
    revoked = alice.relay(created["key"])
    assert (revoked.status_code, code(revoked)) == (401, "api_key_revoked")


def test_the_relay_reuses_an_active_keys_cached_lookup(stack, cached_keys):
    alice = Customer(stack)
    secret = alice.new_key()["key"]
    keys = stack.aws("dynamodb")
    table = stack.outputs["KeysTableName"]
    from chalicelib.keys.auth import KeyHasher

    assert alice.relay(secret).status_code == 200
    # Changed behind the cache's back: the relay keeps using the cached allowlists for its period.
    keys.update_item(TableName=table, Key={"key_hash": {"S": KeyHasher()(secret)}},
                     UpdateExpression="SET models = :m", ExpressionAttributeValues={":m": {"L": [{"S": "glm-4"}]}})
    assert alice.relay(secret).status_code == 200
