"""The customer's price list (`GET /api/models`): each of the account's plans, the models it can call
now at that plan's prices (rounded up as a request's charge is), and the plan's limits."""

from __future__ import annotations

import uuid

from tests.api.test_tokens_api import Customer


def test_each_plan_lists_its_models_at_its_multiplier_with_its_limits(stack, upstream):
    name = f"pro-{uuid.uuid4().hex[:6]}"
    stack.admin("POST", "/admin/groups", {"name": name, "multiplier": "1.5", "models": ["deepseek-chat"],
                                          "description": "Pro"})
    stack.admin("PUT", f"/admin/groups/{name}/limits", {"rpm": 60, "tpm": 100000})
    customer = Customer(stack, usd="0")
    stack.admin("PATCH", f"/admin/accounts/{customer.account_id}", {"groups": [name]})

    response = customer.call("GET", "/api/models")

    assert response.status_code == 200, response.text
    plans = {plan["group"]["name"]: plan for plan in response.json()["data"]}
    assert list(plans) == ["default", name]
    default = {model["name"]: model for model in plans["default"]["models"]}
    assert {"deepseek-chat", "text-embedding-3-small", "dall-e-3"} <= set(default)
    assert default["deepseek-chat"] == {
        "name": "deepseek-chat", "kind": "chat", "owned_by": "deepseek",
        "use_case": default["deepseek-chat"]["use_case"], "context_window": 128000, "max_output_tokens": 8192,
        "input_per_1m": "0.28", "cached_input_per_1m": "0.028", "output_per_1m": "0.42", "per_image": "0.00"}
    assert default["deepseek-chat"]["use_case"]
    assert default["dall-e-3"]["per_image"] == "0.04"
    pro = plans[name]
    assert pro["group"]["description"] == "Pro"
    assert (pro["group"]["rpm"], pro["group"]["tpm"], pro["group"]["concurrency"]) == (60, 100000, None)
    assert [(m["name"], m["input_per_1m"], m["cached_input_per_1m"], m["output_per_1m"]) for m in pro["models"]] == [
        ("deepseek-chat", "0.42", "0.042", "0.63")]


def test_the_price_list_needs_a_session(stack):
    response = stack.http.get("/api/models")
    assert response.status_code == 401
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_session")


def test_the_operator_lists_every_model_with_its_prices_and_whether_it_is_routable(stack):
    models = {model["name"]: model for model in stack.admin("GET", "/admin/models")["data"]}
    chat = models["deepseek-chat"]
    assert (chat["routable"], chat["unroutable_reason"]) == (True, None)
    assert (chat["input_per_1m"], chat["output_per_1m"]) == ("0.28", "0.42")
    assert "fake" in [route["channel"] for route in chat["routes"]]
    # A built-in model whose provider has no channel here: listed, with the reason it cannot be called.
    kimi = models["kimi-k2"]
    assert kimi["routable"] is False and "kimi" in kimi["unroutable_reason"]
    customer = Customer(stack, usd="0")
    assert customer.call("GET", "/admin/models").status_code == 403
