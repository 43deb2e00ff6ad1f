"""The console in a real browser: Debian's Chromium driven by Playwright, against the gateway as
`make run` serves it on one machine: the one-machine server process (tests/api's `Server`) on SQLite
storage in a data directory, the fake upstream and the demo payment provider (Stripe's API, with a
checkout page the browser pays on). The one-machine storage writes the request log as a request ends,
so the dashboard shows a call at once.

One browser per test process; each test gets a fresh context (no cookies, no storage) and a page that
fails the test on any script error or CSP refusal. Tests write a screenshot of each page they show to
build/screenshots/ (not committed)."""

from __future__ import annotations

import os
import re
import signal
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from chalicelib.config import Settings
from devstack.demo_payments import DemoPayments
from tests.api.conftest import configure_catalog
from tests.api.servers import Server
from tests.conftest import ROOT
from tests.fakes.upstream import FakeUpstream

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = ROOT / "build" / "screenshots"
VENDOR = ROOT / "chalicelib" / "web" / "vendor"
PASSWORD = "correct horse battery staple"
ADMIN_TOKEN = "admin-" + uuid.uuid4().hex
WEBHOOK_SECRET = "whsec_" + uuid.uuid4().hex
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@dataclass
class Gateway:
    """The running gateway: its URL, and the operator's API for what a test arranges."""

    url: str
    http: httpx.Client
    upstream: FakeUpstream
    payments: DemoPayments
    server: Server
    data_dir: Path  # the one-machine data directory (the mail outbox among it)

    def admin(self, method: str, path: str, json: Any = None) -> Any:
        response = self.http.request(method, path, json=json, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert response.status_code < 300, response.text
        return response.json()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    upstream = FakeUpstream()
    upstream.start()
    payments = DemoPayments(webhook_secret=WEBHOOK_SECRET, retry_delays=(0.2, 0.5))
    payments.start()
    data_dir = tmp_path_factory.mktemp("console-data")
    settings = Settings(
        storage="sqlite", data_dir=data_dir, admin_token=ADMIN_TOKEN,
        key_cache_ttl_s=0, catalog_cache_ttl_s=0, upstream_timeout_s=10,
        signups_per_ip=100_000,  # every test customer signs up from 127.0.0.1
        stripe_secret_key=payments.secret_key, stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=payments.base_url, payment_methods=("card", "alipay"),
    )
    server = Server(settings, tmp_path_factory.mktemp("console-server") / "server.log")
    payments.webhook_url = f"{server.url}/webhooks/stripe"
    http = httpx.Client(base_url=server.url, timeout=30)
    gateway = Gateway(server.url, http, upstream, payments, server, data_dir)
    configure_catalog(gateway)  # type: ignore[arg-type]  (it needs `admin` and `upstream` only)
    try:
        yield gateway
    finally:
        http.close()
        server.stop()
        assert "Traceback" not in server.output(), server.output()
        upstream.stop()
        payments.stop()


@pytest.fixture
def upstream(stack: Gateway) -> Iterator[FakeUpstream]:
    stack.upstream.reset()
    yield stack.upstream
    stack.upstream.reset()


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    assert Path(CHROMIUM).exists(), "Chromium is missing: `make chromium` installs Debian's package"
    assert (VENDOR / "preact-htm.js").exists(), "the console's modules are missing: run `make console`"
    running = sync_playwright().start()
    try:
        yield running
    finally:
        with driver_watchdog():
            running.stop()


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
    yield launched
    with driver_watchdog():
        launched.close()


@contextmanager
def driver_watchdog(seconds: float = 20) -> Iterator[None]:
    """Playwright's driver (a Node.js child of this process) has been seen never to answer the last
    call of a session, which then waits forever: past `seconds`, the driver is killed, the call ends."""
    timer = threading.Timer(seconds, _kill_driver)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _kill_driver() -> None:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        if parent == os.getpid() and b"playwright/driver" in command:
            os.kill(int(stat.parent.name), signal.SIGKILL)


@pytest.fixture
def context(browser: Browser, stack: Gateway) -> Iterator[BrowserContext]:
    made = browser.new_context(base_url=stack.url, viewport={"width": 1280, "height": 900}, locale="en-US")
    made.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.url)
    made.set_default_timeout(15_000)
    yield made
    made.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    yield opened
    # A script error or a refused CSP is a failure even where the page still looked right.
    assert not [e for e in errors if "Failed to load resource" not in e], errors


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@dataclass
class Customer:
    account_id: str
    email: str
    password: str = PASSWORD


def new_email() -> str:
    return f"console-{uuid.uuid4().hex[:10]}@example.com"


def sign_up(stack: Gateway, email: str | None = None, *, usd: str = "0") -> Customer:
    """An account made through the API, as the sign-up page makes one; funded by the operator."""
    email = email or new_email()
    response = stack.http.post("/api/auth/signup", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    account_id = response.json()["account_id"]
    if usd != "0":
        stack.admin("POST", f"/admin/accounts/{account_id}/credit", {"amount_usd": usd, "note": "trial credit"})
    return Customer(account_id, email)


def log_in(page: Page, customer: Customer) -> None:
    page.goto("/#/login")
    page.get_by_label("Email").fill(customer.email)
    page.get_by_label("Password", exact=True).fill(customer.password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()


def go(page: Page, route: str, heading: str | re.Pattern[str]) -> None:
    """Open a console page by its route and wait for its heading."""
    page.goto(f"/#/{route}")
    expect(page.get_by_role("heading", name=heading, level=1)).to_be_visible()
    expect(page.locator(".loading")).to_have_count(0)
