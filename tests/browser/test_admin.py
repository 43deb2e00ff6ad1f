"""The admin pages, with the console session of an account given the admin role: accounts (search,
credit with a reason, plans, disable), channels and their health, models and prices, plans and their
limits, top-up orders in review, redemption codes, and usage over all accounts. A customer sees none."""

from __future__ import annotations

import re
import uuid

import httpx
from playwright.sync_api import Page, expect

from tests.browser.conftest import PASSWORD, Customer, Gateway, go, log_in, screenshot, sign_up


def admin_session(stack: Gateway, page: Page) -> Customer:
    operator = sign_up(stack)
    stack.admin("PATCH", f"/admin/accounts/{operator.account_id}", {"role": "admin"})
    log_in(page, operator)
    return operator


def tab(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Administration").get_by_role("link", name=name).click()
    expect(page.get_by_role("heading", name=name, level=2)).to_be_visible()


def test_a_customer_has_no_admin_pages(stack, page):
    log_in(page, sign_up(stack))
    expect(page.get_by_role("link", name="Admin")).to_have_count(0)
    page.goto("/#/admin")
    expect(page.get_by_role("alert")).to_have_text("This page is for administrators.")


def test_accounts_search_credit_with_a_reason_plans_and_disable(stack, page):
    admin_session(stack, page)
    customer = sign_up(stack)
    plan = f"gold-{uuid.uuid4().hex[:6]}"
    stack.admin("POST", "/admin/groups", {"name": plan, "multiplier": "1.5"})
    go(page, "admin/accounts", "Administration")
    page.get_by_label("Search by email or account ID").fill(customer.email)
    page.get_by_role("button", name="Search").click()
    rows = page.get_by_role("table", name="Accounts").get_by_role("row")
    expect(rows).to_have_count(2)

    page.get_by_role("button", name=f"Credit {customer.email}").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Amount (USD)").fill("5")
    dialog.get_by_role("button", name="Credit").click()
    expect(dialog.locator("#f-note-error")).to_have_text("Give the reason: it is kept in the ledger.")
    dialog.get_by_label("Reason").fill("Compensation for the outage")
    dialog.get_by_role("button", name="Credit").click()
    expect(page.get_by_role("status")).to_have_text(f"{customer.email} credited. New balance: $5.00.")
    assert stack.admin("GET", f"/admin/accounts/{customer.account_id}/wallet")["balance_usd"] == "5.00"

    page.get_by_role("button", name=f"Plans of {customer.email}").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Plans").fill("no-such-plan")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.get_by_role("alert")).to_contain_text("no-such-plan")
    dialog.get_by_label("Plans").fill(plan)
    dialog.get_by_role("button", name="Save").click()
    expect(page.get_by_role("row", name=re.compile(re.escape(customer.email)))).to_contain_text(f"default, {plan}")

    page.get_by_role("button", name=f"Disable {customer.email}").click()
    page.get_by_role("dialog").get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("row", name=re.compile(re.escape(customer.email)))).to_contain_text("Disabled")
    screenshot(page, "admin-accounts")
    refused = httpx.post(f"{stack.url}/api/auth/login", json={"email": customer.email, "password": PASSWORD})
    assert refused.status_code == 403


def test_channels_models_and_plans(stack, page):
    admin_session(stack, page)
    go(page, "admin/channels", "Administration")
    tab(page, "Channels")
    fake = page.get_by_role("row", name=re.compile("^fake"))
    expect(fake).to_contain_text("Healthy")
    expect(fake).to_contain_text(stack.upstream.base_url)
    page.get_by_label("State of fake").select_option("open")
    expect(fake).to_contain_text("Out of service")
    page.get_by_label("State of fake").select_option("auto")
    expect(fake).to_contain_text("Healthy")
    screenshot(page, "admin-channels")

    tab(page, "Models and prices")
    embedding = page.get_by_role("row", name=re.compile("^text-embedding-3-small"))
    expect(embedding).to_contain_text("$0.02")
    expect(page.get_by_role("row", name=re.compile("^kimi-k2"))).to_contain_text("no channel serves it")
    page.get_by_role("button", name="Prices of text-embedding-3-small").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Input per 1M tokens", exact=True).fill("0.025")
    dialog.get_by_role("button", name="Save").click()
    expect(embedding).to_contain_text("$0.025")
    screenshot(page, "admin-models")
    # The gateway is shared by this process's tests: its list price again.
    stack.admin("POST", "/admin/models", {"name": "text-embedding-3-small", "channel": "fake", "input_per_1m": "0.02"})

    tab(page, "Plans and limits")
    plan = f"silver-{uuid.uuid4().hex[:6]}"
    page.get_by_label("Name", exact=True).fill(plan)
    page.get_by_label("Price multiplier").fill("1.25")
    page.get_by_label("Description").fill("For teams")
    page.get_by_role("button", name="Create plan").click()
    row = page.get_by_role("row", name=re.compile(f"^{plan}"))
    expect(row).to_contain_text("×1.25")
    page.get_by_label("Plan", exact=True).select_option(plan)
    page.get_by_label("RPM", exact=True).fill("60")
    page.get_by_role("button", name="Save").click()
    expect(row).to_contain_text("60")
    assert {"rpm": 60, "tpm": None, "concurrency": None}.items() <= next(
        g for g in stack.admin("GET", "/admin/groups")["data"] if g["name"] == plan).items()
    screenshot(page, "admin-plans")


def test_topups_in_review_codes_and_usage(stack, page, upstream):
    payer = sign_up(stack, usd="1")
    login = httpx.post(f"{stack.url}/api/auth/login", json={"email": payer.email, "password": PASSWORD}).json()
    order = httpx.post(f"{stack.url}/api/wallet/topups", json={"amount_usd": "20"},
                       headers={"Authorization": f"Bearer {login['token']}"}).json()
    # Paid a different amount than ordered: the order waits for the operator.
    stack.payments.pay(order["checkout_url"].rsplit("/", 1)[-1], amount_total=100)
    key = stack.admin("POST", f"/admin/accounts/{payer.account_id}/keys", {"name": "Batch"})["key"]
    httpx.post(f"{stack.url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
               json={"model": "deepseek-chat", "messages": [{"role": "user", "content": "Hi"}]}).raise_for_status()

    admin_session(stack, page)
    go(page, "admin/topups", "Administration")
    row = page.get_by_role("row", name=re.compile(order["order_id"]))
    expect(row).to_contain_text("paid 100 cents")
    page.get_by_role("button", name=f"Mark order {order['order_id']} reviewed").click()
    page.get_by_role("dialog").get_by_label("Reason").fill("Refunded at the provider")
    page.get_by_role("dialog").get_by_role("button", name="Mark reviewed").click()
    expect(row).to_contain_text("Refunded at the provider")
    expect(row).to_contain_text("reviewed")
    screenshot(page, "admin-topups")

    tab(page, "Redemption codes")
    batch = f"promo-{uuid.uuid4().hex[:6]}"
    page.get_by_label("How many").fill("2")
    page.get_by_label("Value (USD)").fill("1")
    page.get_by_label("Batch").fill(batch)
    page.get_by_role("button", name="Create codes").click()
    codes = page.locator("#new-codes").inner_text().split("\n")
    assert len(codes) == 2
    made = page.get_by_role("row", name=re.compile(batch))
    expect(made).to_have_count(2)
    first_hint = made.first.get_by_role("rowheader").inner_text()
    page.get_by_role("button", name=f"Disable code {first_hint}").click()
    expect(page.get_by_role("row", name=re.compile(batch)).first).to_contain_text("Disabled")
    screenshot(page, "admin-codes")

    tab(page, "Usage, all accounts")
    expect(page.get_by_test_id("admin-requests")).not_to_have_text("0")
    expect(page.get_by_role("row", name=re.compile(payer.account_id))).to_contain_text("1")
    screenshot(page, "admin-usage")
