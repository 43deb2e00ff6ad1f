"""The operator CLI against an httpx handler standing in for the admin API."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tokenway_cli.main import main

TOKEN = "adm-0123456789abcdef"
URL = "http://gateway.test"
WALLET = {"account_id": "acct_1", "balance_usd": "25.00", "held_usd": "0.00", "available_usd": "25.00"}


@dataclass
class Run:
    code: int
    out: str
    err: str
    sent: list[httpx.Request]

    @property
    def request(self) -> httpx.Request:
        assert len(self.sent) == 1
        return self.sent[0]

    @property
    def body(self) -> Any:
        return json.loads(self.request.content) if self.request.content else None

    @property
    def printed(self) -> Any:
        return json.loads(self.out)


@dataclass
class Gateway:
    """Records each request and answers with `reply` (a response, or a function of the request)."""

    reply: httpx.Response | Callable[[httpx.Request], httpx.Response] = field(
        default_factory=lambda: httpx.Response(200, json={"ok": True}))
    environ: dict[str, str] = field(default_factory=lambda: {"TOKENWAY_URL": URL, "TOKENWAY_ADMIN_TOKEN": TOKEN})

    def run(self, *argv: str) -> Run:
        sent: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            sent.append(request)
            return self.reply(request) if callable(self.reply) else self.reply

        out, err = io.StringIO(), io.StringIO()
        with httpx.Client(transport=httpx.MockTransport(handler)) as http:
            code = main(list(argv), http=http, environ=self.environ, stdout=out, stderr=err)
        run = Run(code, out.getvalue(), err.getvalue(), sent)
        assert TOKEN not in run.out + run.err
        return run


@pytest.fixture
def gateway() -> Gateway:
    return Gateway()


def assert_sent(run: Run, method: str, path: str, body: Any) -> None:
    assert run.code == 0, run.err
    assert (run.request.method, run.request.url.path) == (method, path)
    assert str(run.request.url).startswith(URL + "/admin/")
    assert run.request.headers["authorization"] == f"Bearer {TOKEN}"
    assert run.body == body
    assert run.err == ""


def test_channel_add(gateway: Gateway) -> None:
    gateway.reply = httpx.Response(201, json={"name": "deepseek", "base_url": "https://api.deepseek.com/v1",
                                              "kind": "openai"})
    run = gateway.run("channel", "add", "deepseek", "--base-url", "https://api.deepseek.com/v1",
                      "--api-key", "sk-upstream")
    assert_sent(run, "POST", "/admin/channels", {"name": "deepseek", "base_url": "https://api.deepseek.com/v1",
                                                 "api_key": "sk-upstream", "kind": "openai"})
    assert run.printed == gateway.reply.json()


def test_channel_add_with_extra_headers(gateway: Gateway) -> None:
    run = gateway.run("channel", "add", "edge", "--base-url", "https://edge.example/v1", "--api-key", "sk-up",
                      "--header", "X-Org=acme", "--header", "X-Note=a=b")
    assert_sent(run, "POST", "/admin/channels", {"name": "edge", "base_url": "https://edge.example/v1",
                                                 "api_key": "sk-up", "kind": "openai",
                                                 "extra_headers": {"X-Org": "acme", "X-Note": "a=b"}})


def test_channel_header_without_a_value_is_refused(gateway: Gateway) -> None:
    run = gateway.run("channel", "add", "edge", "--base-url", "https://edge.example/v1", "--api-key", "sk-up",
                      "--header", "X-Org")
    assert run.code != 0 and run.sent == []
    assert "NAME=VALUE" in run.err


def test_channel_list_and_state(gateway: Gateway) -> None:
    assert_sent(gateway.run("channel", "list"), "GET", "/admin/channels", None)
    assert_sent(gateway.run("channel", "state", "edge", "open"), "POST", "/admin/channels/edge/state",
                {"state": "open"})


def test_model_add_with_a_route_priority_weight_and_fallbacks(gateway: Gateway) -> None:
    run = gateway.run("model", "add", "chat", "--channel", "edge", "--input-per-1m", "1", "--output-per-1m", "2",
                      "--priority", "2", "--weight", "3", "--fallbacks", "backup, last")
    assert_sent(run, "POST", "/admin/models", {"name": "chat", "channel": "edge", "input_per_1m": "1",
                                               "output_per_1m": "2", "priority": 2, "weight": 3,
                                               "fallbacks": ["backup", "last"]})


def test_model_add_sends_prices_exactly_as_typed_and_omits_what_is_not_given(gateway: Gateway) -> None:
    run = gateway.run("model", "add", "deepseek-chat", "--channel", "deepseek", "--input-per-1m", "0.28",
                      "--cached-input-per-1m", "0.028", "--output-per-1m", "0.420", "--context-window", "128000")
    assert_sent(run, "POST", "/admin/models", {
        "name": "deepseek-chat", "channel": "deepseek", "input_per_1m": "0.28", "cached_input_per_1m": "0.028",
        "output_per_1m": "0.420", "context_window": 128000,
    })


def test_model_add_with_every_option(gateway: Gateway) -> None:
    run = gateway.run("model", "add", "fast", "--channel", "groq", "--upstream-model", "llama-3.1-8b",
                      "--input-per-1m", "0.05", "--output-per-1m", "0.08", "--cached-input-per-1m", "0",
                      "--max-output-tokens", "8192", "--kind", "chat", "--timeout-s", "45",
                      "--context-window", "131072")
    assert_sent(run, "POST", "/admin/models", {
        "name": "fast", "channel": "groq", "upstream_model": "llama-3.1-8b", "input_per_1m": "0.05",
        "output_per_1m": "0.08", "cached_input_per_1m": "0", "max_output_tokens": 8192, "kind": "chat",
        "timeout_s": 45, "context_window": 131072,
    })


def test_an_image_model_needs_only_its_per_image_price(gateway: Gateway) -> None:
    run = gateway.run("model", "add", "gpt-image-1", "--channel", "openai", "--per-image", "0.04")
    assert_sent(run, "POST", "/admin/models", {"name": "gpt-image-1", "channel": "openai", "per_image": "0.04"})


def test_model_add_sets_the_cap_field_and_pass_through_fields(gateway: Gateway) -> None:
    run = gateway.run("model", "add", "o3", "--channel", "openai", "--input-per-1m", "2", "--output-per-1m", "8",
                      "--cap-field", "max_completion_tokens", "--pass-through", "service_tier, reasoning_effort")
    assert_sent(run, "POST", "/admin/models", {
        "name": "o3", "channel": "openai", "input_per_1m": "2", "output_per_1m": "8",
        "cap_field": "max_completion_tokens", "pass_through": ["service_tier", "reasoning_effort"],
    })


def test_an_empty_pass_through_clears_the_list(gateway: Gateway) -> None:
    run = gateway.run("model", "add", "o3", "--channel", "openai", "--input-per-1m", "2", "--output-per-1m", "8",
                      "--pass-through", "")
    assert run.code == 0 and run.body["pass_through"] == []


def test_an_image_model_has_prices_by_quality_and_size(gateway: Gateway) -> None:
    run = gateway.run("model", "add", "dall-e-3", "--channel", "openai", "--per-image", "0.04",
                      "--image-price", "hd:1024x1024=0.08", "--image-price", "hd:1792x1024=0.12")
    assert_sent(run, "POST", "/admin/models", {
        "name": "dall-e-3", "channel": "openai", "per_image": "0.04",
        "image_prices": [{"quality": "hd", "size": "1024x1024", "per_image": "0.08"},
                         {"quality": "hd", "size": "1792x1024", "per_image": "0.12"}],
    })


@pytest.mark.parametrize("argv", [
    ["--image-price", "hd=0.08"], ["--image-price", "hd:1024x1024"], ["--per-image", "1", "--cap-field", "max"],
])
def test_malformed_model_options_are_usage_errors(gateway: Gateway, argv: list[str]) -> None:
    run = gateway.run("model", "add", "m", "--channel", "c", *argv)
    assert run.code == 2 and run.sent == []


@pytest.mark.parametrize("prices", [[], ["--input-per-1m", "1"], ["--output-per-1m", "2"]])
def test_a_token_priced_model_needs_both_prices(gateway: Gateway, prices: list[str]) -> None:
    run = gateway.run("model", "add", "m", "--channel", "c", *prices)
    assert run.code == 2
    assert "--per-image" in run.err
    assert run.sent == [] and run.out == ""


def test_account_create(gateway: Gateway) -> None:
    gateway.reply = httpx.Response(201, json={"account_id": "acct_1", "email": "ops@example.com"})
    run = gateway.run("account", "create", "ops@example.com")
    assert_sent(run, "POST", "/admin/accounts", {"email": "ops@example.com"})
    assert run.printed == {"account_id": "acct_1", "email": "ops@example.com"}


def test_account_password_link(gateway: Gateway) -> None:
    link = {"token": "acct_1.secret", "url": "/#/set-password?token=acct_1.secret",
            "expires_at": "2026-11-30T12:00:00Z"}
    gateway.reply = httpx.Response(201, json=link)
    run = gateway.run("account", "password-link", "acct_1")
    assert_sent(run, "POST", "/admin/accounts/acct_1/password-link", None)
    assert run.printed == link


@pytest.mark.parametrize("argv, body", [
    (["acct_1", "pro", "team"], {"groups": ["pro", "team"]}),
    (["acct_1", "pro", "--no-default"], {"groups": ["pro"], "default_plan": False}),
    (["acct_1", "--default"], {"groups": [], "default_plan": True}),
])
def test_account_groups(gateway: Gateway, argv: list[str], body: dict) -> None:
    run = gateway.run("account", "groups", *argv)
    assert_sent(run, "PATCH", "/admin/accounts/acct_1", body)


def test_wallet_credit(gateway: Gateway) -> None:
    gateway.reply = httpx.Response(200, json=WALLET)
    run = gateway.run("wallet", "credit", "acct_1", "25.000000001", "--note", "first top-up")
    assert_sent(run, "POST", "/admin/accounts/acct_1/credit", {"amount_usd": "25.000000001", "note": "first top-up"})
    assert run.printed == WALLET


def test_wallet_credit_without_a_note(gateway: Gateway) -> None:
    run = gateway.run("wallet", "credit", "acct_1", "0.1")
    assert_sent(run, "POST", "/admin/accounts/acct_1/credit", {"amount_usd": "0.1"})


def test_wallet_credit_with_a_reference_prints_whether_it_applied(gateway: Gateway) -> None:
    answer = {**WALLET, "applied": False, "credit": {"entry_id": "0000000005000#credit#operator#ab",
                                                      "reference": "invoice-2041", "amount_usd": "25.00"}}
    gateway.reply = httpx.Response(200, json=answer)
    run = gateway.run("wallet", "credit", "acct_1", "25", "--reference", "invoice-2041")
    assert_sent(run, "POST", "/admin/accounts/acct_1/credit", {"amount_usd": "25", "reference": "invoice-2041"})
    assert run.printed == answer


def test_wallet_show(gateway: Gateway) -> None:
    gateway.reply = httpx.Response(200, json=WALLET)
    run = gateway.run("wallet", "show", "acct_1")
    assert_sent(run, "GET", "/admin/accounts/acct_1/wallet", None)
    assert run.printed == WALLET


def test_key_create(gateway: Gateway) -> None:
    created = {"key": "sk-secret", "key_id": "key_1", "account_id": "acct_1", "name": "laptop", "group": "vip",
               "hint": "sk-sec…cret"}
    gateway.reply = httpx.Response(201, json=created)
    run = gateway.run("key", "create", "acct_1", "laptop", "--group", "vip")
    assert_sent(run, "POST", "/admin/accounts/acct_1/keys", {"name": "laptop", "group": "vip"})
    assert run.printed == created


def test_key_create_without_a_group(gateway: Gateway) -> None:
    run = gateway.run("key", "create", "acct_1", "ci")
    assert_sent(run, "POST", "/admin/accounts/acct_1/keys", {"name": "ci"})


def test_holds_sweep(gateway: Gateway) -> None:
    gateway.reply = httpx.Response(200, json={"released": 3})
    run = gateway.run("holds", "sweep")
    assert_sent(run, "POST", "/admin/holds/sweep", {})
    assert run.printed == {"released": 3}


def test_path_parameters_are_url_encoded(gateway: Gateway) -> None:
    run = gateway.run("wallet", "show", "acct/../x y")
    assert run.request.url.raw_path == b"/admin/accounts/acct%2F..%2Fx%20y/wallet"


def test_the_url_keeps_a_stage_path_and_loses_a_trailing_slash(gateway: Gateway) -> None:
    gateway.environ["TOKENWAY_URL"] = "https://abc.execute-api.us-east-1.amazonaws.com/api/"
    run = gateway.run("holds", "sweep")
    assert str(run.request.url) == "https://abc.execute-api.us-east-1.amazonaws.com/api/admin/holds/sweep"


def test_flags_win_over_the_environment(gateway: Gateway) -> None:
    gateway.environ = {"TOKENWAY_URL": "http://env.test", "TOKENWAY_ADMIN_TOKEN": "env-token"}
    run = gateway.run("--url", URL, "--admin-token", TOKEN, "holds", "sweep")
    assert_sent(run, "POST", "/admin/holds/sweep", {})


def test_the_environment_is_used_without_flags(gateway: Gateway) -> None:
    gateway.environ = {"TOKENWAY_URL": "http://env.test", "TOKENWAY_ADMIN_TOKEN": "env-token"}
    run = gateway.run("holds", "sweep")
    assert str(run.request.url) == "http://env.test/admin/holds/sweep"
    assert run.request.headers["authorization"] == "Bearer env-token"


def test_the_default_url_is_the_local_gateway(gateway: Gateway) -> None:
    gateway.environ = {"TOKENWAY_ADMIN_TOKEN": TOKEN}
    run = gateway.run("holds", "sweep")
    assert str(run.request.url) == "http://127.0.0.1:8000/admin/holds/sweep"


def test_an_api_error_prints_its_message_and_status(gateway: Gateway) -> None:
    gateway.reply = httpx.Response(404, json={"error": {"message": "No account `acct_9`.", "type":
                                                        "invalid_request_error", "param": "account_id",
                                                        "code": "not_found"}})
    run = gateway.run("wallet", "credit", "acct_9", "5")
    assert run.code == 1
    assert run.out == ""
    assert run.err == "error: No account `acct_9`. (HTTP 404)\n"


def test_a_rejected_admin_token_is_reported(gateway: Gateway) -> None:
    gateway.reply = httpx.Response(401, json={"error": {"message": "Invalid admin token.",
                                                        "code": "invalid_admin_token"}})
    run = gateway.run("holds", "sweep")
    assert (run.code, run.out, run.err) == (1, "", "error: Invalid admin token. (HTTP 401)\n")


def test_an_error_without_an_envelope_still_gives_one_line(gateway: Gateway) -> None:
    gateway.reply = httpx.Response(502, text="<html>\n<body>Bad Gateway</body>\n</html>")
    run = gateway.run("holds", "sweep")
    assert run.code == 1 and run.out == ""
    assert run.err.startswith("error: ") and run.err.count("\n") == 1
    assert "(HTTP 502)" in run.err


def test_a_success_that_is_not_json_is_an_error(gateway: Gateway) -> None:
    gateway.reply = httpx.Response(200, text="hello")
    run = gateway.run("holds", "sweep")
    assert run.code == 1 and run.out == ""
    assert "not JSON" in run.err


def test_an_unreachable_gateway(gateway: Gateway) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    gateway.reply = refuse
    run = gateway.run("wallet", "show", "acct_1")
    assert run.code == 1 and run.out == ""
    assert run.err == f"error: cannot reach the gateway at {URL}: Connection refused\n"


def test_a_gateway_that_does_not_answer_in_time(gateway: Gateway) -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    gateway.reply = hang
    run = gateway.run("wallet", "credit", "acct_1", "5")
    assert run.code == 1 and run.out == ""
    assert "did not answer within 30 s" in run.err and "may or may not" in run.err


def test_no_admin_token_sends_nothing(gateway: Gateway) -> None:
    gateway.environ = {"TOKENWAY_URL": URL}
    run = gateway.run("holds", "sweep")
    assert run.code == 2
    assert run.sent == [] and run.out == ""
    assert run.err == "error: no admin token: pass --admin-token or set TOKENWAY_ADMIN_TOKEN\n"


@pytest.mark.parametrize("argv", [
    [],
    ["wallet"],
    ["wallet", "credit", "acct_1"],
    ["channel", "add", "deepseek", "--base-url", "https://api.deepseek.com/v1"],
    ["model", "add", "m", "--input-per-1m", "1", "--output-per-1m", "2"],
    ["model", "add", "m", "--channel", "c", "--per-image", "0.04", "--kind", "video"],
    ["model", "add", "m", "--channel", "c", "--per-image", "0.04", "--context-window", "lots"],
    ["bogus"],
])
def test_usage_errors_exit_2_and_send_nothing(gateway: Gateway, argv: list[str]) -> None:
    run = gateway.run(*argv)
    assert run.code == 2
    assert run.sent == [] and run.out == ""
    assert "error:" in run.err


def test_the_admin_token_is_never_printed(gateway: Gateway) -> None:
    gateway.reply = lambda request: httpx.Response(
        400, json={"error": {"message": f"echoing {request.headers['authorization']}"}})
    run = gateway.run("--admin-token", TOKEN, "holds", "sweep")
    assert run.code == 1
    assert TOKEN not in run.err and "***" in run.err


SETTINGS = {"tiers": [{"pay_usd": "10.00", "credit_usd": "10.00", "bonus_usd": "0.00", "bonus_percent": "0"}],
            "min_usd": "5.00", "max_usd": "10000.00"}
ORDER = {"order_id": "top_1", "account_id": "acct_1", "status": "review", "pay_usd": "20.00"}


def test_topup_settings(gateway: Gateway) -> None:
    gateway.reply = httpx.Response(200, json=SETTINGS)
    run = gateway.run("topup", "settings")
    assert_sent(run, "GET", "/admin/topup-settings", None)
    assert run.printed == SETTINGS


def test_topup_set_tiers_sends_the_tiers_in_order_and_the_range(gateway: Gateway) -> None:
    gateway.reply = httpx.Response(200, json=SETTINGS)
    run = gateway.run("topup", "set-tiers", "10=10", "20=22", "50=57.50", "--min", "5", "--max", "10000")
    assert_sent(run, "PUT", "/admin/topup-settings", {
        "tiers": [{"pay_usd": "10", "credit_usd": "10"}, {"pay_usd": "20", "credit_usd": "22"},
                  {"pay_usd": "50", "credit_usd": "57.50"}],
        "min_usd": "5", "max_usd": "10000",
    })
    assert run.printed == SETTINGS


def test_topup_set_tiers_without_a_range_leaves_it_to_the_gateway(gateway: Gateway) -> None:
    run = gateway.run("topup", "set-tiers", "100=120")
    assert_sent(run, "PUT", "/admin/topup-settings", {"tiers": [{"pay_usd": "100", "credit_usd": "120"}]})


def test_topup_set_tiers_without_tiers_removes_every_bonus(gateway: Gateway) -> None:
    run = gateway.run("topup", "set-tiers", "--max", "500")
    assert_sent(run, "PUT", "/admin/topup-settings", {"tiers": [], "max_usd": "500"})


@pytest.mark.parametrize("tier", ["10", "10=", "=12", "10:12"])
def test_a_tier_not_of_the_form_pay_equals_credit_is_a_usage_error(gateway: Gateway, tier: str) -> None:
    run = gateway.run("topup", "set-tiers", "10=10", tier)
    assert run.code == 2
    assert run.sent == [] and run.out == ""
    assert "PAY=CREDIT" in run.err and repr(tier) in run.err


def test_topup_list_without_filters(gateway: Gateway) -> None:
    page = {"data": [ORDER], "next_cursor": None}
    gateway.reply = httpx.Response(200, json=page)
    run = gateway.run("topup", "list")
    assert_sent(run, "GET", "/admin/topups", None)
    assert run.request.url.query == b""
    assert run.printed == page


def test_topup_list_sends_its_filters_url_encoded(gateway: Gateway) -> None:
    run = gateway.run("topup", "list", "--status", "review", "--account", "acct 1&x", "--limit", "20",
                      "--cursor", "eyJ0/IjoxfQ==")
    assert_sent(run, "GET", "/admin/topups", None)
    assert run.request.url.query == b"status=review&account_id=acct%201%26x&limit=20&cursor=eyJ0%2FIjoxfQ%3D%3D"
    assert dict(run.request.url.params) == {"status": "review", "account_id": "acct 1&x", "limit": "20",
                                            "cursor": "eyJ0/IjoxfQ=="}


def test_topup_show(gateway: Gateway) -> None:
    gateway.reply = httpx.Response(200, json=ORDER)
    run = gateway.run("topup", "show", "top_1")
    assert_sent(run, "GET", "/admin/topups/top_1", None)
    assert run.printed == ORDER


def test_topup_confirm(gateway: Gateway) -> None:
    gateway.reply = httpx.Response(200, json={**ORDER, "status": "paid"})
    run = gateway.run("topup", "confirm", "top_1")
    assert_sent(run, "POST", "/admin/topups/top_1/confirm", None)
    assert run.printed["status"] == "paid"


def test_topup_review(gateway: Gateway) -> None:
    run = gateway.run("topup", "review", "top_1", "--note", "paid in EUR; credited by an adjustment")
    assert_sent(run, "POST", "/admin/topups/top_1/review", {"note": "paid in EUR; credited by an adjustment"})


def test_topup_refund_of_part_of_an_order(gateway: Gateway) -> None:
    run = gateway.run("topup", "refund", "top_1", "--reason", "customer asked", "--amount", "10.00")
    assert_sent(run, "POST", "/admin/topups/top_1/refund", {"reason": "customer asked", "amount_usd": "10.00"})


def test_topup_refund_of_all_of_an_order(gateway: Gateway) -> None:
    run = gateway.run("topup", "refund", "top_1", "--reason", "customer asked")
    assert_sent(run, "POST", "/admin/topups/top_1/refund", {"reason": "customer asked"})


def test_order_ids_are_url_encoded(gateway: Gateway) -> None:
    run = gateway.run("topup", "refund", "top/../1", "--reason", "r")
    assert run.request.url.raw_path == b"/admin/topups/top%2F..%2F1/refund"


@pytest.mark.parametrize("usd", ["5", "-5", "-5.00", "-0.000000001"])
def test_wallet_adjust_up_or_down(gateway: Gateway, usd: str) -> None:
    gateway.reply = httpx.Response(200, json=WALLET)
    run = gateway.run("wallet", "adjust", "acct_1", usd, "--reason", "duplicate credit")
    assert_sent(run, "POST", "/admin/accounts/acct_1/adjust", {"amount_usd": usd, "reason": "duplicate credit"})
    assert run.printed == WALLET


def test_wallet_adjust_takes_its_amount_after_the_options_too(gateway: Gateway) -> None:
    run = gateway.run("wallet", "adjust", "--reason", "x", "--reference", "ticket-88", "acct_1", "-5")
    assert_sent(run, "POST", "/admin/accounts/acct_1/adjust", {"amount_usd": "-5", "reason": "x",
                                                              "reference": "ticket-88"})


def test_wallet_adjust_takes_its_amount_after_a_double_dash(gateway: Gateway) -> None:
    run = gateway.run("wallet", "adjust", "--reason", "x", "--", "acct_1", "-5.00")
    assert_sent(run, "POST", "/admin/accounts/acct_1/adjust", {"amount_usd": "-5.00", "reason": "x"})


def test_code_create_prints_the_codes_as_the_gateway_sent_them(gateway: Gateway) -> None:
    made = {"data": [{"code": "TKW-ABCD-EFGH-JKLM", "code_id": "code_1", "hint": "TKW-…-JKLM", "value_usd": "5.00",
                      "status": "active", "batch": "launch", "note": "newsletter",
                      "expires_at": "2027-01-01T00:00:00Z"}]}
    gateway.reply = httpx.Response(201, json=made)
    run = gateway.run("code", "create", "--count", "1", "--value", "5.00", "--expires", "2027-01-01T00:00:00Z",
                      "--batch", "launch", "--note", "newsletter")
    assert_sent(run, "POST", "/admin/codes", {"count": 1, "value_usd": "5.00", "expires_at": "2027-01-01T00:00:00Z",
                                              "batch": "launch", "note": "newsletter"})
    assert run.printed == made


def test_code_create_with_only_what_it_needs(gateway: Gateway) -> None:
    run = gateway.run("code", "create", "--value", "2", "--count", "50")
    assert_sent(run, "POST", "/admin/codes", {"count": 50, "value_usd": "2"})


def test_code_list(gateway: Gateway) -> None:
    run = gateway.run("code", "list")
    assert_sent(run, "GET", "/admin/codes", None)
    assert run.request.url.query == b""


def test_code_list_of_one_batch(gateway: Gateway) -> None:
    run = gateway.run("code", "list", "--batch", "spring sale")
    assert_sent(run, "GET", "/admin/codes", None)
    assert run.request.url.query == b"batch=spring%20sale"


def test_code_disable(gateway: Gateway) -> None:
    run = gateway.run("code", "disable", "code_1")
    assert_sent(run, "POST", "/admin/codes/code_1/disable", None)


def test_usage_summary_of_every_account_or_one(gateway: Gateway) -> None:
    run = gateway.run("usage", "summary", "--from", "2026-11-01", "--to", "2026-12-01", "--tz", "Asia/Shanghai",
                      "--group-by", "account")
    assert_sent(run, "GET", "/admin/usage/summary", None)
    assert run.request.url.query == b"from=2026-11-01&to=2026-12-01&tz=Asia%2FShanghai&group_by=account"
    run = gateway.run("usage", "summary", "--account", "acct_1", "--granularity", "hour")
    assert run.request.url.query == b"account_id=acct_1&granularity=hour"


def test_payments_reconcile(gateway: Gateway) -> None:
    found = {"from": 1793491200, "to": 1796083200, "data": [{"kind": "not_credited", "order_id": "top_1"}]}
    gateway.reply = httpx.Response(200, json=found)
    run = gateway.run("payments", "reconcile", "--from", "2026-11-01", "--to", "2026-12-01T00:00:00+01:00")
    assert_sent(run, "GET", "/admin/payments/reconcile", None)
    assert run.request.url.query == b"from=2026-11-01&to=2026-12-01T00%3A00%3A00%2B01%3A00"
    assert run.printed == found


@pytest.mark.parametrize("argv, names", [
    (["topup"], "required: action"),
    (["topup", "cancel", "top_1"], "invalid choice: 'cancel'"),
    (["topup", "show"], "ORDER"),
    (["topup", "review", "top_1"], "--note"),
    (["topup", "refund", "top_1"], "--reason"),
    (["topup", "list", "--limit", "many"], "--limit"),
    (["wallet", "adjust", "acct_1", "-5"], "--reason"),
    (["wallet", "adjust", "acct_1", "--reason", "x"], "USD"),
    (["code", "create", "--value", "5"], "--count"),
    (["code", "create", "--count", "5"], "--value"),
    (["code", "create", "--count", "five", "--value", "5"], "--count"),
    (["code", "disable"], "code_id"),
    (["payments", "reconcile", "--from", "2026-11-01"], "--to"),
    (["payments", "reconcile", "--to", "2026-12-01"], "--from"),
])
def test_payment_usage_errors_exit_2_and_name_what_is_wrong(gateway: Gateway, argv: list[str], names: str) -> None:
    run = gateway.run(*argv)
    assert run.code == 2
    assert run.sent == [] and run.out == ""
    assert "error:" in run.err and names in run.err.splitlines()[-1]


@pytest.mark.parametrize("argv", [
    ["topup", "set-tiers", "10=9"],
    ["topup", "refund", "top_1", "--reason", "r", "--amount", "900"],
    ["wallet", "adjust", "acct_1", "-5", "--reason", "x"],
    ["code", "create", "--count", "1", "--value", "5", "--expires", "2020-01-01T00:00:00Z"],
    ["payments", "reconcile", "--from", "2026-12-01", "--to", "2026-11-01"],
])
def test_a_refused_payment_command_prints_the_gateways_message(gateway: Gateway, argv: list[str]) -> None:
    gateway.reply = httpx.Response(400, json={"error": {"message": "Not\nthat.", "type": "invalid_request_error",
                                                        "code": "invalid_value"}})
    run = gateway.run(*argv)
    assert len(run.sent) == 1
    assert (run.code, run.out, run.err) == (1, "", "error: Not that. (HTTP 400)\n")


def test_a_refund_of_an_order_not_paid_is_reported(gateway: Gateway) -> None:
    refused = "Top-up order `top_1` is pending: only a paid order can be refunded."
    gateway.reply = httpx.Response(409, json={"error": {"message": refused, "code": "order_not_refundable"}})
    run = gateway.run("topup", "refund", "top_1", "--reason", "r")
    assert (run.code, run.out) == (1, "")
    assert run.err == f"error: {refused} (HTTP 409)\n"
