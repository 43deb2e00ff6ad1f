"""The console API's OpenAPI document matches the routes the app serves."""

from __future__ import annotations


def _served() -> set[tuple[str, str]]:
    from app import app
    from chalicelib.api.routing import served_routes

    return {(method.lower(), path) for path, methods in served_routes(app).items() for method in methods}


def test_the_document_lists_exactly_the_console_routes(stack):
    served = {(method, path) for method, path in _served() if path.startswith("/api/")}
    document = stack.http.get("/api/openapi.json").json()
    documented = {(method, path) for path, operations in document["paths"].items() for method in operations
                  if path.startswith("/api/")}
    assert document["openapi"].startswith("3.")
    assert documented == served


def test_the_admin_routes_a_stage_is_set_up_with_are_documented_as_served_behind_the_admin_token(stack):
    document = stack.http.get("/api/openapi.json").json()
    admin = {(method, path): operation for path, operations in document["paths"].items()
             if path.startswith("/admin/") for method, operation in operations.items()}
    assert set(admin) == {("post", "/admin/admins"), ("get", "/admin/models"),
                          ("delete", "/admin/accounts/{account_id}/keys/{key_id}")}
    assert set(admin) <= _served()
    assert all({"admin": []} in operation["security"] for operation in admin.values())
    grant = admin["post", "/admin/admins"]
    assert set(grant["responses"]) == {"200", "201", "default"}
    body = grant["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["email"] and body["additionalProperties"] is False
    revoke = admin["delete", "/admin/accounts/{account_id}/keys/{key_id}"]
    assert [p["name"] for p in revoke["parameters"]] == ["account_id", "key_id"]


def test_request_schemas_come_from_the_validating_models(stack):
    document = stack.http.get("/api/openapi.json").json()
    create = document["paths"]["/api/tokens"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert create["properties"]["name"]["maxLength"] == 50
    assert "name" in create["required"]
    assert create["additionalProperties"] is False
