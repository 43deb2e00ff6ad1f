"""DEMO payment provider: the part of Stripe's API the gateway's adapter uses, on loopback. No money moves.

It lets the real StripePayments adapter (the official library, signed webhooks, fulfilment) run
end to end on one machine. Point the gateway at it with `STRIPE_API_BASE=<base_url>` and the same
secret key and webhook secret given here.

Stripe's side (form-encoded bodies with bracketed keys, `Authorization: Bearer <secret key>`,
Stripe's JSON objects and error shape, `Idempotency-Key` replays):

    POST /v1/checkout/sessions          GET /v1/checkout/sessions[/{id}]   (list: payment_intent,
    POST /v1/refunds                    GET /v1/charges/{id}                status, created[gte|lt…],
    GET  /v1/events/{id}                                                    limit, starting_after)

The customer's side: `GET /checkout/{id}` is a page labelled "DEMO PAYMENT — no money moves" with
Pay and Cancel; Pay completes the session, delivers `checkout.session.completed` to the webhook
URL, then redirects (303) to the success URL; Cancel redirects to the cancel URL.

The operator's side, outside Stripe's paths (JSON bodies; also as DemoPayments methods):

    POST /_demo/sessions/{id}/pay        {amount_total?, currency?, livemode?, async?}
    POST /_demo/sessions/{id}/settle     the delayed payment of an `async` one arrives
    POST /_demo/sessions/{id}/expire
    POST /_demo/refunds                  {payment_intent | charge, amount?}
    POST /_demo/disputes                 {payment_intent | charge, amount?}
    POST /_demo/disputes/{id}/close      {status: won | lost}
    GET  /_demo/events                   POST /_demo/events/{id}/deliver (any number of times)
    GET  /_demo/attempts                 POST /_demo/settings {auto_deliver?, failing?}

Run it on its own::

    python -m devstack.demo_payments --port 8098 --webhook-url http://127.0.0.1:8000/v1/payments/webhook \\
        --webhook-secret whsec_demo
"""

from __future__ import annotations

import argparse
import html
import http.server
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from devstack.demo_payments_books import ApiError, Attempt, Books, parse_form, sign
from devstack.loopback import LoopbackServer

__all__ = ["ApiRequest", "Attempt", "DemoPayments", "sign"]

LABEL = "DEMO PAYMENT — no money moves"
DEFAULT_SECRET_KEY = "sk_test_demo"
DEFAULT_WEBHOOK_SECRET = "whsec_demo"
_KEPT = 10_000


@dataclass(frozen=True)
class ApiRequest:
    """A call to the Stripe API as the demo received it (params decoded from the form or query)."""

    method: str
    path: str
    params: dict
    headers: dict


class DemoPayments:
    """A loopback server speaking Stripe's API for checkout, refunds and webhooks. DEMO: no money moves."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, secret_key: str = DEFAULT_SECRET_KEY,
                 webhook_url: str | None = None, webhook_secret: str | None = DEFAULT_WEBHOOK_SECRET,
                 retry_delays: tuple[float, ...] = (1.0, 3.0, 10.0), now: Callable[[], float] = time.time) -> None:
        self.host = host
        self.port = port
        self.secret_key = secret_key
        self.books = Books(webhook_url=webhook_url, webhook_secret=webhook_secret, retry_delays=retry_delays,
                           now=now)
        self.failing = False  # answer every API call with a 500
        self.requests: deque[ApiRequest] = deque(maxlen=_KEPT)  # the latest API calls, newest last
        self._replies: dict[str, tuple[int, dict]] = {}  # Idempotency-Key → the first answer
        self._replies_lock = threading.Lock()
        self._server: LoopbackServer | None = None

    # -- lifecycle

    def start(self) -> None:
        """Bind and serve on a daemon thread (port 0 picks a free port)."""
        if self._server is not None:
            return
        demo = self

        class Handler(_Handler):
            provider = demo

        self._server = LoopbackServer((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        self._server.serve_in_background("demo-payments")

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self.books.close()
        server.close()

    def __enter__(self) -> DemoPayments:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """The API's base URL (STRIPE_API_BASE) and the checkout pages' host."""
        return f"http://{self.host}:{self.port}"

    # -- settings

    @property
    def webhook_url(self) -> str | None:
        return self.books.webhook_url

    @webhook_url.setter
    def webhook_url(self, url: str | None) -> None:
        self.books.webhook_url = url

    @property
    def auto_deliver(self) -> bool:
        return self.books.auto_deliver

    @auto_deliver.setter
    def auto_deliver(self, on: bool) -> None:
        self.books.auto_deliver = on

    # -- the operator's controls

    def pay(self, session_id: str, *, amount_total: int | None = None, currency: str | None = None,
            livemode: bool | None = None, async_payment: bool = False) -> dict:
        """Complete a session as the customer's payment would; the checkout.session.completed event."""
        return self.books.pay(session_id, amount_total=amount_total, currency=currency, livemode=livemode,
                              async_payment=async_payment)

    def settle_async(self, session_id: str) -> dict:
        return self.books.settle_async(session_id)

    def expire(self, session_id: str) -> dict:
        return self.books.expire(session_id)

    def refund(self, payment_intent: str, amount: int | None = None) -> dict:
        """A refund made on the provider's side (its dashboard); the refund object."""
        params: dict[str, Any] = {"payment_intent": payment_intent}
        if amount is not None:
            params["amount"] = amount
        return self.books.refund(params)

    def open_dispute(self, payment_intent: str, amount: int | None = None) -> dict:
        params: dict[str, Any] = {"payment_intent": payment_intent}
        if amount is not None:
            params["amount"] = amount
        return self.books.open_dispute(params)

    def close_dispute(self, dispute_id: str, status: str) -> dict:
        return self.books.close_dispute(dispute_id, status)

    def events(self, type: str | None = None) -> list[dict]:
        with self.books.lock:
            return [json.loads(json.dumps(e)) for e in self.books.events.values() if type in (None, e["type"])]

    def deliver(self, event_id: str) -> Attempt:
        return self.books.deliver(event_id)

    @property
    def attempts(self) -> list[Attempt]:
        with self.books.lock:
            return list(self.books.attempts)

    def session(self, session_id: str) -> dict:
        return self.books.get(self.books.sessions, session_id, "checkout.session")

    def charge(self, charge_id: str) -> dict:
        return self.books.get(self.books.charges, charge_id, "charge")

    # -- Stripe's API

    def api(self, method: str, path: str, params: dict, headers: dict) -> tuple[int, dict]:
        """Stripe's answer to one API call."""
        self.requests.append(ApiRequest(method, path, params, headers))
        if self.failing:
            return 500, ApiError(500, "The demo payment provider is failing on purpose.", type="api_error").body
        scheme, _, key = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or key != self.secret_key:
            masked = f"{key[:8]}****{key[-4:]}" if len(key) > 12 else "****"
            return 401, ApiError(401, f"Invalid API Key provided: {masked}").body
        idempotency = headers.get("idempotency-key") if method == "POST" else None
        with self._replies_lock:
            replay = self._replies.get(idempotency) if idempotency else None
        if replay is not None:
            return replay
        try:
            answer = 200, self._route(method, path, params)
        except ApiError as error:
            answer = error.status, error.body
        with self._replies_lock:
            if idempotency:
                self._replies[idempotency] = answer
            if len(self._replies) > _KEPT:  # a long-running demo forgets the oldest keys (Stripe: after 24 h)
                del self._replies[next(iter(self._replies))]
        return answer

    def _route(self, method: str, path: str, params: dict) -> dict:
        parts = path.strip("/").split("/")
        books = self.books
        if parts[:3] == ["v1", "checkout", "sessions"]:
            if len(parts) == 3 and method == "POST":
                return books.create_session(params, self.base_url)
            if len(parts) == 3 and method == "GET":
                return books.list_sessions(params)
            if len(parts) == 4 and method == "GET":
                return books.get(books.sessions, parts[3], "checkout.session", "session")
        if parts == ["v1", "refunds"] and method == "POST":
            return books.refund(params)
        if parts[:2] == ["v1", "charges"] and len(parts) == 3 and method == "GET":
            return books.get(books.charges, parts[2], "charge")
        if parts[:2] == ["v1", "events"] and len(parts) == 3 and method == "GET":
            return books.get(books.events, parts[2], "event")
        raise ApiError(404, f"Unrecognized request URL ({method}: {path}).")

    # -- the operator's HTTP controls

    def control(self, method: str, path: str, body: dict) -> tuple[int, Any]:
        parts = path.strip("/").split("/")[1:]
        try:
            if method == "GET" and parts == ["events"]:
                return 200, {"object": "list", "data": self.events()}
            if method == "GET" and parts == ["attempts"]:
                return 200, {"data": [a.__dict__ for a in self.attempts]}
            if method == "POST" and parts == ["settings"]:
                if "auto_deliver" in body:
                    self.auto_deliver = bool(body["auto_deliver"])
                if "failing" in body:
                    self.failing = bool(body["failing"])
                return 200, {"auto_deliver": self.auto_deliver, "failing": self.failing}
            if method == "POST" and len(parts) == 3 and parts[0] == "sessions":
                if parts[2] == "pay":
                    return 200, self.pay(parts[1], amount_total=body.get("amount_total"),
                                         currency=body.get("currency"), livemode=body.get("livemode"),
                                         async_payment=bool(body.get("async")))
                if parts[2] == "settle":
                    return 200, self.settle_async(parts[1])
                if parts[2] == "expire":
                    return 200, self.expire(parts[1])
            if method == "POST" and parts == ["refunds"]:
                return 200, self.books.refund(body)
            if method == "POST" and parts == ["disputes"]:
                return 200, self.books.open_dispute(body)
            if method == "POST" and len(parts) == 3 and parts[0] == "disputes" and parts[2] == "close":
                return 200, self.close_dispute(parts[1], str(body.get("status")))
            if method == "POST" and len(parts) == 3 and parts[0] == "events" and parts[2] == "deliver":
                return 200, self.deliver(parts[1]).__dict__
        except ApiError as error:
            return error.status, error.body
        return 404, ApiError(404, f"No demo control at {method} {path}.").body

    # -- the customer's checkout page

    def page(self, session_id: str) -> tuple[int, str]:
        try:
            session = self.session(session_id)
        except ApiError as error:
            return 404, _page("Unknown checkout session", f"<p>{html.escape(error.body['error']['message'])}</p>")
        amount = f"{session['amount_total'] / 100:,.2f} {session['currency'].upper()}"
        if session["status"] != "open":
            return 200, _page(amount, f"<p>This checkout session is {html.escape(session['status'])}.</p>")
        base = f"/checkout/{html.escape(session_id)}"
        return 200, _page(amount, f"""
<p>Paying {html.escape(', '.join(session['payment_method_types']))} — nothing is charged.</p>
<form method="post" action="{base}/pay"><button type="submit">Pay {amount}</button></form>
<form method="post" action="{base}/cancel"><button type="submit">Cancel</button></form>""")

    def checkout_action(self, session_id: str, action: str) -> tuple[int, str]:
        """Pay or cancel from the page: the URL to send the customer to."""
        session = self.session(session_id)
        if action == "pay":
            self.pay(session_id)
            return 303, session["success_url"].replace("{CHECKOUT_SESSION_ID}", session_id)
        return 303, (session.get("cancel_url") or session["success_url"]).replace("{CHECKOUT_SESSION_ID}",
                                                                                   session_id)


def _page(title: str, body: str) -> str:
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{LABEL}</title></head>
<body style="font-family:sans-serif;max-width:36em;margin:3em auto">
<h1 style="background:#b00;color:#fff;padding:.5em">{LABEL}</h1>
<h2>{html.escape(title)}</h2>{body}
</body></html>"""


class _Handler(http.server.BaseHTTPRequestHandler):
    provider: DemoPayments
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: no access log on stderr
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        path = split.path
        try:
            if path.startswith("/v1/"):
                params = parse_form(raw if self.command == "POST" else split.query)
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, answer = self.provider.api(self.command, path, params, headers)
                self._send(status, json.dumps(answer, indent=2).encode(), "application/json")
            elif path.startswith("/_demo/"):
                body = json.loads(raw) if raw.strip() else {}
                status, answer = self.provider.control(self.command, path, body if isinstance(body, dict) else {})
                self._send(status, json.dumps(answer).encode(), "application/json")
            elif path.startswith("/checkout/") and self.command == "GET":
                status, text = self.provider.page(path.split("/")[2])
                self._send(status, text.encode(), "text/html; charset=utf-8")
            elif path.startswith("/checkout/") and path.rsplit("/", 1)[-1] in ("pay", "cancel"):
                status, location = self.provider.checkout_action(path.split("/")[2], path.rsplit("/", 1)[-1])
                self._send(status, b"", "text/plain", {"Location": location})
            else:
                self._send(404, json.dumps(ApiError(404, f"Unrecognized request URL ({self.command}: {path}).")
                                           .body).encode(), "application/json")
        except ApiError as error:
            self._send(error.status, json.dumps(error.body).encode(), "application/json")
        except json.JSONDecodeError:
            self._send(400, json.dumps(ApiError(400, "The body is not JSON.").body).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Request-Id", f"req_demo_{int(time.time() * 1000)}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=f"Run the demo payment provider ({LABEL}).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8098)
    parser.add_argument("--secret-key", default=DEFAULT_SECRET_KEY)
    parser.add_argument("--webhook-url", default=None, help="where events are POSTed (none: kept, not delivered)")
    parser.add_argument("--webhook-secret", default=DEFAULT_WEBHOOK_SECRET)
    args = parser.parse_args(argv)
    demo = DemoPayments(args.host, args.port, secret_key=args.secret_key, webhook_url=args.webhook_url,
                        webhook_secret=args.webhook_secret)
    demo.start()
    print(f"{LABEL}: Stripe's API at {demo.base_url} (STRIPE_API_BASE), key {args.secret_key}, "
          f"webhooks to {args.webhook_url or 'nowhere'}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        demo.stop()


if __name__ == "__main__":
    main()
