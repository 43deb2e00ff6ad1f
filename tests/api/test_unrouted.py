"""Unknown paths and unserved methods answer from the gateway's own code, in the OpenAI envelope,
locally and as API Gateway would route them; no answer repeats the caller's headers."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from chalice.deploy.swagger import TemplatedSwaggerGenerator
from chalice.deploy.validate import validate_route_content_types, validate_routes
from openai import OpenAI

from chalicelib.api.routing import GREEDY, METHODS, served_routes

SECRET_HEADERS = {"Cookie": "tokenway_session=cookie-marker-7f3a", "X-Api-Key": "header-marker-7f3a",
                  "User-Agent": "agent-marker-7f3a", "Content-Type": "text/marker-7f3a"}


def _app():
    from app import app

    return app


def assert_error(response: httpx.Response, status: int, code: str, *secrets: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"]) == ("invalid_request_error", code)
    shown = response.text + json.dumps(dict(response.headers))
    for secret in secrets:
        assert secret not in shown
    return error


@pytest.mark.parametrize("path", ["/v1/foo", "/v1/completions", "/v1/responses", "/v1/models/a/b", "/v1",
                                  "/api", "/api/auth", "/admin/holds", "/v1/chat", "/x/y/z/w?q=1", "/api/tokens/a/b"])
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_an_unknown_path_is_404_unknown_url_and_echoes_no_header(stack, path, method):
    _, key = stack.customer("0")
    response = stack.http.request(method, path, headers={"Authorization": f"Bearer {key}", **SECRET_HEADERS},
                                  content=b"{}")
    error = assert_error(response, 404, "unknown_url", key, "marker-7f3a")
    assert error["message"].startswith(f"Unknown request URL: {method} {path.split('?')[0]}.")


def test_every_served_path_answers_every_other_method_405_with_allow(stack):
    served = served_routes(_app())
    assert served["/v1/models"] == ("GET",) and served["/api/tokens/{key_id}"] == ("DELETE", "GET", "PATCH")
    for path, methods in served.items():
        concrete = path.replace("{key_id}", "key_x").replace("{account_id}", "acct_x").replace("{model}", "m")
        for method in set(METHODS) - set(methods):
            response = stack.http.request(method, concrete, headers={"Authorization": "Bearer sk-secret-7f3a"})
            assert response.headers["allow"] == ", ".join(methods), (method, path)
            if method != "HEAD":  # a HEAD answer has no body
                assert_error(response, 405, "method_not_allowed", "sk-secret-7f3a")


def test_a_get_with_any_content_type_is_served_not_refused_by_chalice(stack):
    # Chalice would answer 415 outside the envelope, repeating the Content-Type header.
    _, key = stack.customer("0")
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "text/marker-7f3a"}
    assert stack.http.get("/v1/models", headers=headers).status_code == 200
    assert_error(stack.http.get("/api/auth/me", headers=headers), 401, "invalid_session", "marker-7f3a")


def test_the_sdk_retrieves_a_model_and_gets_404s_in_the_envelope_over_a_socket(stack):
    _, key = stack.customer("1")
    for base in (stack.url, stack.url + "/v1"):
        client = OpenAI(base_url=base, api_key=key, max_retries=0)
        model = client.models.retrieve("deepseek-chat")
        assert (model.id, model.object, model.owned_by) == ("deepseek-chat", "model", "deepseek")
        assert isinstance(model.created, int)
        with pytest.raises(openai.NotFoundError) as missing:
            client.models.retrieve("gpt-99")
        assert missing.value.code == "model_not_found" and missing.value.param == "model"
        with pytest.raises(openai.NotFoundError) as completions:
            client.completions.create(model="deepseek-chat", prompt="Hi")
        with pytest.raises(openai.NotFoundError) as responses:
            client.responses.create(model="deepseek-chat", input="Hi")
        for unknown in (completions, responses):
            assert unknown.value.code == "unknown_url"
            assert key not in unknown.value.response.text


def test_a_socket_request_to_an_unknown_path_or_method_is_answered_by_the_app(stack):
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        deep = client.get("/v1/a/b/c", headers={"Authorization": "Bearer sk-secret-7f3a"})
        assert_error(deep, 404, "unknown_url", "sk-secret-7f3a")
        wrong = client.put("/v1/chat/completions", headers={"Authorization": "Bearer sk-secret-7f3a"})
        assert_error(wrong, 405, "method_not_allowed", "sk-secret-7f3a")
        head = client.head("/v1/foo")
        assert head.status_code == 404 and head.content == b""
        assert client.get("/v1/models").status_code == 401  # the connection is still in step after HEAD


def test_a_model_the_key_may_not_see_is_404_like_an_unknown_one(stack):
    account_id, _ = stack.customer("0")
    narrow = stack.admin("POST", f"/admin/accounts/{account_id}/keys", {"name": "narrow", "models": ["dall-e-3"]})
    headers = {"Authorization": f"Bearer {narrow['key']}"}
    for prefix in ("/v1", ""):
        assert stack.http.get(f"{prefix}/models/dall-e-3", headers=headers).json() == {
            "id": "dall-e-3", "object": "model", "created": 0, "owned_by": "openai"}
        assert_error(stack.http.get(f"{prefix}/models/deepseek-chat", headers=headers), 404, "model_not_found")
    assert stack.http.get("/v1/models/dall-e-3").status_code == 401


# As deployed: what `chalice deploy` sends API Gateway, and the events API Gateway sends back.

def test_the_deployed_api_has_every_method_on_every_path_and_a_greedy_catch_all():
    app = _app()
    validate_routes(app.routes)
    validate_route_content_types(app.routes, app.api.binary_types)
    paths = TemplatedSwaggerGenerator().generate_swagger(app)["paths"]
    assert GREEDY in paths and "/" in paths
    for path, operations in paths.items():
        assert set(operations) >= {method.lower() for method in METHODS}, path
        # Every parent of a path is a resource with methods too (API Gateway answers 403 for one without).
        parent = path.rsplit("/", 1)[0] or "/"
        assert parent in paths, path


def _api_gateway_event(method: str, path: str, resource: str, parameters: dict[str, str] | None) -> dict:
    return {
        "resource": resource, "path": path, "httpMethod": method,
        "headers": {"Authorization": "Bearer sk-secret-7f3a", "Host": "abc.execute-api.us-east-1.amazonaws.com"},
        "multiValueHeaders": {}, "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": parameters, "stageVariables": None, "body": None, "isBase64Encoded": False,
        "requestContext": {"resourcePath": resource, "httpMethod": method, "path": "/api" + path,
                           "stage": "api", "identity": {"sourceIp": "203.0.113.9"}},
    }


@pytest.mark.parametrize("method, path, resource, parameters, status, code", [
    ("GET", "/v1/foo/bar", GREEDY, {"proxy": "v1/foo/bar"}, 404, "unknown_url"),
    ("POST", "/v1/responses", GREEDY, {"proxy": "v1/responses"}, 404, "unknown_url"),
    ("GET", "/v1", "/v1", None, 404, "unknown_url"),
    ("DELETE", "/v1/models", "/v1/models", None, 405, "method_not_allowed"),
])
def test_api_gateway_events_for_unknown_paths_are_answered_in_the_envelope(method, path, resource, parameters,
                                                                             status, code):
    answer = _app()(_api_gateway_event(method, path, resource, parameters), None)
    assert answer["statusCode"] == status
    error = json.loads(answer["body"])["error"]
    assert error["code"] == code and error["message"].startswith(
        "Unknown request URL: " if status == 404 else "Invalid method for URL: ")
    assert path in error["message"] and "sk-secret" not in answer["body"]
