"""Every path and method has an answer of ours, in the OpenAI envelope, wherever the app runs.

API Gateway answers a path or a method it has no resource for itself (403 "Missing
Authentication Token", or, when the request carries an Authorization header, a message that
echoes that header, secret key and all), and chalice's local server imitates it. So once every
blueprint is registered, `cover_every_route` registers:

- every method the app does not serve on each path it serves, answered 405 `method_not_allowed`
  with an `Allow` header;
- `/`, each path between `/` and a served path (`/v1`, `/api/auth`, …) and the greedy
  `/{proxy+}`, every method, answered 404 `unknown_url`. API Gateway routes a request to the
  most specific resource and to `/{proxy+}` only when no other resource matches, so served
  paths keep their views.

API Gateway names the greedy segment's value `proxy` in `pathParameters` where chalice looks
for `proxy+`, so those requests are answered by a middleware, before chalice builds the view's
arguments; the other filler routes are answered by their view. Chalice's own content-type check
is turned off (it answers 415 outside the envelope, echoing the header): the relay reads JSON
whatever it is called, and the console's writes check the content type themselves.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from chalice import Chalice, Response

from chalicelib.api.http import render_error
from chalicelib.core.errors import MethodNotAllowed, NotFound

GREEDY = "/{proxy+}"
# Chalice checks a request's Content-Type against the route before the view
# runs; the gateway reads JSON whatever the client called it (curl -d says
# application/x-www-form-urlencoded).
# Every route takes any Content-Type (set below, in one place).
ANY_CONTENT_TYPE = ["*/*"]

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
_SHOWN = 200  # characters of the caller's path repeated in a message


def cover_every_route(app: Chalice) -> None:
    """Answer every unserved method and unknown path of `app` from its own code (see the module)."""
    served = served_routes(app)
    between = {"/".join(path.split("/")[:end]) for path in served for end in range(2, path.count("/") + 1)}
    for path, methods in served.items():
        missing = [method for method in METHODS if method not in methods]
        if missing:
            app.route(path, methods=missing)(_method_not_allowed(app, methods))
    for path in sorted(({"/", GREEDY} | between) - set(served)):
        app.route(path, methods=list(METHODS))(_unknown_url(app))
    for entries in app.routes.values():
        for entry in entries.values():
            entry.content_types = list(ANY_CONTENT_TYPE)
    app.register_middleware(functools.partial(_unrouted, served), "http")


def served_routes(app: Chalice) -> dict[str, tuple[str, ...]]:
    """Path → the methods the app's own views serve there (not those `cover_every_route` answers)."""
    served: dict[str, tuple[str, ...]] = {}
    for path, entries in app.routes.items():
        methods = tuple(sorted(m for m, entry in entries.items() if not getattr(entry.view_function, "unrouted", 0)))
        if methods:
            served[path] = methods
    return served


def request_path(request: Any) -> str:
    """The path the caller asked for (chalice's `request.path` is the matched route's pattern)."""
    event = request.to_original_event()
    return event.get("path") or (request.context or {}).get("path") or request.path


def unknown_url(method: str, path: str) -> NotFound:
    return NotFound(f"Unknown request URL: {method} {path[:_SHOWN]}. Please check the URL for typos; the "
                    "gateway serves the OpenAI API under /v1 (or without it), the console API under /api "
                    "and the admin API under /admin.", code="unknown_url")


def method_not_allowed(request: Any, allow: tuple[str, ...]) -> MethodNotAllowed:
    return MethodNotAllowed(f"Invalid method for URL: {request.method} {request_path(request)[:_SHOWN]}. "
                            f"It accepts {', '.join(allow)}.", allow=allow)


def _unknown_url(app: Chalice) -> Callable[..., Response]:
    def unknown_url_view(**_path: str) -> Response:
        request = app.current_request
        return render_error(unknown_url(request.method, request_path(request)), view="unknown_url")

    unknown_url_view.unrouted = True  # type: ignore[attr-defined]
    return unknown_url_view


def _method_not_allowed(app: Chalice, allow: tuple[str, ...]) -> Callable[..., Response]:
    def method_not_allowed_view(**_path: str) -> Response:
        request = app.current_request
        return render_error(method_not_allowed(request, allow), view="method_not_allowed")

    method_not_allowed_view.unrouted = True  # type: ignore[attr-defined]
    return method_not_allowed_view


def _unrouted(served: dict[str, tuple[str, ...]], request: Any, get_response: Callable[[Any], Response]) -> Response:
    """Answer what no view of the app may see: the greedy route (whose argument chalice cannot
    name), and a method outside METHODS, for which no route can be registered."""
    resource = (request.context or {}).get("resourcePath")
    if resource == GREEDY or (resource not in served and request.method not in METHODS):
        return render_error(unknown_url(request.method, request_path(request)), view="unknown_url")
    if request.method not in METHODS:
        return render_error(method_not_allowed(request, served[resource]), view="method_not_allowed")
    return get_response(request)
