"""The console API's OpenAPI document matches the routes the app serves."""

from __future__ import annotations


def test_the_document_lists_exactly_the_console_routes(stack):
    from app import app
    from chalicelib.api.routing import served_routes

    served = {(method.lower(), path) for path, methods in served_routes(app).items() if path.startswith("/api/")
              for method in methods}
    document = stack.http.get("/api/openapi.json").json()
    documented = {(method, path) for path, operations in document["paths"].items() for method in operations}
    assert document["openapi"].startswith("3.")
    assert documented == served


def test_request_schemas_come_from_the_validating_models(stack):
    document = stack.http.get("/api/openapi.json").json()
    create = document["paths"]["/api/tokens"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert create["properties"]["name"]["maxLength"] == 50
    assert "name" in create["required"]
    assert create["additionalProperties"] is False
