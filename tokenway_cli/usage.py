"""The operator's usage commands: summaries over one account or every account."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from tokenway_cli.calls import Call, query

Command = Callable[[str, str, Callable[[argparse.Namespace], Call], str], argparse.ArgumentParser]


def usage_summary(args: argparse.Namespace) -> Call:
    found = query(account_id=args.account, **{"from": args.since, "to": args.until}, tz=args.tz,
                  granularity=args.granularity, group_by=args.group_by)
    return "GET", f"/admin/usage/summary{found}", None


def add_usage_commands(command: Command) -> None:
    sub = command("usage", "summary", usage_summary,
                  "usage totals, a series and a breakdown, of one account or of every account")
    sub.add_argument("--account", metavar="ID", help="one account (default: every account)")
    sub.add_argument("--from", dest="since", metavar="DATE", help="ISO 8601 date or time (default: 7 days ago)")
    sub.add_argument("--to", dest="until", metavar="DATE", help="ISO 8601 date or time, excluded (default: "
                                                                "the end of today)")
    sub.add_argument("--tz", help="IANA time zone of the dates and the series (default UTC)")
    sub.add_argument("--granularity", choices=["hour", "day"])
    sub.add_argument("--group-by", choices=["model", "key", "channel", "account"])
