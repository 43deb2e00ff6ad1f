"""The demo payment provider: its checkout page, its signed webhook deliveries and retries, and its controls."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
import stripe

from chalicelib.core.payments import CENT_UNITS, TopupOrder
from chalicelib.providers.stripe_payments import StripePayments
from devstack.demo_payments import LABEL, DemoPayments, sign
from tests.fakes.webhook_receiver import WebhookReceiver

KEY = "sk_test_demo_key_0123456789"
WHSEC = "whsec_demo_secret"
SUCCESS = "http://gateway.test/topup/return?session={CHECKOUT_SESSION_ID}"
CANCEL = "http://gateway.test/topup/cancel"
ORDER = TopupOrder(order_id="ord_9", account_id="acct_1", status="pending", pay_cents=2000,
                   credit_units=2000 * CENT_UNITS, bonus_units=0, created_at=0)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as endpoint:
        yield endpoint


@pytest.fixture
def demo(receiver: WebhookReceiver) -> Iterator[DemoPayments]:
    with DemoPayments(secret_key=KEY, webhook_url=receiver.url, webhook_secret=WHSEC,
                      retry_delays=(0.05, 0.05)) as server:
        yield server


@pytest.fixture
def payments(demo: DemoPayments) -> StripePayments:
    return StripePayments(KEY, webhook_secret=WHSEC, api_base=demo.base_url)


@pytest.fixture
def browser(demo: DemoPayments) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=demo.base_url, timeout=5) as client:
        yield client


def new_session(payments: StripePayments) -> str:
    return payments.create_checkout(ORDER, success_url=SUCCESS, cancel_url=CANCEL, email=None).session_id


def test_sign_is_stripes_signature() -> None:
    body = b'{"id": "evt_1"}'
    header = sign(body, WHSEC, 1_700_000_000)
    assert header == stripe.WebhookSignature.generate_signature_header(body.decode(), WHSEC, 1_700_000_000)
    stripe.WebhookSignature.verify_header(body, sign(body, WHSEC, int(time.time())), WHSEC, tolerance=300)


def test_paying_on_the_checkout_page_delivers_a_signed_event_then_returns(
        demo: DemoPayments, payments: StripePayments, receiver: WebhookReceiver, browser: httpx.Client) -> None:
    session_id = new_session(payments)
    page = browser.get(f"/checkout/{session_id}")
    assert page.status_code == 200 and LABEL in page.text and "20.00 USD" in page.text

    paid = browser.post(f"/checkout/{session_id}/pay")
    assert paid.status_code == 303
    assert paid.headers["location"] == f"http://gateway.test/topup/return?session={session_id}"

    [delivery] = receiver.wait_for(1)
    event = payments.verify_event(delivery.body, delivery.headers["stripe-signature"])
    assert event.type == "checkout.session.completed" and event.event_id.startswith("evt_")
    assert event.data["id"] == session_id and event.data["payment_status"] == "paid"
    assert event.data["client_reference_id"] == "ord_9" and event.data["amount_total"] == 2000
    assert json.loads(delivery.body)["object"] == "event"
    assert payments.session(session_id).paid
    assert "is complete" in browser.get(f"/checkout/{session_id}").text


def test_cancelling_returns_to_the_cancel_url_and_leaves_the_session_open(
        demo: DemoPayments, payments: StripePayments, receiver: WebhookReceiver, browser: httpx.Client) -> None:
    session_id = new_session(payments)
    cancelled = browser.post(f"/checkout/{session_id}/cancel")
    assert (cancelled.status_code, cancelled.headers["location"]) == (303, CANCEL)
    assert demo.session(session_id)["status"] == "open" and receiver.received == []


def test_a_failed_delivery_is_retried_and_every_attempt_recorded(
        demo: DemoPayments, payments: StripePayments, receiver: WebhookReceiver) -> None:
    receiver.statuses.extend([500, 503])
    event = demo.pay(new_session(payments))
    deliveries = receiver.wait_for(3)
    assert {json.loads(d.body)["id"] for d in deliveries} == {event["id"]}
    deadline = time.monotonic() + 2
    while len(demo.attempts) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [a.status for a in demo.attempts] == [500, 503, 200]


def test_held_deliveries_are_delivered_by_hand_any_number_of_times(
        demo: DemoPayments, payments: StripePayments, receiver: WebhookReceiver, browser: httpx.Client) -> None:
    assert browser.post("/_demo/settings", json={"auto_deliver": False}).json()["auto_deliver"] is False
    session_id = new_session(payments)
    assert browser.post(f"/_demo/sessions/{session_id}/expire").status_code == 200
    assert receiver.received == [] and payments.session(session_id).expired

    [event] = browser.get("/_demo/events").json()["data"]
    assert event["type"] == "checkout.session.expired" and event["data"]["object"]["status"] == "expired"
    for _ in range(2):
        assert browser.post(f"/_demo/events/{event['id']}/deliver").json()["status"] == 200
    first, second = receiver.wait_for(2)
    assert first.body == second.body  # the same event, signed anew each time
    assert payments.verify_event(second.body, second.headers["stripe-signature"]).event_id == event["id"]


def test_refunds_and_disputes_emit_stripes_events(
        demo: DemoPayments, payments: StripePayments, browser: httpx.Client) -> None:
    demo.auto_deliver = False
    session_id = new_session(payments)
    assert browser.post(f"/_demo/sessions/{session_id}/pay", json={"async": True}).status_code == 200
    assert not payments.session(session_id).paid
    settled = browser.post(f"/_demo/sessions/{session_id}/settle").json()
    assert settled["type"] == "checkout.session.async_payment_succeeded"
    intent = settled["data"]["object"]["payment_intent"]

    for amount in (700, None):
        body = {"payment_intent": intent} | ({"amount": amount} if amount else {})
        assert browser.post("/_demo/refunds", json=body).json()["object"] == "refund"
    refunds = [e["data"]["object"] for e in demo.events("charge.refunded")]
    assert [(c["amount_refunded"], c["refunded"]) for c in refunds] == [(700, False), (2000, True)]
    assert all(c["payment_intent"] == intent and (c["amount"], c["currency"]) == (2000, "usd") for c in refunds)

    opened = browser.post("/_demo/disputes", json={"payment_intent": intent}).json()
    dispute = opened["data"]["object"]
    assert opened["type"] == "charge.dispute.created" and dispute["id"].startswith("dp_")
    assert (dispute["object"], dispute["status"], dispute["amount"], dispute["payment_intent"]) == (
        "dispute", "needs_response", 2000, intent)
    assert dispute["charge"] == refunds[0]["id"]
    closed = browser.post(f"/_demo/disputes/{dispute['id']}/close", json={"status": "lost"}).json()
    assert (closed["type"], closed["data"]["object"]["status"]) == ("charge.dispute.closed", "lost")
    assert browser.post(f"/_demo/disputes/{dispute['id']}/close", json={"status": "maybe"}).status_code == 400


def test_the_api_refuses_a_wrong_key_in_stripes_error_shape(demo: DemoPayments, browser: httpx.Client) -> None:
    answer = browser.get("/v1/checkout/sessions", headers={"Authorization": "Bearer sk_test_wrong_0000000000"})
    assert answer.status_code == 401
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and "Invalid API Key" in error["message"]
    assert "wrong_0000000000" not in error["message"]


def test_the_failure_switch_answers_500s(demo: DemoPayments, browser: httpx.Client) -> None:
    browser.post("/_demo/settings", json={"failing": True})
    answer = browser.get("/v1/checkout/sessions", headers={"Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 500 and answer.json()["error"]["type"] == "api_error"


def test_checkout_refuses_an_expiry_outside_stripes_window(demo: DemoPayments, browser: httpx.Client) -> None:
    form = {"mode": "payment", "success_url": SUCCESS, "line_items[0][price_data][currency]": "usd",
            "line_items[0][price_data][unit_amount]": "500", "line_items[0][quantity]": "1",
            "expires_at": str(int(time.time()) + 25 * 3600)}
    answer = browser.post("/v1/checkout/sessions", data=form, headers={"Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "expires_at"
