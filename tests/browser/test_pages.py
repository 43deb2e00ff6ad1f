"""Each console page in the browser, as a customer uses it: the auth pages, Token Management's every
action, the wallet's code redemption and history, models and pricing, the quickstart's snippet run as
written, the language switch (remembered), and a phone-sized screen."""

from __future__ import annotations

import email
import email.policy
import re

import openai
import pytest
from openai import OpenAI
from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD, go, log_in, new_email, screenshot, sign_up
from tests.fakes import upstream as faults


def test_log_in_refusal_is_shown_and_sign_up_names_the_bad_field(stack, page):
    page.goto("/#/login")
    page.get_by_label("Email").fill(new_email())
    page.get_by_label("Password", exact=True).fill("not the password at all")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("Incorrect email or password")
    screenshot(page, "login")
    page.get_by_role("link", name="No account yet? Sign up").click()
    page.get_by_label("Email").fill("not-an-email")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page.locator("#f-email-error")).to_be_visible()
    expect(page.get_by_label("Email")).to_have_attribute("aria-invalid", "true")
    screenshot(page, "signup")


def test_forgot_password_mails_a_link_that_sets_a_new_password(stack, page):
    customer = sign_up(stack)
    page.goto("/#/login")
    page.get_by_role("link", name="Forgot password?").click()
    expect(page.get_by_role("heading", name="Forgot your password?")).to_be_visible()
    screenshot(page, "forgot")
    page.get_by_label("Email").fill(customer.email)
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("status")).to_contain_text("a link to set a new password is on its way")

    # The one-machine mode writes the email to the outbox in the data directory.
    [mail] = [message for path in sorted((stack.data_dir / "outbox").glob("*.eml"))
              if (message := email.message_from_bytes(path.read_bytes(), policy=email.policy.default))["To"]
              == customer.email]
    text = mail.get_body(preferencelist=("plain",)).get_content()
    [link] = set(re.findall(r"https?://\S+/#/set-password\?token=\S+", text))  # in each language, the same
    page.goto(link)
    page.get_by_label("New password", exact=True).fill(PASSWORD + " again")
    page.get_by_label("Repeat the new password").fill(PASSWORD + " again")
    page.get_by_role("button", name="Set password").click()
    expect(page.get_by_role("status")).to_contain_text("Your password is set")
    page.get_by_label("Email").fill(customer.email)
    page.get_by_label("Password", exact=True).fill(PASSWORD + " again")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()


def test_the_operators_set_password_link_sets_the_password(stack, page):
    email = new_email()
    account = stack.admin("POST", "/admin/accounts", {"email": email})
    link = stack.admin("POST", f"/admin/accounts/{account['account_id']}/password-link")
    assert link["url"].startswith("/#/set-password?token=")
    page.goto(link["url"])
    page.get_by_label("New password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat the new password").fill(PASSWORD + "x")
    page.get_by_role("button", name="Set password").click()
    expect(page.get_by_role("alert")).to_have_text("The two passwords differ.")
    page.get_by_label("Repeat the new password").fill(PASSWORD)
    page.get_by_role("button", name="Set password").click()
    expect(page.get_by_role("status")).to_contain_text("Your password is set")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()


def test_change_password_ends_the_session_and_the_new_one_logs_in(stack, page):
    customer = sign_up(stack)
    log_in(page, customer)
    go(page, "account", "Account")
    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill(PASSWORD + " again")
    page.get_by_label("Repeat the new password").fill(PASSWORD + " again")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("status")).to_contain_text("Your password was changed")
    page.goto("/#/tokens")  # the old session is over: the console asks to log in
    expect(page.get_by_role("heading", name="Log in to Tokenway")).to_be_visible()
    customer.password = PASSWORD + " again"
    log_in(page, customer)
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in to Tokenway")).to_be_visible()


def test_token_management_edit_disable_regenerate_details_and_api_errors(stack, page, upstream):
    customer = sign_up(stack, usd="1")
    log_in(page, customer)
    go(page, "tokens", "Token Management")
    page.get_by_role("button", name="Add Token").click()
    dialog = page.get_by_role("dialog", name="Add Token")
    dialog.get_by_label("Label").fill("Testing")
    dialog.get_by_label("Quota (USD)").fill("5")
    dialog.get_by_label("Allowed models").fill("deepseek-chat")
    dialog.get_by_label("Allowed IP addresses").fill("not-an-ip")
    dialog.get_by_label("Requests per minute").fill("30")
    dialog.get_by_role("button", name="Create token").click()
    # The API's refusal is shown under the field it names.
    expect(dialog.locator("#f-allowed_ips-error")).to_contain_text("not an IP address")
    dialog.get_by_label("Allowed IP addresses").fill("127.0.0.1/32")
    dialog.get_by_role("button", name="Create token").click()
    first = page.locator("#new-secret").inner_text()
    page.get_by_role("button", name="I have copied it").click()
    row = page.get_by_role("row", name=re.compile("Testing"))
    expect(row).to_contain_text("$5.00 of $5.00")
    expect(row).to_contain_text("30 RPM")
    screenshot(page, "tokens")

    page.get_by_role("button", name="Edit Testing").click()
    edit = page.get_by_role("dialog", name="Edit token")
    edit.get_by_label("Label").fill("Staging")
    edit.get_by_label("Requests per minute").fill("")
    edit.get_by_role("button", name="Save").click()
    row = page.get_by_role("row", name=re.compile("Staging"))
    expect(row).to_contain_text("Plan's")

    page.get_by_role("button", name="Disable Staging").click()
    expect(row).to_contain_text("Disabled")
    page.get_by_role("button", name="Enable Staging").click()
    expect(row).to_contain_text("Active")

    page.get_by_role("button", name="Regenerate Staging").click()
    page.get_by_role("dialog", name="Regenerate this key?").get_by_role("button", name="Confirm").click()
    second = page.locator("#new-secret").inner_text()
    assert second != first and second.startswith("sk-")
    page.get_by_role("button", name="I have copied it").click()
    OpenAI(base_url=stack.url, api_key=second, max_retries=0).chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "Hi"}])

    page.get_by_role("button", name="Usage and limits of Staging").click()
    details = page.get_by_role("dialog", name="Staging: usage and limits")
    expect(details.get_by_role("definition").first).to_have_text("1")
    expect(details.get_by_role("row", name=re.compile("This key"))).to_be_visible()
    details.get_by_role("button", name="Close").click()


def test_wallet_redeems_a_code_and_pages_the_ledger(stack, page):
    customer = sign_up(stack)
    for _ in range(22):
        stack.admin("POST", f"/admin/accounts/{customer.account_id}/credit", {"amount_usd": "0.5", "note": "goodwill"})
    code = stack.admin("POST", "/admin/codes", {"count": 1, "value_usd": "3"})["data"][0]["code"]
    log_in(page, customer)
    go(page, "wallet", "Wallet")
    expect(page.get_by_test_id("balance")).to_have_text("$11.00")
    # A custom amount below the range: the API's refusal under the field, and no checkout.
    page.get_by_label("Custom amount (USD)").fill("3")
    page.get_by_role("button", name="Continue to payment").click()
    expect(page.locator("#f-amount_usd-error")).to_be_visible()
    assert page.url.endswith("#/wallet")
    page.get_by_label("Redemption code").fill("WRONG-CODE")
    page.get_by_role("button", name="Redeem").click()
    expect(page.locator("#f-code-error")).to_have_text("This code does not exist. Check it and try again.")
    page.get_by_label("Redemption code").fill(code)
    page.get_by_role("button", name="Redeem").click()
    expect(page.get_by_role("status")).to_have_text("$3.00 credited. New balance: $14.00.")
    expect(page.get_by_test_id("balance")).to_have_text("$14.00")
    expect(page.get_by_text("No top-ups yet.")).to_be_visible()
    page.get_by_role("tab", name="Ledger").click()
    ledger = page.get_by_role("tabpanel")
    expect(ledger.get_by_role("row")).to_have_count(21)  # a header and a page of 20
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_text("Page 2")).to_be_visible()
    expect(ledger.get_by_role("row")).to_have_count(4)  # 23 entries: 20 then 3
    page.get_by_role("button", name="Previous").click()
    expect(page.get_by_text("Page 1")).to_be_visible()
    screenshot(page, "wallet-ledger")


def test_dashboard_charts_filters_pages_the_log_and_exports_csv(stack, page, upstream):
    customer = sign_up(stack, usd="1")
    keys = {name: stack.admin("POST", f"/admin/accounts/{customer.account_id}/keys", {"name": name})["key"]
            for name in ("Alpha", "Beta")}
    for name in ("Alpha", "Alpha", "Beta"):
        _chat(stack, keys[name])
    upstream.fail_next(faults.http_error(400, "scripted refusal"))
    with pytest.raises(openai.BadRequestError):
        _chat(stack, keys["Beta"])
    log_in(page, customer)
    expect(page.get_by_test_id("total-requests")).to_have_text("4")
    for chart in ("spend", "requests", "tokens", "models", "keys"):
        expect(page.locator(f"#chart-{chart} canvas")).to_have_attribute("role", "img")
    expect(page.locator("#chart-keys canvas")).to_have_attribute("aria-label", re.compile("Alpha .*Beta|Beta .*Alpha"))
    expect(page.locator("#chart-requests canvas")).to_have_attribute("aria-label", "4 requests, 1 failed.")

    log = page.get_by_role("table", name="Request log")
    expect(log.get_by_role("row")).to_have_count(5)
    page.get_by_label("Key", exact=True).select_option(index=2)  # All, Alpha, Beta
    page.get_by_role("button", name="Apply").click()
    expect(log.get_by_role("row")).to_have_count(3)
    page.get_by_label("Status", exact=True).select_option("error")
    page.get_by_role("button", name="Apply").click()
    expect(log.get_by_role("row")).to_have_count(2)
    expect(log.get_by_role("row").nth(1)).to_contain_text("400")
    export = page.get_by_role("link", name="Export CSV").get_attribute("href")
    csv = page.request.get(export)
    assert csv.status == 200 and csv.headers["content-type"].startswith("text/csv")
    lines = csv.text().strip().splitlines()
    assert lines[0].startswith("time,request_id,key_id,model") and len(lines) == 2 and ",400," in lines[1]

    page.get_by_label("Range", exact=True).select_option("24h")
    expect(page.get_by_label("Group by", exact=True)).to_have_value("hour")
    expect(page.locator("section[aria-labelledby=dash-title]")).to_have_attribute("aria-busy", "false")
    expect(page.get_by_test_id("total-requests")).to_have_text("4")
    screenshot(page, "dashboard-filtered")


def _chat(stack, key: str) -> None:
    OpenAI(base_url=stack.url, api_key=key, max_retries=0).chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "Hi"}])


def test_models_page_shows_the_guide_prices_at_the_plan_and_its_limits(stack, page):
    customer = sign_up(stack)
    log_in(page, customer)
    go(page, "models", "Models and pricing")
    guide = page.get_by_role("table", name="Model selection guide")
    expect(guide.get_by_role("row", name=re.compile("General chat"))).to_contain_text("deepseek-chat")
    catalog = page.get_by_role("table", name="Models on the default plan")
    chat = catalog.get_by_role("row", name=re.compile("deepseek-chat"))
    expect(chat).to_contain_text("$0.28")
    expect(chat).to_contain_text("$0.42")
    expect(chat).to_contain_text("128,000")
    expect(catalog.get_by_role("row", name=re.compile("dall-e-3"))).to_contain_text("$0.04 per image")
    expect(page.get_by_role("table", name="Rate limits of the default plan")).to_be_visible()
    screenshot(page, "models")


def test_quickstart_python_snippet_runs_as_shown_with_a_real_key(stack, page, upstream):
    customer = sign_up(stack, usd="1")
    key = stack.admin("POST", f"/admin/accounts/{customer.account_id}/keys", {"name": "Quickstart"})["key"]
    log_in(page, customer)
    go(page, "quickstart", "Quickstart")
    expect(page.get_by_test_id("base-url")).to_have_text(stack.url)
    page.get_by_role("button", name="Copy the Python (OpenAI SDK) snippet").click()
    snippet = page.evaluate("navigator.clipboard.readText()")
    assert f'base_url="{stack.url}"' in snippet
    expect(page.locator("#snippet-curl")).to_contain_text(f"curl {stack.url}/v1/chat/completions")
    expect(page.locator("#snippet-node")).to_contain_text(f'baseURL: "{stack.url}"')
    screenshot(page, "quickstart")
    scope: dict = {}
    exec(snippet.replace('api_key="sk-..."', f'api_key="{key}"'), scope)  # noqa: S102 (the page's own snippet)
    assert "Hello" in scope["response"].choices[0].message.content
    assert len(scope["emb"].data) == 1 and scope["img"].data


def test_the_language_switch_translates_and_is_remembered(stack, page):
    customer = sign_up(stack)
    log_in(page, customer)
    page.get_by_label("Language").select_option("zh")
    expect(page.get_by_role("heading", name="仪表盘", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="令牌管理")).to_be_visible()
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    assert page.evaluate("localStorage.getItem('tokenway.lang')") == "zh"
    page.reload()
    expect(page.get_by_role("heading", name="仪表盘", level=1)).to_be_visible()
    page.get_by_role("link", name="钱包").click()
    expect(page.get_by_role("heading", name="额度充值")).to_be_visible()
    screenshot(page, "wallet-zh")
    # Nothing but the language is kept in the browser's storage.
    assert page.evaluate("Object.keys(localStorage)") == ["tokenway.lang"]
    page.get_by_label("语言").select_option("en")
    # Every English text has its Chinese one.
    missing = page.evaluate("""async () => {
        const [{ en }, { zh }] = await Promise.all([import("./assets/i18n/en.js"), import("./assets/i18n/zh.js")]);
        return Object.keys(en).filter((key) => !(key in zh)).concat(Object.keys(zh).filter((key) => !(key in en)));
    }""")
    assert missing == []
    expect(page.get_by_role("heading", name="Wallet", level=1)).to_be_visible()


@pytest.mark.parametrize("route, heading", [("dashboard", "Dashboard"), ("tokens", "Token Management"),
                                            ("wallet", "Wallet"), ("models", "Models and pricing")])
def test_pages_fit_a_390_pixel_screen(stack, context, route, heading):
    customer = sign_up(stack)
    phone = context.new_page()
    phone.set_viewport_size({"width": 390, "height": 844})
    log_in(phone, customer)
    go(phone, route, heading)
    # The page itself never scrolls sideways; wide tables scroll inside their own box.
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    expect(phone.get_by_role("navigation", name="Main")).to_be_visible()
    screenshot(phone, f"phone-{route}")


def test_the_keyboard_alone_reaches_add_token_and_escape_closes_its_dialog(stack, page):
    log_in(page, sign_up(stack))
    go(page, "tokens", "Token Management")
    page.locator("body").focus()
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Add Token":
            break
    else:
        raise AssertionError("Tab never reached the Add Token button")
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Add Token")
    expect(dialog).to_be_visible()
    # The dialog takes the focus: typing goes to its first field.
    page.keyboard.type("Keyboard")
    expect(dialog.get_by_label("Label")).to_have_value("Keyboard")
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(page.get_by_text("No API keys yet")).to_be_visible()


def test_a_new_tab_reads_with_the_cookie_and_logs_in_again_before_its_first_write(stack, context, page):
    customer = sign_up(stack)
    log_in(page, customer)
    other = context.new_page()  # the cookie is the context's; the CSRF token stays with the first tab
    go(other, "tokens", "Token Management")
    other.get_by_role("button", name="Add Token").click()
    other.get_by_role("dialog", name="Add Token").get_by_label("Label").fill("Second tab")
    other.get_by_role("button", name="Create token").click()
    expect(other.get_by_role("heading", name="Log in to Tokenway")).to_be_visible()
    log_in(other, customer)
    assert stack.admin("GET", f"/admin/accounts/{customer.account_id}/keys")["data"] == []
