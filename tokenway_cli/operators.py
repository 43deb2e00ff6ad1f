"""The commands a new stage starts with: its first admin, what its catalog holds, and taking a key back."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from tokenway_cli.calls import Call, segment

Command = Callable[[str, str, Callable[[argparse.Namespace], Call], str], argparse.ArgumentParser]


def admin_bootstrap(args: argparse.Namespace) -> Call:
    return "POST", "/admin/admins", {"email": args.email}


def model_list(args: argparse.Namespace) -> Call:
    return "GET", "/admin/models", None


def key_revoke(args: argparse.Namespace) -> Call:
    return "DELETE", f"/admin/accounts/{segment(args.account_id)}/keys/{segment(args.key_id)}", None


def add_operator_commands(command: Command) -> None:
    sub = command("admin", "bootstrap", admin_bootstrap,
                  "make the account with EMAIL an admin of the console, creating it if need be, and print a "
                  "one-time link to set its password (safe to run again: each run gives a new link)")
    sub.add_argument("--email", required=True)

    command("model", "list", model_list, "list the catalog's models with their prices and routes")

    sub = command("key", "revoke", key_revoke, "revoke an API key: it stops working at once, for good")
    sub.add_argument("account_id")
    sub.add_argument("key_id")
