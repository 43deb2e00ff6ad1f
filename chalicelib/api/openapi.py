"""The OpenAPI 3.1 document of the console API (`/api/…`) and of the admin routes a new stage is set up and
checked with (`tokenway admin bootstrap`, `tokenway smoke`), served at `/api/openapi.json`."""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any

from chalice import Blueprint, Response

from chalicelib.api.http import json_response, openai_errors

if TYPE_CHECKING:
    from pydantic import BaseModel

openapi_routes = Blueprint(__name__)

_USD = {"type": "string", "pattern": r"^\d+\.\d+$", "description": "USD as a decimal string"}
_USD_OR_NULL = {"anyOf": [_USD, {"type": "null"}]}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_KEY = {
    "type": "object",
    "properties": {
        "id": {"type": "string"}, "name": {"type": "string"}, "hint": {"type": "string"},
        "group": {"type": "string"}, "status": {"enum": ["active", "disabled"]},
        "created_at": _TIME, "last_used_at": _TIME, "expires_at": _TIME,
        "quota_usd": _USD_OR_NULL, "quota_left_usd": _USD_OR_NULL, "spent_usd": _USD,
        "models": {"type": "array", "items": {"type": "string"}},
        "allowed_ips": {"type": "array", "items": {"type": "string"}},
        "rpm_limit": {"type": ["integer", "null"]}, "tpm_limit": {"type": ["integer", "null"]},
        "concurrency_limit": {"type": ["integer", "null"]},
    },
}
_CREATED_KEY = {"allOf": [_KEY, {"type": "object", "properties": {
    "key": {"type": "string", "description": "the secret, shown only in this answer"}}}]}
_USAGE = {"type": "object", "properties": {
    "id": {"type": "string"}, "requests": {"type": "integer"}, "prompt_tokens": {"type": "integer"},
    "completion_tokens": {"type": "integer"}, "total_tokens": {"type": "integer"}, "spent_usd": _USD,
    "last_used_at": _TIME}}
_LIMITS = {"type": "object", "properties": {
    "data": {"type": "array", "items": {"type": "object", "properties": {
        "scope": {"enum": ["key", "model"]}, "model": {"type": "string"}, "rpm": {"type": ["integer", "null"]},
        "tpm": {"type": ["integer", "null"]}, "concurrency": {"type": ["integer", "null"]}}}}}}
_GROUP = {"type": "object", "properties": {
    "name": {"type": "string"}, "multiplier": {"type": "string"},
    "models": {"type": "array", "items": {"type": "string"}}, "description": {"type": "string"}}}
_PRICED_MODEL = {"type": "object", "properties": {
    "name": {"type": "string"}, "kind": {"enum": ["chat", "embedding", "image"]}, "owned_by": {"type": "string"},
    "use_case": {"type": "string"}, "context_window": {"type": ["integer", "null"]},
    "max_output_tokens": {"type": ["integer", "null"]}, "input_per_1m": _USD, "cached_input_per_1m": _USD,
    "output_per_1m": _USD, "per_image": {**_USD, "description": "one image of the default quality and size"}}}
_PLAN_PRICES = {"type": "object", "properties": {
    "group": {"allOf": [_GROUP, {"type": "object", "properties": {
        "rpm": {"type": ["integer", "null"]}, "tpm": {"type": ["integer", "null"]},
        "concurrency": {"type": ["integer", "null"]}}}]},
    "models": {"type": "array", "items": _PRICED_MODEL}}}
_ACCOUNT = {"type": "object", "properties": {
    "account_id": {"type": "string"}, "email": {"type": "string"}, "role": {"enum": ["customer", "admin"]},
    "created_at": _TIME}}
_LOGIN = {"type": "object", "properties": {
    "token": {"type": "string"}, "expires_at": _TIME, "csrf_token": {"type": "string"}, "account": _ACCOUNT}}
_SENT = {"type": "object", "properties": {"status": {"const": "sent"}}}
_WALLET = {"type": "object", "properties": {
    "account_id": {"type": "string"}, "balance_usd": _USD, "available_usd": _USD, "held_usd": _USD,
    "frozen_usd": _USD, "debt_usd": _USD, "currency": {"const": "USD"},
    "suspended": {"type": "boolean", "description": "keys suspended while a payment dispute is open"}}}
_ORDER_STATES = ["pending", "paid", "expired", "refunded", "partially_refunded", "disputed", "review"]
_ORDER = {"type": "object", "properties": {
    "order_id": {"type": "string"}, "status": {"enum": _ORDER_STATES}, "pay_usd": _USD, "credit_usd": _USD,
    "bonus_usd": _USD, "currency": {"const": "USD"}, "provider": {"type": "string"},
    "checkout_url": {"type": ["string", "null"], "description": "where to pay, while pending"},
    "created_at": _TIME, "paid_at": _TIME, "expires_at": _TIME, "refunded_usd": _USD,
    "dispute_status": {"enum": ["open", "won", "lost", None]}}}
_TIER = {"type": "object", "properties": {"pay_usd": _USD, "credit_usd": _USD, "bonus_usd": _USD,
                                          "bonus_percent": {"type": "string"}}}
_OPTIONS = {"type": "object", "properties": {
    "enabled": {"type": "boolean"}, "currency": {"const": "USD"}, "tiers": {"type": "array", "items": _TIER},
    "min_usd": _USD, "max_usd": _USD, "custom_amount": {"type": "boolean"},
    "payment_methods": {"type": "array", "items": {"type": "string"}}}}
_LEDGER_LINE = {"type": "object", "properties": {
    "entry_id": {"type": "string"},
    "kind": {"enum": ["topup", "bonus", "charge", "refund", "dispute", "redeem", "adjustment"]},
    "amount_usd": {"type": "string", "pattern": r"^-?\d+\.\d+$"},
    "balance_after_usd": {"type": "string", "pattern": r"^-?\d+\.\d+$"},
    "reference": {"type": ["string", "null"]}, "note": {"type": ["string", "null"]},
    "model": {"type": ["string", "null"]}, "key_id": {"type": ["string", "null"]}, "created_at": _TIME}}
_REDEEMED = {"allOf": [_WALLET, {"type": "object", "properties": {"credited_usd": _USD, "code": {"type": "string"}}}]}
_COUNTERS = {
    "requests": {"type": "integer"}, "successful_requests": {"type": "integer"},
    "failed_requests": {"type": "integer"}, "spend_usd": _USD, "prompt_tokens": {"type": "integer"},
    "cached_tokens": {"type": "integer"}, "completion_tokens": {"type": "integer"},
    "total_tokens": {"type": "integer"}, "images": {"type": "integer"}}
_MS_OR_NULL = {"type": ["number", "null"]}
_TOTALS = {"type": "object", "properties": {
    **_COUNTERS, "error_rate": _MS_OR_NULL, "latency_mean_ms": _MS_OR_NULL, "latency_p50_ms": _MS_OR_NULL,
    "latency_p95_ms": _MS_OR_NULL, "ttft_mean_ms": _MS_OR_NULL}}
_SUMMARY = {"type": "object", "properties": {
    "from": {"type": "string", "format": "date-time"}, "to": {"type": "string", "format": "date-time"},
    "tz": {"type": "string"}, "granularity": {"enum": ["hour", "day"]}, "group_by": {"type": "string"},
    "totals": _TOTALS,
    "series": {"type": "array", "items": {"type": "object", "properties": {
        "start": {"type": "string", "format": "date-time"}, **_COUNTERS}}},
    "breakdown": {"type": "array", "items": _TOTALS}, "as_of": _TIME}}
_LOG_ROW = {"type": "object", "properties": {
    "time": {"type": "string", "format": "date-time"}, "request_id": {"type": "string"},
    "key_id": {"type": ["string", "null"]}, "model": {"type": ["string", "null"]}, "endpoint": {"type": "string"},
    "stream": {"type": "boolean"}, "status": {"type": "integer"}, "error_type": {"type": ["string", "null"]},
    "prompt_tokens": {"type": "integer"}, "cached_tokens": {"type": "integer"},
    "completion_tokens": {"type": "integer"}, "images": {"type": "integer"}, "cost_usd": _USD,
    "latency_ms": {"type": "integer"}, "ttft_ms": {"type": ["integer", "null"]}}}
_PASSWORD_LINK = {"type": "object", "properties": {
    "token": {"type": "string", "description": "shown only in this answer"},
    "url": {"type": "string", "description": "the console's set-password page, the token in its fragment"},
    "expires_at": _TIME}}
_ADMIN = {"type": "object", "properties": {
    "account_id": {"type": "string"}, "email": {"type": "string"}, "role": {"const": "admin"},
    "status": {"const": "active"}, "groups": {"type": "array", "items": {"type": "string"}},
    "default_plan": {"type": "boolean"}, "password_set": {"type": "boolean"}, "created_at": _TIME,
    "created": {"type": "boolean", "description": "the account is new"},
    "promoted": {"type": "boolean", "description": "the account was not an admin before"},
    "password_link": _PASSWORD_LINK}}
_MODEL = {"type": "object", "properties": {
    "name": {"type": "string"}, "kind": {"enum": ["chat", "embedding", "image"]},
    "routes": {"type": "array", "items": {"type": "object", "properties": {
        "channel": {"type": "string"}, "upstream_model": {"type": "string"}, "priority": {"type": "integer"},
        "weight": {"type": "integer"}}}},
    "fallbacks": {"type": "array", "items": {"type": "string"}},
    "input_per_1m": _USD, "cached_input_per_1m": _USD, "cache_write_per_1m": _USD, "output_per_1m": _USD,
    "per_image": _USD, "image_prices": {"type": "array", "items": {"type": "object", "properties": {
        "quality": {"type": "string"}, "size": {"type": "string"}, "per_image": _USD}}},
    "context_window": {"type": ["integer", "null"]}, "max_output_tokens": {"type": ["integer", "null"]},
    "cap_field": {"type": "string"}, "pass_through": {"type": "array", "items": {"type": "string"}},
    "timeout_s": {"type": ["number", "null"]}}}
_REVOKED = {"type": "object", "properties": {
    "account_id": {"type": "string"}, "key_id": {"type": "string"}, "status": {"const": "revoked"}}}
_ERROR = {"type": "object", "properties": {"error": {"type": "object", "properties": {
    "message": {"type": "string"}, "type": {"type": "string"}, "param": {"type": ["string", "null"]},
    "code": {"type": ["string", "null"]}}}}}


def _list_of(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {"data": {"type": "array", "items": schema}}}


def _page_of(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {"data": {"type": "array", "items": schema},
                                             "next_cursor": {"type": ["string", "null"]}}}


def operations() -> list[tuple[str, str, str, type[BaseModel] | None, int, dict[str, Any] | None, bool]]:
    """(method, path, summary, request model, success status, response schema, needs a session) of each
    operation; the request models are imported here, when the document is first asked for."""
    from chalicelib.identity.accounts import ChangePassword, LogIn, SignUp
    from chalicelib.identity.password_links import SetPassword
    from chalicelib.identity.password_reset import ForgotPassword
    from chalicelib.keys.manage import KeyCreate, KeyUpdate
    from chalicelib.payments.codes import RedeemInput
    from chalicelib.payments.topups import TopupCreate

    return [
        ("POST", "/api/auth/signup", "Create an account", SignUp, 201, _ACCOUNT, False),
        ("POST", "/api/auth/login", "Log in: a session token, also set as an HttpOnly cookie", LogIn, 200,
         _LOGIN, False),
        ("POST", "/api/auth/logout", "End this session", None, 204, None, True),
        ("POST", "/api/auth/password", "Change the password; ends every session", ChangePassword, 204, None, True),
        ("POST", "/api/auth/password/forgot", "Mail a one-time set-password link to the email's account, if there "
         "is one; the answer is the same for any email (limited per email and per address)", ForgotPassword, 202,
         _SENT, False),
        ("POST", "/api/auth/password/set", "Set the password with a one-time link (an operator's or a mailed one); "
         "ends every session", SetPassword, 204, None, False),
        ("GET", "/api/auth/me", "The logged-in account", None, 200, _ACCOUNT, True),
        ("GET", "/api/tokens", "List your API keys (never their secrets)", None, 200, _list_of(_KEY), True),
        ("POST", "/api/tokens", "Create an API key; its secret is shown once", KeyCreate, 201, _CREATED_KEY, True),
        ("GET", "/api/tokens/{key_id}", "One API key", None, 200, _KEY, True),
        ("PATCH", "/api/tokens/{key_id}", "Edit, enable or disable an API key; null clears a limit", KeyUpdate, 200,
         _KEY, True),
        ("DELETE", "/api/tokens/{key_id}", "Revoke an API key", None, 204, None, True),
        ("POST", "/api/tokens/{key_id}/regenerate", "A new secret for the key; the old one stops at once", None, 200,
         _CREATED_KEY, True),
        ("GET", "/api/tokens/{key_id}/usage", "Requests, tokens and spend of an API key", None, 200, _USAGE, True),
        ("GET", "/api/tokens/{key_id}/limits", "The request limits that apply to an API key, per scope (null: "
         "unlimited)", None, 200, _LIMITS, True),
        ("GET", "/api/groups", "The groups (plans) your keys may use", None, 200, _list_of(_GROUP), True),
        ("GET", "/api/models", "The models each of your plans can call now, at its prices (USD per 1M tokens, or "
         "per image), and its limits", None, 200, _list_of(_PLAN_PRICES), True),
        ("GET", "/api/wallet", "Your wallet: balance, held, frozen, debt", None, 200, _WALLET, True),
        ("GET", "/api/wallet/topup-options", "Top-up tiers with their bonus, the range, the payment methods", None,
         200, _OPTIONS, True),
        ("POST", "/api/wallet/topups", "Start a top-up: a pending order and its checkout URL", TopupCreate, 201,
         _ORDER, True),
        ("GET", "/api/wallet/topups", "Your top-up orders, newest first (?status=, ?limit=, ?cursor=)", None, 200,
         _page_of(_ORDER), True),
        ("GET", "/api/wallet/topups/{order_id}", "One top-up order, checked with the payment provider while pending",
         None, 200, _ORDER, True),
        ("GET", "/api/wallet/ledger", "Your ledger, newest first, with the balance after each entry "
         "(?limit=, ?cursor=)", None, 200, _page_of(_LEDGER_LINE), True),
        ("POST", "/api/wallet/redeem", "Redeem a code: its credit and the new balance", RedeemInput, 200, _REDEEMED,
         True),
        ("GET", "/api/usage/summary", "Usage totals, a series by hour or day and a breakdown by model or key "
         "(?from=&to=&tz=&granularity=hour|day&group_by=model|key)", None, 200, _SUMMARY, True),
        ("GET", "/api/usage/logs", "The request log, newest first (?from=&to=&tz=&key_id=&model=&status=&limit="
         "&cursor=)", None, 200, {**_page_of(_LOG_ROW), "properties": {**_page_of(_LOG_ROW)["properties"],
                                                                        "as_of": _TIME}}, True),
        ("GET", "/api/usage/export.csv", "The request log as CSV, streamed (the log's filters)", None, 200, None,
         True),
        ("GET", "/api/openapi.json", "This document", None, 200, {"type": "object"}, False),
    ]


def admin_operations() -> list[tuple[str, str, str, type[BaseModel] | None, int | tuple[int, ...],
                                     dict[str, Any] | None]]:
    """(method, path, summary, request model, success status, response schema) of each documented admin route;
    each takes the admin token, or the session of an account with the admin role."""
    from chalicelib.admin.admins import AdminGrant

    return [
        ("POST", "/admin/admins", "Make the account with the email an admin, creating it if need be, with a new "
         "one-time set-password link (201 when the account is new; safe to repeat; 409 `account_disabled`)",
         AdminGrant, (200, 201), _ADMIN),
        ("GET", "/admin/models", "Every model of the catalog with its prices and routes, and whether a channel "
         "can serve it now (if not, why)", None, 200,
         _list_of({**_MODEL, "properties": {**_MODEL["properties"], "routable": {"type": "boolean"},
                                            "unroutable_reason": {"type": ["string", "null"]}}})),
        ("DELETE", "/admin/accounts/{account_id}/keys/{key_id}", "Revoke one of the account's API keys", None, 200,
         _REVOKED),
    ]


_CONSOLE_SECURITY = [{"session": []}, {"cookie": []}]


@functools.cache
def document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    documented = [(*operation[:6], _CONSOLE_SECURITY if operation[6] else []) for operation in operations()]
    documented += [(*operation, [{"admin": []}, *_CONSOLE_SECURITY]) for operation in admin_operations()]
    for method, path, summary, model, status, schema, security in documented:
        success = {"description": "Success", **({"content": {"application/json": {"schema": schema}}}
                                                if schema else {})}
        operation: dict[str, Any] = {
            "summary": summary,
            "responses": {
                **{str(code): success for code in (status if isinstance(status, tuple) else (status,))},
                "default": {"description": "An error", "content": {"application/json": {"schema": _ERROR}}},
            },
        }
        if model is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": model.model_json_schema()}}}
        names = re.findall(r"\{(\w+)\}", path)
        if names:
            operation["parameters"] = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                                       for name in names]
        operation["security"] = security
        paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Tokenway console API", "version": "1"},
        "paths": paths,
        "components": {"securitySchemes": {
            "session": {"type": "http", "scheme": "bearer", "description": "the token from /api/auth/login"},
            "admin": {"type": "http", "scheme": "bearer", "description": "the stage's admin token"},
            "cookie": {"type": "apiKey", "in": "cookie", "name": "tokenway_session",
                       "description": "writes also need the X-CSRF-Token header"},
        }},
    }


@openapi_routes.route("/api/openapi.json", methods=["GET"])
@openai_errors
def openapi_json() -> Response:
    return json_response(document())
