"""A customer's first hour, end to end in the browser: sign up, log in, create a key and copy its
secret, call the relay with the official OpenAI SDK, top up $20 at the provider's checkout and see
$22.00 arrive, read the call and the balance on the dashboard, revoke the key, and be refused."""

from __future__ import annotations

import re
from decimal import Decimal

import openai
import pytest
from openai import OpenAI
from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD, go, new_email, screenshot


def test_sign_up_key_call_top_up_dashboard_revoke(stack, page, upstream):
    email = new_email()
    page.goto("/")
    # Not logged in: the console opens on its log-in page.
    expect(page.get_by_role("heading", name="Log in to Tokenway")).to_be_visible()
    page.get_by_role("link", name="No account yet? Sign up").click()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("status")).to_contain_text("Your account is ready")
    account_id = stack.admin("GET", f"/admin/accounts?search={email}")["data"][0]["account_id"]
    # The operator's welcome credit, so the first call runs before any top-up.
    stack.admin("POST", f"/admin/accounts/{account_id}/credit", {"amount_usd": "1", "note": "welcome"})

    expect(page.get_by_label("Email")).to_have_value(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()

    page.get_by_role("link", name="Token Management").click()
    expect(page.get_by_text("No API keys yet")).to_be_visible()
    page.get_by_role("button", name="Add Token").click()
    dialog = page.get_by_role("dialog", name="Add Token")
    dialog.get_by_label("Label").fill("Production")
    dialog.get_by_role("button", name="Create token").click()
    shown = page.get_by_role("dialog", name="Your new API key")
    expect(shown).to_contain_text("it's only shown once")
    secret = shown.locator("#new-secret").inner_text()
    assert secret.startswith("sk-")
    shown.get_by_role("button", name="Copy key").click()
    expect(shown.get_by_role("button", name="Copied", exact=True)).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    screenshot(page, "tokens-secret")
    shown.get_by_role("button", name="I have copied it").click()
    row = page.get_by_role("row", name=re.compile("Production"))
    expect(row).to_contain_text(secret[-4:])
    expect(row).to_contain_text("Active")
    # Once the dialog is closed the secret is nowhere on the page.
    assert secret not in page.content()

    client = OpenAI(base_url=stack.url + "/v1", api_key=secret, max_retries=0)
    answer = client.chat.completions.create(model="deepseek-chat", messages=[{"role": "user", "content": "Hello"}])
    assert "Hello" in answer.choices[0].message.content
    call = stack.admin("GET", f"/admin/usage/logs?account_id={account_id}")["data"][0]
    cost = Decimal(call["cost_usd"])
    assert cost > 0

    page.get_by_role("link", name="Wallet").click()
    expect(page.get_by_test_id("balance")).to_have_text(_usd(Decimal(1) - cost))
    tiers = page.get_by_role("table", name="Top-up amounts and the credit each gives")
    expect(tiers.get_by_role("row", name=re.compile(r"^\$20 "))).to_contain_text("$22.00 (10% bonus)")
    screenshot(page, "wallet")
    page.get_by_role("button", name="Top up $20.00").click()
    # The provider's checkout page (the demo provider's), then its return page, then back to the console.
    expect(page.get_by_role("button", name="Pay 20.00 USD")).to_be_visible()
    page.get_by_role("button", name="Pay 20.00 USD").click()
    expect(page.get_by_role("heading", name=re.compile("22.00 USD credited"))).to_be_visible()
    page.get_by_role("link", name="Back to the console").click()
    expect(page.get_by_test_id("topup-status")).to_have_text("Payment received: $22.00 credited")
    balance = _usd(Decimal(23) - cost)
    expect(page.get_by_test_id("balance")).to_have_text(balance)
    screenshot(page, "topup-result")

    go(page, "dashboard", "Dashboard")
    expect(page.get_by_test_id("total-requests")).to_have_text("1")
    expect(page.get_by_test_id("total-spend")).to_have_text(_usd(cost))
    expect(page.get_by_test_id("balance")).to_have_text(balance)
    log = page.get_by_role("table", name="Request log")
    expect(log.get_by_role("row", name=re.compile("deepseek-chat"))).to_contain_text(_usd(cost))
    screenshot(page, "dashboard")

    go(page, "tokens", "Token Management")
    page.get_by_role("button", name="Revoke Production").click()
    page.get_by_role("dialog", name="Revoke this key?").get_by_role("button", name="Confirm").click()
    expect(page.get_by_text("No API keys yet")).to_be_visible()
    with pytest.raises(openai.AuthenticationError) as refused:
        client.chat.completions.create(model="deepseek-chat", messages=[{"role": "user", "content": "Hello"}])
    assert refused.value.status_code == 401


def _usd(amount: Decimal) -> str:
    """A decimal amount as the console shows it: at least two decimals, no trailing zeros beyond."""
    whole, _, frac = f"{amount:f}".partition(".")
    frac = frac.rstrip("0").ljust(2, "0")
    return f"${int(whole):,}.{frac}"
