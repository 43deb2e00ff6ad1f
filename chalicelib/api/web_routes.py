"""The web console's files, served by the app itself (on one machine and on AWS alike): `GET /` is the
page, `GET /assets/…` its scripts, styles and translations. The page routes by the URL's fragment
(`/#/tokens`), so no other path is needed, and it calls the API relative to where it was loaded.

Only the files that exist under `chalicelib/web/` when the first one is asked for are served: a name
is looked up in that list, never joined onto a directory, so no path can reach outside it. The
third-party modules in `web/vendor/` are copied there by `make console` (they are not committed).

Every answer carries an ETag (a request repeating it gets 304) and `Cache-Control: no-cache`, so a
browser keeps the files yet never runs an old script after a deploy. The page's
Content-Security-Policy allows scripts, styles and requests from this origin only: the console has
no inline script or style.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

from chalice import Blueprint, Response

WEB_DIR = Path(__file__).resolve().parents[1] / "web"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
}

web_routes = Blueprint(__name__)


@dataclass(frozen=True)
class WebFile:
    body: str
    content_type: str
    etag: str


@functools.cache
def web_files() -> dict[str, WebFile]:
    """Every servable file under the web directory, by its path relative to it (`pages/tokens.js`)."""
    found: dict[str, WebFile] = {}
    for path in sorted(WEB_DIR.rglob("*")):
        content_type = _TYPES.get(path.suffix)
        if content_type is None or not path.is_file():
            continue
        body = path.read_text(encoding="utf-8")
        etag = '"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"'
        found[path.relative_to(WEB_DIR).as_posix()] = WebFile(body, content_type, etag)
    return found


def _serve(name: str) -> Response:
    file = web_files().get(name)
    if file is None:
        return Response(body="Not found", status_code=404,
                        headers={"Content-Type": "text/plain; charset=utf-8", **_SECURITY_HEADERS})
    headers = {"Content-Type": file.content_type, "ETag": file.etag, "Cache-Control": "no-cache",
               **_SECURITY_HEADERS}
    if file.content_type.startswith("text/html"):
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        headers["X-Frame-Options"] = "DENY"
    request = web_routes.current_request
    if file.etag in (request.headers.get("if-none-match") or ""):
        return Response(body="", status_code=304, headers=headers)
    return Response(body=file.body, status_code=200, headers=headers)


@web_routes.route("/", methods=["GET"])
def console_page() -> Response:
    return _serve("index.html")


@web_routes.route("/assets/{name}", methods=["GET"])
def asset(name: str) -> Response:
    return _serve(name)


@web_routes.route("/assets/{folder}/{name}", methods=["GET"])
def nested_asset(folder: str, name: str) -> Response:
    return _serve(f"{folder}/{name}")
