"""The Stripe adapter through the official library, against the demo payment provider on loopback."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from chalicelib.core.errors import InvalidSignature, PaymentProviderError, PaymentsNotConfigured
from chalicelib.core.payments import CENT_UNITS, TopupOrder
from chalicelib.providers.stripe_payments import CHECKOUT_TTL_S, StripePayments
from devstack.demo_payments import DemoPayments, sign

KEY = "sk_test_demo_key_0123456789"
WHSEC = "whsec_test_secret"
SUCCESS = "http://gateway.test/topup/ord_1/return?session={CHECKOUT_SESSION_ID}"
CANCEL = "http://gateway.test/topup/ord_1/cancel"


def order(order_id: str = "ord_1", pay_cents: int = 2000, bonus_cents: int = 500) -> TopupOrder:
    return TopupOrder(order_id=order_id, account_id="acct_1", status="pending", pay_cents=pay_cents,
                      credit_units=(pay_cents + bonus_cents) * CENT_UNITS, bonus_units=bonus_cents * CENT_UNITS,
                      created_at=0)


@pytest.fixture
def demo() -> Iterator[DemoPayments]:
    with DemoPayments(secret_key=KEY, webhook_secret=WHSEC) as server:
        yield server


@pytest.fixture
def stripe_payments(demo: DemoPayments) -> StripePayments:
    return StripePayments(KEY, webhook_secret=WHSEC, methods=("card", "alipay"), api_base=demo.base_url)


def checkout(payments: StripePayments, order_id: str = "ord_1", pay_cents: int = 2000) -> str:
    return payments.create_checkout(order(order_id, pay_cents), success_url=SUCCESS, cancel_url=CANCEL,
                                    email=None).session_id


# -- checkout


def test_checkout_charges_exactly_the_pay_amount_and_names_the_order(demo: DemoPayments,
                                                                    stripe_payments: StripePayments) -> None:
    before = int(time.time())
    made = stripe_payments.create_checkout(order(), success_url=SUCCESS, cancel_url=CANCEL, email="a@b.test")

    sent = [r for r in demo.requests if r.method == "POST" and r.path == "/v1/checkout/sessions"]
    assert len(sent) == 1
    params = sent[0].params
    assert params["mode"] == "payment"
    assert params["line_items"] == [{
        "price_data": {"currency": "usd", "unit_amount": "2000",
                       "product_data": {"name": "Tokenway credit $25 (incl. $5 bonus)"}},
        "quantity": "1",
    }]
    assert params["client_reference_id"] == "ord_1"
    assert params["metadata"] == {"order_id": "ord_1"}
    assert params["payment_intent_data"] == {"metadata": {"order_id": "ord_1"}}
    assert params["payment_method_types"] == ["card", "alipay"]
    assert params["customer_email"] == "a@b.test"
    assert (params["success_url"], params["cancel_url"]) == (SUCCESS, CANCEL)
    assert before + CHECKOUT_TTL_S <= int(params["expires_at"]) <= int(time.time()) + CHECKOUT_TTL_S
    assert sent[0].headers["authorization"] == f"Bearer {KEY}"

    session = demo.session(made.session_id)
    assert made.url == session["url"] and made.url.endswith(f"/checkout/{made.session_id}")
    assert made.expires_at == session["expires_at"] * 1000
    assert session["amount_total"] == 2000


def test_checkout_without_an_email_or_bonus(demo: DemoPayments, stripe_payments: StripePayments) -> None:
    stripe_payments.create_checkout(order(pay_cents=1050, bonus_cents=0), success_url=SUCCESS, cancel_url=CANCEL,
                                    email=None)
    params = demo.requests[-1].params
    assert "customer_email" not in params
    assert params["line_items"][0]["price_data"]["product_data"]["name"] == "Tokenway credit $10.50"


def test_the_mode_follows_the_secret_key() -> None:
    assert StripePayments("sk_live_x", webhook_secret=None).livemode is True
    assert StripePayments("sk_test_x", webhook_secret=None).livemode is False


# -- reading sessions


def test_a_session_before_and_after_payment(demo: DemoPayments, stripe_payments: StripePayments) -> None:
    session_id = checkout(stripe_payments)
    facts = stripe_payments.session(session_id)
    assert (facts.order_id, facts.paid, facts.expired, facts.payment_intent) == ("ord_1", False, False, None)
    assert (facts.amount_total, facts.currency, facts.livemode) == (2000, "usd", False)

    demo.pay(session_id, amount_total=1999, currency="eur", livemode=True)
    facts = stripe_payments.session(session_id)
    assert facts.paid and facts.payment_intent.startswith("pi_")
    assert (facts.amount_total, facts.currency, facts.livemode) == (1999, "eur", True)


def test_an_asynchronous_payment_is_unpaid_until_it_settles(demo: DemoPayments,
                                                           stripe_payments: StripePayments) -> None:
    session_id = checkout(stripe_payments)
    demo.pay(session_id, async_payment=True)
    assert stripe_payments.session(session_id).paid is False
    demo.settle_async(session_id)
    assert stripe_payments.session(session_id).paid is True


def test_an_expired_session(demo: DemoPayments, stripe_payments: StripePayments) -> None:
    session_id = checkout(stripe_payments)
    demo.expire(session_id)
    facts = stripe_payments.session(session_id)
    assert facts.expired and not facts.paid


def test_the_order_comes_from_the_metadata_without_a_client_reference(demo: DemoPayments,
                                                                     stripe_payments: StripePayments) -> None:
    session_id = checkout(stripe_payments)
    demo.books.sessions[session_id]["client_reference_id"] = None
    assert stripe_payments.session(session_id).order_id == "ord_1"


def test_sessions_for_a_payment(demo: DemoPayments, stripe_payments: StripePayments) -> None:
    first, second = checkout(stripe_payments, "ord_1"), checkout(stripe_payments, "ord_2")
    demo.pay(first)
    demo.pay(second)
    intent = demo.session(second)["payment_intent"]
    assert [(f.session_id, f.order_id) for f in stripe_payments.sessions_for_payment(intent)] == [(second, "ord_2")]
    assert stripe_payments.sessions_for_payment("pi_unknown") == []


def test_paid_sessions_in_a_window_across_pages(demo: DemoPayments, stripe_payments: StripePayments) -> None:
    now = int(time.time())
    paid = []
    for index in range(103):  # more than one page of 100
        session = demo.books.create_session({"mode": "payment", "success_url": SUCCESS, "client_reference_id":
                                             f"ord_{index}", "line_items": [{"price_data": {
                                                 "currency": "usd", "unit_amount": "500"}, "quantity": "1"}]},
                                            demo.base_url)
        demo.pay(session["id"])
        paid.append(session["id"])
    unpaid, expired, pending = checkout(stripe_payments), checkout(stripe_payments), checkout(stripe_payments)
    demo.expire(expired)
    demo.pay(pending, async_payment=True)
    outside = checkout(stripe_payments)
    demo.pay(outside)
    demo.books.sessions[outside]["created"] = now - 3600

    found = list(stripe_payments.paid_sessions(now - 60, now + 60))
    assert sorted(f.session_id for f in found) == sorted(paid)
    assert all(f.paid for f in found) and unpaid not in {f.session_id for f in found}
    lists = [r.params for r in demo.requests if r.method == "GET" and r.path == "/v1/checkout/sessions"]
    assert lists[0]["created"] == {"gte": str(now - 60), "lt": str(now + 60)}
    assert lists[0]["status"] == "complete"
    assert len(lists) == 2 and lists[1]["starting_after"]


# -- refunds


def test_refunds_return_the_charges_cumulative_refunded_total(demo: DemoPayments,
                                                             stripe_payments: StripePayments) -> None:
    session_id = checkout(stripe_payments)
    demo.pay(session_id)
    intent = demo.session(session_id)["payment_intent"]

    assert stripe_payments.refund(intent, 500, reason="customer asked", order_id="ord_1",
                                  idempotency_key="refund-1") == 500
    sent = demo.requests[-2]
    assert (sent.path, sent.params) == ("/v1/refunds", {"payment_intent": intent, "amount": "500", "metadata": {
        "order_id": "ord_1", "reason": "customer asked"}})
    assert sent.headers.get("idempotency-key") == "refund-1"
    # The same key again (a retried or doubled request): the first refund's answer, nothing refunded twice.
    assert stripe_payments.refund(intent, 500, reason="customer asked", order_id="ord_1",
                                  idempotency_key="refund-1") == 500
    assert len(demo.events("charge.refunded")) == 1
    demo.refund(intent, 300)  # made on the provider's side: it counts in the total
    assert stripe_payments.refund(intent, None, reason="rest", order_id="ord_1", idempotency_key="refund-2") == 2000
    assert "amount" not in [r for r in demo.requests if r.path == "/v1/refunds"][-1].params
    with pytest.raises(PaymentProviderError, match="refund a payment"):
        stripe_payments.refund(intent, None, reason="again", order_id="ord_1", idempotency_key="refund-3")


# -- failures


def test_a_failing_provider_is_retried_twice_then_a_provider_error(demo: DemoPayments,
                                                                  stripe_payments: StripePayments) -> None:
    session_id = checkout(stripe_payments)
    demo.failing = True
    calls = len(demo.requests)
    with pytest.raises(PaymentProviderError, match=r"read a checkout session \(HTTP 500\)") as caught:
        stripe_payments.session(session_id)
    assert len(demo.requests) - calls == 3
    assert caught.value.status == 502


def test_a_wrong_key_is_a_provider_error_that_names_no_key(demo: DemoPayments) -> None:
    wrong = StripePayments("sk_test_wrong_secret_key_9876", webhook_secret=WHSEC, api_base=demo.base_url)
    with pytest.raises(PaymentProviderError, match="refused our credentials") as caught:
        wrong.create_checkout(order(), success_url=SUCCESS, cancel_url=CANCEL, email=None)
    assert "9876" not in caught.value.message and "wrong_secret" not in caught.value.message
    assert isinstance(caught.value.__cause__, Exception)


def test_an_unknown_session_and_an_unreachable_provider(demo: DemoPayments, stripe_payments: StripePayments) -> None:
    with pytest.raises(PaymentProviderError, match="No such checkout.session"):
        stripe_payments.session("cs_test_missing")
    demo.stop()
    with pytest.raises(PaymentProviderError, match="could not be reached"):
        stripe_payments.session("cs_test_missing")


# -- webhooks


def event_body(**fields: object) -> bytes:
    event = {"id": "evt_1", "object": "event", "type": "checkout.session.completed", "livemode": False,
             "created": 1_700_000_000, "api_version": "2026-10-28.endive",
             "data": {"object": {"id": "cs_test_1", "object": "checkout.session", "amount_total": 2000,
                                 "metadata": {"order_id": "ord_1"}}}}
    return json.dumps(event | fields).encode()


def test_a_correctly_signed_event(stripe_payments: StripePayments) -> None:
    body = event_body()
    event = stripe_payments.verify_event(body, sign(body, WHSEC, int(time.time())))
    assert (event.event_id, event.type, event.livemode, event.created) == (
        "evt_1", "checkout.session.completed", False, 1_700_000_000)
    assert event.data == {"id": "cs_test_1", "object": "checkout.session", "amount_total": 2000,
                          "metadata": {"order_id": "ord_1"}}
    assert type(event.data) is dict and type(event.data["metadata"]) is dict


@pytest.mark.parametrize("case", ["forged", "another secret", "too old", "altered", "no header", "malformed header"])
def test_signatures_that_do_not_verify(stripe_payments: StripePayments, case: str) -> None:
    body = event_body()
    now = int(time.time())
    header = {
        "forged": f"t={now},v1={'0' * 64}",
        "another secret": sign(body, "whsec_other", now),
        "too old": sign(body, WHSEC, now - 301),
        "altered": sign(body.replace(b"2000", b"9000"), WHSEC, now),
        "no header": None,
        "malformed header": "v1=abc",
    }[case]
    with pytest.raises(InvalidSignature) as caught:
        stripe_payments.verify_event(body, header)
    assert "ord_1" not in caught.value.message and "cs_test_1" not in caught.value.message
    assert caught.value.status == 400


def test_a_signed_body_that_is_not_an_event(stripe_payments: StripePayments) -> None:
    now = int(time.time())
    for body in (b"{not json", b'{"id": "evt_1"}', "\u00e9".encode("latin-1")):
        with pytest.raises(InvalidSignature):
            stripe_payments.verify_event(body, sign(body, WHSEC, now))


def test_a_recent_timestamp_within_the_tolerance_verifies(stripe_payments: StripePayments) -> None:
    body = event_body()
    assert stripe_payments.verify_event(body, sign(body, WHSEC, int(time.time()) - 290)).event_id == "evt_1"


def test_without_a_webhook_secret_webhooks_are_not_configured(demo: DemoPayments) -> None:
    payments = StripePayments(KEY, webhook_secret=None, api_base=demo.base_url)
    body = event_body()
    with pytest.raises(PaymentsNotConfigured):
        payments.verify_event(body, sign(body, WHSEC, int(time.time())))
