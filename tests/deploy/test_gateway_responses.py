"""What API Gateway answers itself, before the app sees a request: in the OpenAI error envelope, as the
app answers, and never repeating any part of the request (API Gateway's own "missing authentication
token" message repeats the Authorization header, secret key and all)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.deploy.conftest import STAGES

# The response types and the status each answers with (None: the status API Gateway chose).
EXPECTED = {
    "MISSING_AUTHENTICATION_TOKEN": 404,  # no resource or method: the app's own "unknown URL" answer
    "RESOURCE_NOT_FOUND": 404,
    "UNAUTHORIZED": 401,
    "ACCESS_DENIED": 403,
    "INVALID_SIGNATURE": 403,
    "WAF_FILTERED": 403,
    "THROTTLED": 429,
    "QUOTA_EXCEEDED": 429,
    "REQUEST_TOO_LARGE": 413,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "INTEGRATION_TIMEOUT": 504,
    "DEFAULT_4XX": None,
    "DEFAULT_5XX": None,
}
ERROR_TYPES = {"invalid_request_error", "permission_error", "rate_limit_error", "api_error"}


def gateway_responses(template: dict[str, Any]) -> dict[str, Any]:
    definition = template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    return definition["x-amazon-apigateway-gateway-responses"]


@pytest.mark.parametrize("stage", STAGES)
def test_every_answer_of_api_gateway_is_an_openai_error(packaged: dict[str, Any], stage: str) -> None:
    responses = gateway_responses(packaged[stage])
    assert set(responses) == set(EXPECTED)
    for kind, response in responses.items():
        assert response.get("statusCode") == EXPECTED[kind], kind
        assert response["responseParameters"] == {"gatewayresponse.header.Content-Type": "'application/json'"}
        (content_type, body), = response["responseTemplates"].items()
        assert content_type == "application/json"
        error = json.loads(body)["error"]
        assert set(error) == {"message", "type", "param", "code"}, kind
        assert error["type"] in ERROR_TYPES and error["param"] is None, kind
        assert isinstance(error["code"], str) and error["message"].endswith("."), kind
    assert json.loads(responses["MISSING_AUTHENTICATION_TOKEN"]["responseTemplates"]["application/json"])[
        "error"]["code"] == "unknown_url"


@pytest.mark.parametrize("stage", STAGES)
def test_no_answer_repeats_the_request(packaged: dict[str, Any], stage: str) -> None:
    """Fixed texts only: no $context, $input, $util or method.request variable, which could carry the
    Authorization header (API Gateway's error message does, for a request on an unknown route)."""
    for kind, response in gateway_responses(packaged[stage]).items():
        for text in [*response["responseTemplates"].values(), *response["responseParameters"].values()]:
            assert "$" not in text and "method.request" not in text, kind


@pytest.mark.parametrize("stage", STAGES)
def test_the_responses_are_part_of_the_deployed_api_definition(packaged: dict[str, Any], stage: str) -> None:
    """In the definition body, a change to them is a change of the definition, which redeploys the stage."""
    api = packaged[stage]["Resources"]["RestAPI"]
    assert api["Type"] == "AWS::Serverless::Api"
    assert api["Properties"]["DefinitionBody"]["paths"]  # Chalice's routes, beside the responses
