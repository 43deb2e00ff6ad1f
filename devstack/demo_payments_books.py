"""The DEMO payment provider's books: the Stripe objects it keeps, the events it emits, and their delivery.

DEMO: no money moves. Objects are shaped like Stripe's (checkout.session, payment_intent, charge,
refund, dispute, event, list), with test-mode ids (`cs_test_…`, `pi_…`, `ch_…`, `re_…`, `dp_…`,
`evt_…`) and `livemode: false` unless a scripted payment says otherwise.

A session's life, and the event each step emits:

    create ── open, unpaid
        ├── pay ─────────── complete, paid (pi_…, ch_…) ─────────── checkout.session.completed
        ├── pay(async) ──── complete, unpaid ───────────────────── checkout.session.completed
        │       └── settle ── complete, paid (ch_…) ────────────── checkout.session.async_payment_succeeded
        └── expire ──────── expired ───────────────────────────── checkout.session.expired
    paid charge ── refund ── amount_refunded grows (cumulative) ── charge.refunded
               └── dispute ── needs_response ─────────────────── charge.dispute.created
                       └── close ── won | lost ────────────────── charge.dispute.closed

Delivery: each event is POSTed to the webhook URL signed as Stripe signs
(`Stripe-Signature: t=<ts>,v1=<hex HMAC-SHA256(secret, "<ts>.<body>")>`). The first attempt is
made at once (outside the books' lock: the receiver may call the API back); a refused or non-2xx
one is retried on a background thread after each of `retry_delays`. Every attempt is recorded.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import httpx

API_VERSION = "2026-10-28.endive"  # the version stripe==16.1.0 pins


class ApiError(Exception):
    """A refusal in Stripe's error shape: `{"error": {"type", "message", "code", "param"}}`."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {k: v for k, v in {"type": type, "message": message, "code": code,
                                                  "param": param}.items() if v is not None}}


@dataclass(frozen=True)
class Attempt:
    """One delivery of an event to the webhook URL: its HTTP status, or why none came back."""

    event_id: str
    at: float
    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """The Stripe-Signature header Stripe would send for `payload` at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


_KEY_PART = re.compile(r"^([^\[\]]+)|\[([^\[\]]*)\]")


def parse_form(text: str) -> dict[str, Any]:
    """Stripe's form encoding (`a[b][0][c]=v`) as nested dicts and lists of strings."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        parts = [m.group(1) or m.group(2) for m in _KEY_PART.finditer(key)]
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ApiError(400, f"Invalid parameter: {key}", param=key)
        node[parts[-1]] = value
    return _lists(root)


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    if node and all(k.isdigit() for k in node):
        return [_lists(node[k]) for k in sorted(node, key=int)]
    return {k: _lists(v) for k, v in node.items()}


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


class Books:
    """The demo's objects, events and deliveries, behind one lock."""

    def __init__(self, *, webhook_url: str | None, webhook_secret: str | None,
                 retry_delays: tuple[float, ...] = (1.0, 3.0, 10.0), now: Callable[[], float] = time.time) -> None:
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.retry_delays = retry_delays
        self.auto_deliver = True
        self.now = now
        self.lock = threading.RLock()
        self.sessions: dict[str, dict] = {}
        self.intents: dict[str, dict] = {}
        self.charges: dict[str, dict] = {}
        self.refunds: dict[str, dict] = {}
        self.disputes: dict[str, dict] = {}
        self.events: dict[str, dict] = {}  # in emission order
        self.attempts: list[Attempt] = []
        self._stopping = threading.Event()
        self._http = httpx.Client(timeout=5.0)

    def close(self) -> None:
        self._stopping.set()
        self._http.close()

    # -- reading

    def get(self, kind: dict[str, dict], object_id: str, name: str, param: str = "id") -> dict:
        with self.lock:
            if object_id not in kind:
                raise ApiError(404, f"No such {name}: '{object_id}'", code="resource_missing", param=param)
            return copy.deepcopy(kind[object_id])

    # -- checkout sessions

    def create_session(self, params: dict, checkout_base: str) -> dict:
        if params.get("mode") != "payment":
            raise ApiError(400, "This demo supports only `mode: payment`.", param="mode")
        items = params.get("line_items")
        if not isinstance(items, list) or not items:
            raise ApiError(400, "Missing required param: line_items.", param="line_items")
        total, currency = 0, None
        for index, item in enumerate(items):
            price = item.get("price_data") if isinstance(item, dict) else None
            if not isinstance(price, dict):
                raise ApiError(400, "Each line item needs price_data.", param=f"line_items[{index}][price_data]")
            amount, quantity = _int(price.get("unit_amount")), _int(item.get("quantity", "1"))
            if amount is None or amount < 0 or quantity is None or quantity < 1:
                raise ApiError(400, "Invalid integer in a line item.", param=f"line_items[{index}]")
            total += amount * quantity
            currency = currency or price.get("currency")
        if not params.get("success_url"):
            raise ApiError(400, "Missing required param: success_url.", param="success_url")
        now = int(self.now())
        expires_at = _int(params.get("expires_at", str(now + 86400)))
        if expires_at is None or not now + 1800 <= expires_at <= now + 86400:
            raise ApiError(400, "The `expires_at` timestamp must be between 30 minutes and 24 hours from "
                                "Checkout Session creation.", param="expires_at")
        session_id = _new_id("cs_test_")
        session = {
            "id": session_id, "object": "checkout.session", "mode": "payment", "status": "open",
            "payment_status": "unpaid", "amount_subtotal": total, "amount_total": total,
            "currency": (currency or "usd").lower(), "livemode": False,
            "client_reference_id": params.get("client_reference_id"), "metadata": params.get("metadata") or {},
            "customer_email": params.get("customer_email"), "payment_intent": None,
            "payment_method_types": params.get("payment_method_types") or ["card"],
            "success_url": params["success_url"], "cancel_url": params.get("cancel_url"),
            "url": f"{checkout_base}/checkout/{session_id}", "created": now, "expires_at": expires_at,
            "line_items_sent": items,
            "payment_intent_data": params.get("payment_intent_data") or {},
        }
        with self.lock:
            self.sessions[session_id] = session
            return _public_session(session)

    def list_sessions(self, query: dict) -> dict:
        with self.lock:
            rows = sorted(self.sessions.values(), key=lambda s: (s["created"], s["id"]), reverse=True)
            created = query.get("created") if isinstance(query.get("created"), dict) else {}
            bounds = {op: _int(created[op]) for op in ("gt", "gte", "lt", "lte") if op in created}
            rows = [s for s in rows
                    if (query.get("payment_intent") in (None, s["payment_intent"]))
                    and (query.get("status") in (None, s["status"]))
                    and ("gt" not in bounds or s["created"] > bounds["gt"])
                    and ("gte" not in bounds or s["created"] >= bounds["gte"])
                    and ("lt" not in bounds or s["created"] < bounds["lt"])
                    and ("lte" not in bounds or s["created"] <= bounds["lte"])]
            after = query.get("starting_after")
            if after:
                ids = [s["id"] for s in rows]
                rows = rows[ids.index(after) + 1:] if after in ids else []
            limit = max(1, min(_int(query.get("limit", "10")) or 10, 100))
            page = [_public_session(s) for s in rows[:limit]]
            return {"object": "list", "url": "/v1/checkout/sessions", "has_more": len(rows) > limit, "data": page}

    def pay(self, session_id: str, *, amount_total: int | None = None, currency: str | None = None,
            livemode: bool | None = None, async_payment: bool = False) -> dict:
        """The customer pays (the amount, currency or mode may be scripted to differ); its event."""
        with self.lock:
            session = self._open(session_id)
            if amount_total is not None:
                session["amount_total"] = amount_total
            if currency is not None:
                session["currency"] = currency
            if livemode is not None:
                session["livemode"] = livemode
            intent_id = _new_id("pi_")
            self.intents[intent_id] = {
                "id": intent_id, "object": "payment_intent", "amount": session["amount_total"],
                "currency": session["currency"], "livemode": session["livemode"],
                "status": "processing" if async_payment else "succeeded", "latest_charge": None,
                "metadata": session["payment_intent_data"].get("metadata") or {}, "created": int(self.now()),
            }
            session.update(status="complete", payment_intent=intent_id,
                           payment_status="unpaid" if async_payment else "paid")
            if not async_payment:
                self._charge(intent_id)
            event = self._event("checkout.session.completed", _public_session(session), session["livemode"])
        self.dispatch(event)
        return event

    def settle_async(self, session_id: str) -> dict:
        """The delayed payment of a completed session arrives; its event."""
        with self.lock:
            self.get(self.sessions, session_id, "checkout.session")
            session = self.sessions[session_id]
            if session["status"] != "complete" or session["payment_status"] != "unpaid":
                raise ApiError(400, f"Checkout session {session_id} has no payment pending.")
            session["payment_status"] = "paid"
            self.intents[session["payment_intent"]]["status"] = "succeeded"
            self._charge(session["payment_intent"])
            event = self._event("checkout.session.async_payment_succeeded", _public_session(session),
                                session["livemode"])
        self.dispatch(event)
        return event

    def expire(self, session_id: str) -> dict:
        """The session ends unpaid; its event."""
        with self.lock:
            session = self._open(session_id)
            session["status"] = "expired"
            event = self._event("checkout.session.expired", _public_session(session), session["livemode"])
        self.dispatch(event)
        return event

    def _open(self, session_id: str) -> dict:
        self.get(self.sessions, session_id, "checkout.session")
        session = self.sessions[session_id]
        if session["status"] != "open":
            raise ApiError(400, f"Checkout session {session_id} is {session['status']}, not open.")
        return session

    def _charge(self, intent_id: str) -> None:
        intent = self.intents[intent_id]
        charge_id = _new_id("ch_")
        self.charges[charge_id] = {
            "id": charge_id, "object": "charge", "amount": intent["amount"], "amount_captured": intent["amount"],
            "amount_refunded": 0, "refunded": False, "disputed": False, "captured": True, "paid": True,
            "status": "succeeded", "currency": intent["currency"], "livemode": intent["livemode"],
            "payment_intent": intent_id, "metadata": dict(intent["metadata"]), "created": int(self.now()),
        }
        intent["latest_charge"] = charge_id

    def charge_of(self, params: dict) -> dict:
        """The charge a refund or dispute names by `charge` or `payment_intent`."""
        charge_id = params.get("charge")
        if not charge_id and params.get("payment_intent"):
            intent = self.get(self.intents, params["payment_intent"], "payment_intent", "payment_intent")
            charge_id = intent["latest_charge"]
            if not charge_id:
                raise ApiError(400, f"PaymentIntent {intent['id']} has no successful charge.",
                               param="payment_intent")
        if not charge_id:
            raise ApiError(400, "One of `charge` or `payment_intent` is required.")
        self.get(self.charges, charge_id, "charge", "charge")
        return self.charges[charge_id]

    # -- refunds and disputes

    def refund(self, params: dict) -> dict:
        """A refund of the rest of a charge, or of `amount`; emits charge.refunded; the refund."""
        with self.lock:
            charge = self.charge_of(params)
            left = charge["amount"] - charge["amount_refunded"]
            if left <= 0:
                raise ApiError(400, f"Charge {charge['id']} has already been refunded.",
                               code="charge_already_refunded")
            amount = _int(params["amount"]) if "amount" in params else left
            if amount is None or amount <= 0:
                raise ApiError(400, "Invalid positive integer", param="amount")
            if amount > left:
                raise ApiError(400, f"Refund amount ({amount}) is greater than unrefunded amount on charge "
                                    f"({left})", code="amount_too_large", param="amount")
            refund_id = _new_id("re_")
            refund = {"id": refund_id, "object": "refund", "amount": amount, "charge": charge["id"],
                      "payment_intent": charge["payment_intent"], "currency": charge["currency"],
                      "status": "succeeded", "metadata": params.get("metadata") or {}, "created": int(self.now())}
            self.refunds[refund_id] = refund
            charge["amount_refunded"] += amount
            charge["refunded"] = charge["amount_refunded"] == charge["amount"]
            event = self._event("charge.refunded", copy.deepcopy(charge), charge["livemode"])
            answer = copy.deepcopy(refund)
        self.dispatch(event)
        return answer

    def open_dispute(self, params: dict) -> dict:
        """The bank disputes a charge (all of it, or `amount`); its charge.dispute.created event."""
        with self.lock:
            charge = self.charge_of(params)
            dispute_id = _new_id("dp_")
            amount = _int(params.get("amount", str(charge["amount"])))
            self.disputes[dispute_id] = {
                "id": dispute_id, "object": "dispute", "charge": charge["id"],
                "payment_intent": charge["payment_intent"], "amount": amount, "currency": charge["currency"],
                "status": "needs_response", "reason": "fraudulent", "livemode": charge["livemode"],
                "created": int(self.now()),
            }
            charge["disputed"] = True
            event = self._event("charge.dispute.created", copy.deepcopy(self.disputes[dispute_id]),
                                charge["livemode"])
        self.dispatch(event)
        return event

    def close_dispute(self, dispute_id: str, status: str) -> dict:
        """The dispute ends `won` or `lost`; its charge.dispute.closed event."""
        if status not in ("won", "lost"):
            raise ApiError(400, "A dispute closes `won` or `lost`.", param="status")
        with self.lock:
            self.get(self.disputes, dispute_id, "dispute")
            dispute = self.disputes[dispute_id]
            dispute["status"] = status
            event = self._event("charge.dispute.closed", copy.deepcopy(dispute), dispute["livemode"])
        self.dispatch(event)
        return event

    # -- events and delivery

    def _event(self, type: str, obj: dict, livemode: bool) -> dict:
        event_id = _new_id("evt_")
        event = {"id": event_id, "object": "event", "api_version": API_VERSION, "created": int(self.now()),
                 "type": type, "livemode": livemode, "pending_webhooks": 1,
                 "request": {"id": None, "idempotency_key": None}, "data": {"object": obj}}
        self.events[event_id] = event
        return copy.deepcopy(event)

    def dispatch(self, event: dict) -> None:
        """Deliver a new event now when deliveries are on, retrying a failure in the background."""
        if not self.auto_deliver or not self.webhook_url:
            return
        if self.deliver(event["id"]).ok:
            return
        threading.Thread(target=self._retry, args=(event["id"],), name=f"demo-payments-{event['id']}",
                         daemon=True).start()

    def _retry(self, event_id: str) -> None:
        for delay in self.retry_delays:
            if self._stopping.wait(delay) or self.deliver(event_id).ok:
                return

    def deliver(self, event_id: str) -> Attempt:
        """One signed POST of the event to the webhook URL, recorded (any number of times)."""
        event = self.get(self.events, event_id, "event")
        if not self.webhook_url or not self.webhook_secret:
            raise ApiError(400, "No webhook URL and secret are configured for this demo.")
        body = json.dumps(event, indent=2).encode()
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "Stripe-Signature": sign(body, self.webhook_secret, int(self.now())),
                   "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"}
        try:
            status, error = self._http.post(self.webhook_url, content=body, headers=headers).status_code, None
        except httpx.HTTPError as exc:
            status, error = None, type(exc).__name__
        attempt = Attempt(event_id=event_id, at=self.now(), status=status, error=error)
        with self.lock:
            self.attempts.append(attempt)
        return attempt


def _public_session(session: dict) -> dict:
    return {k: copy.deepcopy(v) for k, v in session.items() if k not in ("line_items_sent", "payment_intent_data")}


def _int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    return None
