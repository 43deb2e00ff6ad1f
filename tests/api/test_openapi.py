"""The console API's OpenAPI document matches the routes the app serves."""

from __future__ import annotations

import httpx


def test_the_document_lists_exactly_the_console_routes(stack):
    from app import app

    served = {(method.lower(), path) for path, methods in app.routes.items() if path.startswith("/api/")
              for method in methods}
    document = httpx.get(stack.url + "/api/openapi.json", timeout=30).json()
    documented = {(method, path) for path, operations in document["paths"].items() for method in operations}
    assert document["openapi"].startswith("3.")
    assert documented == served


def test_request_schemas_come_from_the_validating_models(stack):
    document = httpx.get(stack.url + "/api/openapi.json", timeout=30).json()
    create = document["paths"]["/api/tokens"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert create["properties"]["name"]["maxLength"] == 50
    assert "name" in create["required"]
    assert create["additionalProperties"] is False
