"""Top-ups through Stripe's API (the demo provider on loopback, signing webhooks as Stripe does):
checkout, both fulfilment paths racing, repeated deliveries, refunds, disputes, and every bad input.
After every test, each account's ledger sums to its balance."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from devstack.demo_payments import sign
from tests.api.conftest import WEBHOOK_SECRET, Stack
from tests.api.test_tokens_api import Customer

TIERS = [("10", "10.00"), ("20", "22.00"), ("50", "57.50"), ("100", "120.00"), ("200", "240.00"),
         ("500", "600.00")]


class Payer(Customer):
    """A customer with an empty wallet who tops it up through checkout."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(stack, usd="0")

    def topup(self, amount: str) -> dict[str, Any]:
        response = self.call("POST", "/api/wallet/topups", {"amount_usd": amount})
        assert response.status_code == 201, response.text
        return response.json()

    def order(self, order_id: str) -> dict[str, Any]:
        """The order as the customer's return from checkout reads it (checked with the provider)."""
        response = self.call("GET", f"/api/wallet/topups/{order_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wallet(self) -> dict[str, Any]:
        response = self.call("GET", "/api/wallet")
        assert response.status_code == 200, response.text
        return response.json()

    def ledger(self) -> list[dict[str, Any]]:
        lines, cursor = [], None
        while True:
            response = self.call("GET", "/api/wallet/ledger?limit=3" + (f"&cursor={cursor}" if cursor else ""))
            assert response.status_code == 200, response.text
            lines += response.json()["data"]
            cursor = response.json()["next_cursor"]
            if cursor is None:
                return lines

    def paid_topup(self, amount: str) -> tuple[dict[str, Any], str]:
        """A top-up paid and credited through the webhook: (the order, its payment intent)."""
        order = self.topup(amount)
        event = self.stack.payments.pay(session_of(order))
        assert self.operator_order(order["order_id"])["status"] == "paid"
        return order, event["data"]["object"]["payment_intent"]

    def operator_order(self, order_id: str) -> dict[str, Any]:
        return self.stack.admin("GET", f"/admin/topups/{order_id}")


def session_of(order: dict[str, Any]) -> str:
    return order["checkout_url"].rsplit("/", 1)[-1]


def usd(text: str) -> Decimal:
    return Decimal(text)


@pytest.fixture
def payments(stack):
    stack.payments.auto_deliver = True
    yield stack.payments
    stack.payments.auto_deliver, stack.payments.failing = True, False


@pytest.fixture
def payers(stack, payments):
    """Make payers; after the test, each one's ledger sums to its balance (less any debt), and each
    line's balance is the running sum."""
    made: list[Payer] = []

    def new() -> Payer:
        made.append(Payer(stack))
        return made[-1]

    yield new
    for payer in made:
        wallet, lines = payer.wallet(), payer.ledger()
        assert sum(usd(line["amount_usd"]) for line in lines) == usd(wallet["balance_usd"]) - usd(wallet["debt_usd"])
        running = Decimal(0)
        for line in reversed(lines):
            running += usd(line["amount_usd"])
            assert usd(line["balance_after_usd"]) == running


def post_webhook(stack: Stack, body: bytes, signature: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return httpx.post(f"{stack.url}/webhooks/stripe", content=body, headers=headers, timeout=30)


def test_the_options_are_the_manuals_tiers_with_their_bonus(stack, payers):
    options = payers().call("GET", "/api/wallet/topup-options").json()
    assert [(t["pay_usd"], t["credit_usd"]) for t in options["tiers"]] == [
        (f"{pay}.00", credit) for pay, credit in TIERS]
    assert [t["bonus_percent"] for t in options["tiers"]] == ["0", "10", "15", "20", "20", "20"]
    assert (options["min_usd"], options["max_usd"], options["enabled"]) == ("5.00", "10000.00", True)
    assert options["payment_methods"] == ["card", "alipay"]


@pytest.mark.parametrize(("pay", "credit"), [*TIERS, ("75", "86.25"), ("7.50", "7.50")])
def test_a_paid_top_up_credits_its_amount_and_bonus_at_once(stack, payers, pay, credit):
    payer = payers()
    order = payer.topup(pay)
    assert (order["status"], order["pay_usd"], order["credit_usd"]) == ("pending", f"{Decimal(pay):.2f}", credit)
    assert order["checkout_url"].startswith(stack.payments.base_url)
    sent = [r for r in stack.payments.requests if r.path == "/v1/checkout/sessions" and r.method == "POST"][-1]
    assert sent.params["line_items"][0]["price_data"]["unit_amount"] == str(int(Decimal(pay) * 100))
    assert sent.params["client_reference_id"] == order["order_id"]
    assert sent.params["metadata"]["order_id"] == order["order_id"]

    stack.payments.pay(session_of(order))  # the webhook is delivered before this returns
    assert payer.wallet()["balance_usd"] == credit
    kinds = [(line["kind"], line["amount_usd"], line["reference"]) for line in payer.ledger()]
    bonus = Decimal(credit) - Decimal(pay)
    assert kinds == ([("bonus", f"{bonus:.2f}", order["order_id"])] if bonus else []) + [
        ("topup", f"{Decimal(pay):.2f}", order["order_id"])]
    assert payer.order(order["order_id"])["status"] == "paid"


def test_the_return_from_checkout_credits_before_the_webhook_and_the_webhook_changes_nothing(stack, payers,
                                                                                           payments):
    payer = payers()
    order = payer.topup("20")
    payments.auto_deliver = False
    event = payments.pay(session_of(order))
    assert payer.wallet()["balance_usd"] == "0.00"
    page = stack.http.get(f"/wallet/topup-return?order_id={order['order_id']}")
    assert page.status_code == 200 and "22.00 USD credited" in page.text
    assert payer.wallet()["balance_usd"] == "22.00"
    assert payments.deliver(event["id"]).status == 200
    assert payments.deliver(event["id"]).status == 200
    assert payer.wallet()["balance_usd"] == "22.00"
    assert len(payer.ledger()) == 2


def test_fifty_deliveries_of_one_event_racing_the_return_credit_once(stack, payers, payments):
    payer = payers()
    order = payer.topup("50")
    payments.auto_deliver = False
    event = payments.pay(session_of(order))
    with ThreadPoolExecutor(max_workers=24) as pool:
        deliveries = [pool.submit(payments.deliver, event["id"]) for _ in range(50)]
        returns = [pool.submit(payer.order, order["order_id"]) for _ in range(5)]
        statuses = {delivery.result().status for delivery in deliveries}
        assert {r.result()["status"] for r in returns} == {"paid"}
    assert statuses == {200}
    assert payer.wallet()["balance_usd"] == "57.50"
    assert sorted(line["kind"] for line in payer.ledger()) == ["bonus", "topup"]


def test_a_paid_amount_currency_or_mode_that_disagrees_goes_to_review_with_nothing_credited(stack, payers):
    payer = payers()
    for scripted in ({"amount_total": 100}, {"currency": "eur"}, {"livemode": True}):
        order = payer.topup("20")
        stack.payments.pay(session_of(order), **scripted)
        seen = payer.operator_order(order["order_id"])
        assert seen["status"] == "review" and seen["review_reason"]
    assert payer.wallet()["balance_usd"] == "0.00"
    listed = stack.admin("GET", f"/admin/topups?status=review&account_id={payer.account_id}")["data"]
    assert len(listed) == 3
    reviewed = stack.admin("POST", f"/admin/topups/{listed[0]['order_id']}/review", {"note": "refunded by hand"})
    assert reviewed["reviewed_at"] and reviewed["note"] == "refunded by hand" and reviewed["status"] == "review"


def test_an_expired_checkout_expires_its_order_and_an_async_payment_credits_when_it_clears(stack, payers):
    payer = payers()
    expiring = payer.topup("10")
    stack.payments.expire(session_of(expiring))
    assert payer.operator_order(expiring["order_id"])["status"] == "expired"

    delayed = payer.topup("10")
    stack.payments.pay(session_of(delayed), async_payment=True)
    assert payer.order(delayed["order_id"])["status"] == "pending"
    stack.payments.settle_async(session_of(delayed))
    assert payer.operator_order(delayed["order_id"])["status"] == "paid"
    assert payer.wallet()["balance_usd"] == "10.00"


@pytest.mark.parametrize(("amount", "code"), [
    ("4.99", "amount_too_small"), ("10000.01", "amount_too_large"), ("20.001", "invalid_value"),
    ("twenty", "invalid_value"), (None, "invalid_value"), (True, "invalid_value"), ("-20", "amount_too_small"),
])
def test_an_amount_out_of_range_or_not_whole_cents_is_refused_naming_amount_usd(stack, payers, amount, code):
    payer = payers()
    response = payer.call("POST", "/api/wallet/topups", {"amount_usd": amount})
    assert response.status_code == 400, response.text
    assert (response.json()["error"]["param"], response.json()["error"]["code"]) == ("amount_usd", code)
    assert payer.call("GET", "/api/wallet/topups").json()["data"] == []


def test_orders_are_the_customers_own_and_listed_newest_first(stack, payers):
    alice, bob = payers(), payers()
    first, second = alice.topup("10"), alice.topup("20")
    listed = alice.call("GET", "/api/wallet/topups?limit=1").json()
    assert [o["order_id"] for o in listed["data"]] == [second["order_id"]]
    rest = alice.call("GET", f"/api/wallet/topups?limit=1&cursor={listed['next_cursor']}").json()
    assert [o["order_id"] for o in rest["data"]] == [first["order_id"]]
    assert bob.call("GET", f"/api/wallet/topups/{first['order_id']}").status_code == 404
    assert alice.call("GET", "/api/wallet/topups?status=nonsense").json()["error"]["param"] == "status"
    assert alice.call("GET", "/api/wallet/topups?cursor=garbage").json()["error"]["param"] == "cursor"


def test_changed_tiers_do_not_change_an_order_in_flight(stack, payers):
    payer = payers()
    order = payer.topup("20")
    before = stack.admin("GET", "/admin/topup-settings")
    try:
        stack.admin("PUT", "/admin/topup-settings", {"tiers": [{"pay_usd": "20", "credit_usd": "30"}],
                                                     "min_usd": "5", "max_usd": "10000"})
        assert payer.call("GET", "/api/wallet/topup-options").json()["tiers"][0]["credit_usd"] == "30.00"
        stack.payments.pay(session_of(order))
        assert payer.wallet()["balance_usd"] == "22.00"
    finally:
        stack.admin("PUT", "/admin/topup-settings", {
            "tiers": [{"pay_usd": t["pay_usd"], "credit_usd": t["credit_usd"]} for t in before["tiers"]],
            "min_usd": before["min_usd"], "max_usd": before["max_usd"]})


# Webhook signatures: verified over the raw body before anything is read.

def _completed(order_id: str, amount: int = 2000) -> bytes:
    return json.dumps({"id": f"evt_forged_{order_id}", "object": "event", "type": "checkout.session.completed",
                       "livemode": False, "created": int(time.time()), "data": {"object": {
                           "id": "cs_forged", "object": "checkout.session", "client_reference_id": order_id,
                           "payment_status": "paid", "status": "complete", "amount_total": amount,
                           "currency": "usd", "livemode": False, "payment_intent": "pi_forged"}}}).encode()


@pytest.mark.parametrize("forgery", ["no header", "garbage", "another secret", "too old", "altered", "not json"])
def test_a_webhook_whose_signature_does_not_verify_is_refused_and_credits_nothing(stack, payers, forgery):
    payer = payers()
    order = payer.topup("20")
    body, now = _completed(order["order_id"]), int(time.time())
    signature: str | None = sign(body, WEBHOOK_SECRET, now)
    if forgery == "no header":
        signature = None
    elif forgery == "garbage":
        signature = "t=1,v1=00"
    elif forgery == "another secret":
        signature = sign(body, "whsec_other", now)
    elif forgery == "too old":
        signature = sign(body, WEBHOOK_SECRET, now - 301)
    elif forgery == "altered":
        body = body.replace(b'"amount_total": 2000', b'"amount_total": 2001')
    else:
        body = b"{not json"
        signature = sign(body, WEBHOOK_SECRET, now)
    response = post_webhook(stack, body, signature)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_signature"
    assert "cs_forged" not in response.text
    assert payer.operator_order(order["order_id"])["status"] == "pending"
    assert payer.wallet()["balance_usd"] == "0.00"


def test_a_signed_event_for_an_unknown_order_or_of_an_unknown_type_is_acknowledged_and_ignored(stack):
    body = _completed("top_nobody")
    assert post_webhook(stack, body, sign(body, WEBHOOK_SECRET, int(time.time()))).status_code == 200
    other = json.dumps({"id": "evt_other", "object": "event", "type": "customer.created", "livemode": False,
                        "created": int(time.time()), "data": {"object": {"id": "cus_1"}}}).encode()
    response = post_webhook(stack, other, sign(other, WEBHOOK_SECRET, int(time.time())))
    assert response.status_code == 200 and response.json()["outcome"] == "ignored"


# Refunds and disputes.

def test_a_partial_then_full_refund_debits_the_refunded_share_of_the_credit_bonus_included(stack, payers):
    payer = payers()
    order, intent = payer.paid_topup("50")  # 57.50 credited
    stack.payments.refund(intent, 1000)  # a fifth of the payment
    seen = payer.operator_order(order["order_id"])
    assert (seen["status"], seen["refunded_usd"], seen["refunded_credit_usd"]) == (
        "partially_refunded", "10.00", "11.50")
    assert payer.wallet()["balance_usd"] == "46.00"
    stack.payments.refund(intent)  # the rest
    assert payer.operator_order(order["order_id"])["status"] == "refunded"
    assert payer.wallet()["balance_usd"] == "0.00"
    assert [line["kind"] for line in payer.ledger()][:2] == ["refund", "refund"]


def test_the_operator_refunds_through_the_provider_and_the_webhook_adds_nothing_more(stack, payers):
    payer = payers()
    order, _ = payer.paid_topup("20")
    refunded = stack.admin("POST", f"/admin/topups/{order['order_id']}/refund",
                           {"amount_usd": "5", "reason": "customer asked"})
    assert (refunded["status"], refunded["refunded_usd"]) == ("partially_refunded", "5.00")
    assert payer.wallet()["balance_usd"] == "16.50"  # 22.00 less a quarter
    too_much = stack.http.post(f"/admin/topups/{order['order_id']}/refund", json={"amount_usd": "16",
                                                                                 "reason": "again"},
                               headers={"Authorization": f"Bearer {stack.settings.admin_token.get_secret_value()}"})
    assert too_much.status_code == 400 and too_much.json()["error"]["param"] == "amount_usd"


def test_a_refund_larger_than_the_balance_leaves_zero_and_a_debt_the_next_top_up_pays_first(stack, payers):
    payer = payers()
    _, intent = payer.paid_topup("20")  # 22.00
    key = payer.new_key()["key"]
    payer.stack.admin("POST", f"/admin/accounts/{payer.account_id}/adjust",
                      {"amount_usd": "-15", "reason": "spent elsewhere"})
    stack.payments.refund(intent)  # takes back 22.00 of the 7.00 left
    wallet = payer.wallet()
    assert (wallet["balance_usd"], wallet["debt_usd"]) == ("0.00", "15.00")
    refused = payer.relay(key)
    assert refused.status_code == 402 and "owes 15.00" in refused.json()["error"]["message"]
    payer.paid_topup("20")
    wallet = payer.wallet()
    assert (wallet["balance_usd"], wallet["debt_usd"]) == ("7.00", "0.00")


def test_a_dispute_freezes_the_credit_and_suspends_the_keys_until_it_is_won(stack, payers, upstream):
    payer = payers()
    _, intent = payer.paid_topup("10")
    key = payer.new_key()["key"]
    dispute = stack.payments.open_dispute(intent)["data"]["object"]
    wallet = payer.wallet()
    assert (wallet["available_usd"], wallet["frozen_usd"], wallet["suspended"]) == ("0.00", "10.00", True)
    refused = payer.relay(key)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "account_suspended"
    stack.payments.close_dispute(dispute["id"], "won")
    wallet = payer.wallet()
    assert (wallet["available_usd"], wallet["frozen_usd"], wallet["suspended"]) == ("10.00", "0.00", False)
    assert payer.relay(key).status_code == 200


def test_a_lost_dispute_debits_the_orders_credit(stack, payers):
    payer = payers()
    order, intent = payer.paid_topup("20")
    dispute = stack.payments.open_dispute(intent)["data"]["object"]
    stack.payments.close_dispute(dispute["id"], "lost")
    wallet = payer.wallet()
    assert (wallet["balance_usd"], wallet["frozen_usd"], wallet["debt_usd"], wallet["suspended"]) == (
        "0.00", "0.00", "0.00", False)
    seen = payer.operator_order(order["order_id"])
    assert (seen["status"], seen["dispute_status"]) == ("refunded", "lost")
    assert payer.ledger()[0]["kind"] == "dispute" and payer.ledger()[0]["amount_usd"] == "-22.00"


def test_events_out_of_order_still_apply_once(stack, payers, payments):
    """A refund delivered before the payment's completion: the order is found through the provider."""
    payer = payers()
    order = payer.topup("20")
    payments.auto_deliver = False
    completed = payments.pay(session_of(order))
    payments.refund(completed["data"]["object"]["payment_intent"], 1000)
    refund_event = payments.events("charge.refunded")[-1]
    assert payments.deliver(refund_event["id"]).status == 200
    assert payments.deliver(completed["id"]).status == 200
    wallet = payer.wallet()
    assert wallet["balance_usd"] == "11.00"  # 22.00 less half
    assert payer.operator_order(order["order_id"])["status"] == "partially_refunded"


def test_reconciliation_lists_a_payment_not_yet_credited(stack, payers, payments):
    payer = payers()
    order = payer.topup("10")
    payments.auto_deliver = False
    payments.pay(session_of(order))
    found = stack.admin("GET", "/admin/payments/reconcile?from=2020-01-01&to=2100-01-01")["data"]
    assert {"kind": "not_credited", "order_id": order["order_id"]}.items() <= next(
        d for d in found if d["order_id"] == order["order_id"]).items()
    stack.admin("POST", f"/admin/topups/{order['order_id']}/confirm")
    found = stack.admin("GET", "/admin/payments/reconcile?from=2020-01-01&to=2100-01-01")["data"]
    assert order["order_id"] not in {d["order_id"] for d in found}
    assert payer.wallet()["balance_usd"] == "10.00"


# Redemption codes.

def test_a_code_credits_once_and_says_why_it_no_longer_does(stack, payers):
    payer = payers()
    made = stack.admin("POST", "/admin/codes", {"count": 2, "value_usd": "5", "batch": "launch"})["data"]
    code = made[0]["code"]
    assert code.startswith("TW-") and made[0]["value_usd"] == "5.00"
    listed = stack.admin("GET", "/admin/codes?batch=launch")["data"]
    assert code not in json.dumps(listed)
    redeemed = payer.call("POST", "/api/wallet/redeem", {"code": code.lower()})
    assert redeemed.status_code == 200, redeemed.text
    assert (redeemed.json()["credited_usd"], redeemed.json()["balance_usd"]) == ("5.00", "5.00")
    again = payer.call("POST", "/api/wallet/redeem", {"code": code})
    assert (again.status_code, again.json()["error"]["code"]) == (400, "code_used")
    stack.admin("POST", f"/admin/codes/{made[1]['code_id']}/disable")
    disabled = payer.call("POST", "/api/wallet/redeem", {"code": made[1]["code"]})
    assert disabled.json()["error"]["code"] == "code_disabled"
    assert payer.ledger()[0]["kind"] == "redeem"


def test_an_expired_code_is_refused_naming_why(stack, payers):
    payer = payers()
    soon = datetime.now(UTC) + timedelta(seconds=2)
    code = stack.admin("POST", "/admin/codes", {"count": 1, "value_usd": "5",
                                                "expires_at": soon.isoformat()})["data"][0]
    assert code["expires_at"] == soon.isoformat(timespec="seconds").replace("+00:00", "Z")
    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.2)
    expired = payer.call("POST", "/api/wallet/redeem", {"code": code["code"]})
    assert (expired.status_code, expired.json()["error"]["code"]) == (400, "code_expired")
    past = stack.http.post("/admin/codes", json={"count": 1, "value_usd": "5", "expires_at": "2000-01-01T00:00:00Z"},
                           headers={"Authorization": f"Bearer {stack.settings.admin_token.get_secret_value()}"})
    assert past.status_code == 400 and past.json()["error"]["param"] == "expires_at"


def test_twenty_racing_redemptions_of_one_code_credit_once(stack, payers):
    payer = payers()
    code = stack.admin("POST", "/admin/codes", {"count": 1, "value_usd": "3"})["data"][0]["code"]
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: httpx.post(
            f"{stack.url}/api/wallet/redeem", json={"code": code},
            headers={"Authorization": f"Bearer {payer.session}"}, timeout=30), range(20)))
    assert [a.status_code for a in answers].count(200) == 1
    # The others find the code used, or (every attempt counting until it is known to have succeeded)
    # the account's attempts for the minute spent.
    assert {a.json()["error"]["code"] for a in answers if a.status_code != 200} <= {"code_used", "too_many_attempts"}
    assert payer.wallet()["balance_usd"] == "3.00"


def test_ten_wrong_codes_a_minute_and_the_next_attempt_waits(stack, payers):
    payer = payers()
    for _ in range(10):
        wrong = payer.call("POST", "/api/wallet/redeem", {"code": "TW-00000-00000-00000-00000"})
        assert wrong.json()["error"]["code"] == "code_invalid"
    limited = payer.call("POST", "/api/wallet/redeem", {"code": "TW-00000-00000-00000-00000"})
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1


def test_the_ledger_pages_newest_first_with_the_balance_after_each_entry(stack, payers):
    payer = payers()
    for usd_amount in ("1", "2", "3", "4"):
        stack.admin("POST", f"/admin/accounts/{payer.account_id}/credit", {"amount_usd": usd_amount})
    first = payer.call("GET", "/api/wallet/ledger?limit=3").json()
    assert [(line["amount_usd"], line["balance_after_usd"]) for line in first["data"]] == [
        ("4.00", "10.00"), ("3.00", "6.00"), ("2.00", "3.00")]
    rest = payer.call("GET", f"/api/wallet/ledger?limit=3&cursor={first['next_cursor']}").json()
    assert [(line["amount_usd"], line["balance_after_usd"]) for line in rest["data"]] == [("1.00", "1.00")]
    assert rest["next_cursor"] is None
    assert payer.call("GET", "/api/wallet/ledger?limit=0").json()["error"]["param"] == "limit"
    assert payer.call("GET", "/api/wallet/ledger?cursor=xyz").json()["error"]["param"] == "cursor"


def test_the_wallet_needs_a_session(stack):
    for path in ("/api/wallet", "/api/wallet/ledger", "/api/wallet/topups", "/api/wallet/topup-options"):
        assert stack.http.get(path).status_code == 401


def test_while_the_provider_is_down_orders_read_as_stored_and_new_top_ups_fail_cleanly(stack, payers, payments):
    payer = payers()
    order = payer.topup("10")
    payments.auto_deliver = False
    event = payments.pay(session_of(order))
    payments.failing = True
    try:
        assert payer.order(order["order_id"])["status"] == "pending"
        refused = payer.call("POST", "/api/wallet/topups", {"amount_usd": "10"})
        assert (refused.status_code, refused.json()["error"]["code"]) == (502, "payment_provider_error")
        assert "sk_test" not in refused.text
    finally:
        payments.failing = False
    assert payments.deliver(event["id"]).status == 200
    assert payer.wallet()["balance_usd"] == "10.00"
    states = [o["status"] for o in payer.call("GET", "/api/wallet/topups").json()["data"]]
    assert states == ["expired", "paid"]  # the order whose checkout could not be made, and the paid one
