"""The operator's payment commands: top-up settings and orders, wallet adjustments, redemption
codes and reconciliation with the payment provider."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from tokenway_cli.calls import Call, given, query, segment

# main's `command(group, name, run, help)`: a subcommand's parser, its run function set.
Command = Callable[[str, str, Callable[[argparse.Namespace], Call], str], argparse.ArgumentParser]


def _tier(text: str) -> dict[str, str]:
    """`PAY=CREDIT`, e.g. `50=57.50`, as the admin API takes a tier."""
    pay, _, credit = text.partition("=")
    if not (pay.strip() and credit.strip()):
        raise argparse.ArgumentTypeError(f"takes PAY=CREDIT in USD (e.g. 50=57.50), not {text!r}")
    return {"pay_usd": pay.strip(), "credit_usd": credit.strip()}


def topup_settings(args: argparse.Namespace) -> Call:
    return "GET", "/admin/topup-settings", None


def topup_set_tiers(args: argparse.Namespace) -> Call:
    return "PUT", "/admin/topup-settings", {"tiers": args.tiers, **given(args, ("min_usd", "max_usd"))}


def topup_list(args: argparse.Namespace) -> Call:
    found = query(status=args.status, account_id=args.account, limit=args.limit, cursor=args.cursor)
    return "GET", f"/admin/topups{found}", None


def topup_show(args: argparse.Namespace) -> Call:
    return "GET", f"/admin/topups/{segment(args.order_id)}", None


def topup_confirm(args: argparse.Namespace) -> Call:
    return "POST", f"/admin/topups/{segment(args.order_id)}/confirm", None


def topup_review(args: argparse.Namespace) -> Call:
    return "POST", f"/admin/topups/{segment(args.order_id)}/review", {"note": args.note}


def topup_refund(args: argparse.Namespace) -> Call:
    return "POST", f"/admin/topups/{segment(args.order_id)}/refund", {"reason": args.reason,
                                                                      **given(args, ("amount_usd",))}


def wallet_adjust(args: argparse.Namespace) -> Call:
    return "POST", f"/admin/accounts/{segment(args.account_id)}/adjust", {"amount_usd": args.usd,
                                                                          "reason": args.reason,
                                                                          **given(args, ("reference",))}


def code_create(args: argparse.Namespace) -> Call:
    return "POST", "/admin/codes", {"count": args.count, "value_usd": args.value_usd,
                                    **given(args, ("expires_at", "batch", "note"))}


def code_list(args: argparse.Namespace) -> Call:
    return "GET", f"/admin/codes{query(batch=args.batch)}", None


def code_disable(args: argparse.Namespace) -> Call:
    return "POST", f"/admin/codes/{segment(args.code_id)}/disable", None


def payments_reconcile(args: argparse.Namespace) -> Call:
    return "GET", f"/admin/payments/reconcile{query(**{'from': args.since, 'to': args.until})}", None


def add_payment_commands(command: Command) -> None:
    """The payment commands, under the groups topup, wallet, code and payments."""
    command("topup", "settings", topup_settings, "show the top-up tiers and the range a customer may pay")

    sub = command("topup", "set-tiers", topup_set_tiers,
                  "replace the top-up tiers (none: no bonus) and the range a customer may pay")
    sub.add_argument("tiers", nargs="*", type=_tier, metavar="PAY=CREDIT",
                     help="pay PAY USD, get CREDIT USD, e.g. 50=57.50; by rising PAY")
    sub.add_argument("--min", dest="min_usd", metavar="USD", help="the least one top-up may pay (default 5)")
    sub.add_argument("--max", dest="max_usd", metavar="USD", help="the most one top-up may pay (default 10000)")

    sub = command("topup", "list", topup_list, "list top-up orders, newest first")
    sub.add_argument("--status", metavar="STATE", help="only orders in this state, e.g. pending, paid or review")
    sub.add_argument("--account", metavar="ID", help="only this account's orders")
    sub.add_argument("--limit", type=int, metavar="N", help="at most N orders (default 50)")
    sub.add_argument("--cursor", metavar="C", help="the next page: the next_cursor of the one before")

    for name, run, help in (("show", topup_show, "show a top-up order"),
                            ("confirm", topup_confirm,
                             "ask the payment provider about a pending order now (credited if paid)")):
        command("topup", name, run, help).add_argument("order_id", metavar="ORDER")

    sub = command("topup", "review", topup_review, "mark an order held for review as reviewed")
    sub.add_argument("order_id", metavar="ORDER")
    sub.add_argument("--note", required=True, help="what was found, kept with the order")

    sub = command("topup", "refund", topup_refund,
                  "refund a paid order through the payment provider, taking the credit back")
    sub.add_argument("order_id", metavar="ORDER")
    sub.add_argument("--reason", required=True)
    sub.add_argument("--amount", dest="amount_usd", metavar="USD", help="part of it (default: all not yet refunded)")

    sub = command("wallet", "adjust", wallet_adjust,
                  "add (USD) or take (-USD) credit, with the reason the customer's ledger shows")
    sub.add_argument("account_id")
    sub.add_argument("usd", metavar="USD", help="e.g. 5 or -5.00")
    sub.add_argument("--reason", required=True)
    sub.add_argument("--reference", help="adjusts once: repeating the command with it changes nothing "
                                         "(default: a new adjustment each time)")

    sub = command("code", "create", code_create, "create redemption codes (shown only this once)")
    sub.add_argument("--count", type=int, required=True, metavar="N")
    sub.add_argument("--value", dest="value_usd", required=True, metavar="USD", help="the credit each code gives")
    sub.add_argument("--expires", dest="expires_at", metavar="ISO8601",
                     help="when the codes stop working, with a zone, e.g. 2027-01-01T00:00:00Z (default: never)")
    sub.add_argument("--batch", metavar="NAME", help="a name to list them by (default: a new one)")
    sub.add_argument("--note")

    sub = command("code", "list", code_list, "list redemption codes (never the codes themselves)")
    sub.add_argument("--batch", metavar="NAME", help="only this batch")

    command("code", "disable", code_disable, "stop a redemption code from working").add_argument("code_id")

    sub = command("payments", "reconcile", payments_reconcile,
                  "compare the payment provider's payments with the gateway's orders over a time range")
    sub.add_argument("--from", dest="since", required=True, metavar="DATE", help="ISO 8601, e.g. 2026-11-01")
    sub.add_argument("--to", dest="until", required=True, metavar="DATE", help="ISO 8601; the range ends before it")

