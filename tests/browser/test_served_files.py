"""The console's files as the server sends them, read over plain HTTP: types, caching, the page's
Content-Security-Policy and headers, no inline script or style, and no path out of the web directory."""

from __future__ import annotations

import re

import httpx
import pytest

from chalicelib.api.web_routes import CONTENT_SECURITY_POLICY, WEB_DIR

ASSETS = {
    "/assets/app.js": "text/javascript; charset=utf-8",
    "/assets/lib.js": "text/javascript; charset=utf-8",
    "/assets/pages/tokens.js": "text/javascript; charset=utf-8",
    "/assets/i18n/zh.js": "text/javascript; charset=utf-8",
    "/assets/vendor/preact-htm.js": "text/javascript; charset=utf-8",
    "/assets/vendor/chart.umd.js": "text/javascript; charset=utf-8",
    "/assets/style.css": "text/css; charset=utf-8",
}


@pytest.fixture
def http(stack):
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        yield client


def test_the_page_has_a_strict_policy_and_revalidates(http):
    page = http.get("/")
    assert page.status_code == 200
    headers = page.headers
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self';" in CONTENT_SECURITY_POLICY and "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY and "object-src 'none'" in CONTENT_SECURITY_POLICY
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    assert headers["x-frame-options"] == "DENY"
    assert headers["cache-control"] == "no-cache"
    again = http.get("/", headers={"If-None-Match": headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    # Relative references only: the console works under a path prefix too.
    assert re.findall(r'(?:src|href)="([^"]+)"', page.text) == [
        "assets/style.css", "assets/vendor/chart.umd.js", "assets/app.js"]


def test_no_file_has_an_inline_script_or_style():
    html = (WEB_DIR / "index.html").read_text()
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", html))
    assert "<style" not in html and "style=" not in html
    for script in WEB_DIR.rglob("*.js"):
        if script.parent.name != "vendor":
            assert not re.search(r"\bstyle=|innerHTML|eval\(|new Function", script.read_text()), script


@pytest.mark.parametrize("path, content_type", ASSETS.items())
def test_each_asset_has_its_type_an_etag_and_nosniff(http, path, content_type):
    response = http.get(path)
    assert response.status_code == 200, path
    assert response.headers["content-type"] == content_type
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-cache" and response.headers["etag"]
    assert http.get(path, headers={"If-None-Match": response.headers["etag"]}).status_code == 304


@pytest.mark.parametrize("path", [
    "/assets/..%2F..%2Fapi%2Fweb_routes.py", "/assets/%2e%2e/config.py", "/assets/../app.py", "/assets/../../app.py",
    "/assets/pages/..%2F..%2F..%2Fapp.py", "/assets/vendor/..%2F..%2Fconfig.py", "/assets/..%5Cconfig.py",
    "/assets/%2Fetc%2Fpasswd", "/assets/nothing.js", "/assets/pages/nothing.js", "/assets/a/b/c.js",
])
def test_no_path_reaches_outside_the_web_directory(http, path):
    response = http.get(path)
    assert response.status_code == 404, path
    assert "import " not in response.text and "root:" not in response.text


def test_the_page_takes_only_get(http):
    response = http.post("/")
    assert response.status_code == 405 and response.headers["allow"] == "GET"
