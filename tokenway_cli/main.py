"""Tokenway's operator CLI: a thin client of the admin API, so it works against any stage.

The gateway's URL comes from --url or TOKENWAY_URL (default http://127.0.0.1:8000), the admin
token from --admin-token or TOKENWAY_ADMIN_TOKEN (the environment keeps it out of the process
list), before or after the command. Each command prints one JSON object on stdout (`smoke`: one line
per check); errors go to stderr as one `error: …` line, with exit status 1 (gateway or network) or 2
(usage).

    export TOKENWAY_URL=https://abc123.execute-api.us-east-1.amazonaws.com/api
    export TOKENWAY_ADMIN_TOKEN=...

    tokenway channel add deepseek --base-url https://api.deepseek.com/v1 --api-key sk-...
    tokenway model add deepseek-chat --channel deepseek \\
        --input-per-1m 0.28 --cached-input-per-1m 0.028 --output-per-1m 0.42 --context-window 128000
    tokenway model add dall-e-3 --channel openai --per-image 0.04 --image-price hd:1792x1024=0.12
    tokenway model add my-gpt --channel openai --upstream-model gpt-4o --input-per-1m 2.50 \\
        --output-per-1m 10 --max-output-tokens 16384 --cap-field max_completion_tokens --pass-through service_tier
    tokenway account create ops@example.com
    tokenway account password-link acct_0123      # a one-time link for its owner to set a password
    tokenway wallet credit acct_0123 25.00 --note "first top-up" --reference invoice-2041
    tokenway wallet show acct_0123
    tokenway key create acct_0123 laptop --group default
    tokenway key list acct_0123
    tokenway group add pro --multiplier 0.9 --description "Every model, 10% off"
    tokenway account groups acct_0123 pro             # pro, and default as before
    tokenway account groups acct_0123 pro --no-default   # pro only
    tokenway limits set --group pro --rpm 60 --tpm 100000 --concurrency 4   # each key of pro
    tokenway limits set --group pro --model gpt-4o --rpm 10
    tokenway limits show
    tokenway account list --search example.com
    tokenway account disable acct_0123
    tokenway holds sweep

    tokenway admin bootstrap --email ops@example.com    # the first admin: a one-time set-password link
    tokenway smoke --url https://api.example.com          # a stage checked end to end, one line per check

    tokenway topup settings
    tokenway topup set-tiers 10=10 20=22 50=57.50 100=120 --min 5 --max 10000
    tokenway topup list --status review --limit 20
    tokenway topup show top_0123
    tokenway topup confirm top_0123                 # ask the payment provider now; credited if paid
    tokenway topup review top_0123 --note "paid in EUR; credited by an adjustment"
    tokenway topup refund top_0123 --reason "customer asked" --amount 10.00
    tokenway wallet adjust acct_0123 -5 --reason "duplicate credit" --reference ticket-88
    tokenway code create --count 10 --value 5.00 --expires 2027-01-01T00:00:00Z --batch launch
    tokenway code list --batch launch
    tokenway code disable code_0123
    tokenway payments reconcile --from 2026-11-01 --to 2026-12-01
    tokenway usage summary --from 2026-11-01 --to 2026-12-01 --tz Asia/Shanghai --group-by model
    tokenway usage summary --account acct_0123 --from 2026-11-20 --granularity hour

USD amounts are sent exactly as typed; the gateway parses them as decimals.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import httpx

from tokenway_cli import smoke
from tokenway_cli.calls import Call, describe, given, query, segment
from tokenway_cli.operators import add_operator_commands
from tokenway_cli.payments import add_payment_commands
from tokenway_cli.usage import add_usage_commands

DEFAULT_URL = "http://127.0.0.1:8000"
TIMEOUT_S = 30.0

GROUPS = {"channel": "upstream providers", "model": "the model catalog", "account": "customer accounts",
          "wallet": "customer balances", "key": "customer API keys", "group": "groups (plans)",
          "holds": "billing holds", "topup": "top-up tiers and orders", "code": "redemption codes",
          "payments": "payments at the provider", "usage": "usage over accounts",
          "limits": "request limits per key", "admin": "operators of the console"}

MODEL_OPTIONS = ("upstream_model", "input_per_1m", "output_per_1m", "cached_input_per_1m", "cache_write_per_1m",
                 "per_image", "max_output_tokens", "kind", "timeout_s", "context_window", "cap_field", "priority",
                 "weight")


def channel_add(args: argparse.Namespace) -> Call:
    body = {"name": args.name, "base_url": args.base_url, "api_key": args.api_key, "kind": args.kind}
    if args.header:
        body["extra_headers"] = dict(args.header)
    return "POST", "/admin/channels", body


def channel_list(args: argparse.Namespace) -> Call:
    return "GET", "/admin/channels", None


def channel_state(args: argparse.Namespace) -> Call:
    return "POST", f"/admin/channels/{segment(args.name)}/state", {"state": args.state}


def _header(text: str) -> tuple[str, str]:
    """`NAME=VALUE`, e.g. `X-Org=acme`."""
    name, equals, value = text.partition("=")
    if not (name and equals):
        raise argparse.ArgumentTypeError(f"takes NAME=VALUE (e.g. X-Org=acme), not {text!r}")
    return name, value


def model_add(args: argparse.Namespace) -> Call:
    body = {"name": args.name, "channel": args.channel, **given(args, MODEL_OPTIONS)}
    if args.image_price:
        body["image_prices"] = args.image_price
    if args.pass_through is not None:
        body["pass_through"] = [name.strip() for name in args.pass_through.split(",") if name.strip()]
    if args.fallbacks is not None:
        body["fallbacks"] = [name.strip() for name in args.fallbacks.split(",") if name.strip()]
    return "POST", "/admin/models", body


def _image_price(text: str) -> dict[str, str]:
    """`QUALITY:SIZE=USD`, e.g. `hd:1792x1024=0.12`, as the admin API takes it."""
    where, _, usd = text.partition("=")
    quality, _, size = where.partition(":")
    if not (quality and size and usd):
        raise argparse.ArgumentTypeError(f"takes QUALITY:SIZE=USD (e.g. hd:1792x1024=0.12), not {text!r}")
    return {"quality": quality, "size": size, "per_image": usd}


def account_create(args: argparse.Namespace) -> Call:
    return "POST", "/admin/accounts", {"email": args.email}


def wallet_credit(args: argparse.Namespace) -> Call:
    return "POST", f"/admin/accounts/{segment(args.account_id)}/credit", {"amount_usd": args.usd,
                                                                          **given(args, ("note", "reference"))}


def wallet_show(args: argparse.Namespace) -> Call:
    return "GET", f"/admin/accounts/{segment(args.account_id)}/wallet", None


def key_create(args: argparse.Namespace) -> Call:
    return "POST", f"/admin/accounts/{segment(args.account_id)}/keys", {"name": args.name,
                                                                        **given(args, ("group",))}


def key_list(args: argparse.Namespace) -> Call:
    return "GET", f"/admin/accounts/{segment(args.account_id)}/keys", None


def account_list(args: argparse.Namespace) -> Call:
    return "GET", f"/admin/accounts{query(search=args.search or None)}", None


def account_disable(args: argparse.Namespace) -> Call:
    return "PATCH", f"/admin/accounts/{segment(args.account_id)}", {"status": "disabled"}


def account_enable(args: argparse.Namespace) -> Call:
    return "PATCH", f"/admin/accounts/{segment(args.account_id)}", {"status": "active"}


def account_groups(args: argparse.Namespace) -> Call:
    body: dict[str, Any] = {"groups": args.groups}
    if args.default is not None:
        body["default_plan"] = args.default
    return "PATCH", f"/admin/accounts/{segment(args.account_id)}", body


def account_password_link(args: argparse.Namespace) -> Call:
    return "POST", f"/admin/accounts/{segment(args.account_id)}/password-link", None


def group_add(args: argparse.Namespace) -> Call:
    models = [name.strip() for name in (args.models or "").split(",") if name.strip()]
    return "POST", "/admin/groups", {"name": args.name, "multiplier": args.multiplier, "models": models,
                                     **given(args, ("description",))}


def group_list(args: argparse.Namespace) -> Call:
    return "GET", "/admin/groups", None


def limits_set(args: argparse.Namespace) -> Call:
    return "PUT", f"/admin/groups/{segment(args.group)}/limits", given(args, ("model", "rpm", "tpm", "concurrency"))


def limits_show(args: argparse.Namespace) -> Call:
    return "GET", "/admin/limits", None


def holds_sweep(args: argparse.Namespace) -> Call:
    return "POST", "/admin/holds/sweep", {}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokenway", description="Operate a Tokenway gateway.")
    parser.add_argument("--url", help=f"the gateway's base URL (env TOKENWAY_URL, default {DEFAULT_URL})")
    parser.add_argument("--admin-token", help="the admin token (env TOKENWAY_ADMIN_TOKEN)")
    groups = parser.add_subparsers(dest="command", required=True)
    actions: dict[str, Any] = {}

    def command(group: str, name: str, run: Any, help: str) -> argparse.ArgumentParser:
        if group not in actions:
            actions[group] = groups.add_parser(group, help=GROUPS[group]).add_subparsers(dest="action",
                                                                                          required=True)
        sub = actions[group].add_parser(name, help=help, description=help)
        sub.set_defaults(run=run, usage_error=sub.error)
        _connection_options(sub)
        return sub

    sub = command("channel", "add", channel_add, "add or replace an upstream channel")
    sub.add_argument("name")
    sub.add_argument("--base-url", required=True, help="e.g. https://api.openai.com/v1")
    sub.add_argument("--api-key", required=True, help="the upstream provider's key")
    sub.add_argument("--kind", default="openai", help="the upstream's API flavour (default openai)")
    sub.add_argument("--header", action="append", type=_header, metavar="NAME=VALUE",
                     help="a header sent with every request to the channel (repeatable)")

    sub = command("channel", "list", channel_list, "list channels with their breaker state, success rate and "
                  "latency")

    sub = command("channel", "state", channel_state, "force a channel's breaker open or closed, or back to auto")
    sub.add_argument("name")
    sub.add_argument("state", choices=["open", "closed", "auto"])

    sub = command("model", "add", model_add, "add a model, or a route to it through another channel")
    sub.add_argument("name")
    sub.add_argument("--channel", required=True)
    sub.add_argument("--upstream-model", help="the model's name at the upstream (default NAME)")
    sub.add_argument("--input-per-1m", metavar="USD", help="USD per 1M input tokens")
    sub.add_argument("--output-per-1m", metavar="USD", help="USD per 1M output tokens")
    sub.add_argument("--cached-input-per-1m", metavar="USD", help="USD per 1M cached input tokens")
    sub.add_argument("--cache-write-per-1m", metavar="USD",
                     help="USD per 1M prompt tokens written to the provider's cache (default: the input price)")
    sub.add_argument("--per-image", metavar="USD",
                     help="USD per image of the default quality and size, standard 1024x1024 (image models)")
    sub.add_argument("--image-price", action="append", type=_image_price, metavar="QUALITY:SIZE=USD",
                     help="USD per image of another quality and size, e.g. hd:1792x1024=0.12 (repeatable)")
    sub.add_argument("--max-output-tokens", type=int, metavar="N",
                     help="the most output one request may ask for (a new chat model: 4096)")
    sub.add_argument("--cap-field", choices=["max_tokens", "max_completion_tokens"],
                     help="the request field the provider reads the output cap from (default: the provider's, "
                          "else max_tokens)")
    sub.add_argument("--pass-through", metavar="FIELD,...",
                     help="price-changing request fields the model's prices cover and the gateway passes on, "
                          "e.g. service_tier,reasoning_effort (\"\" clears them; default: none)")
    sub.add_argument("--kind", choices=["chat", "embedding", "image"])
    sub.add_argument("--timeout-s", type=float, metavar="S", help="upstream timeout in seconds")
    sub.add_argument("--context-window", type=int, metavar="N")
    sub.add_argument("--priority", type=int, metavar="N",
                     help="the route's priority: higher is tried first (a new route: after the model's others)")
    sub.add_argument("--weight", type=int, metavar="N", help="the route's share among equal priorities (default 1)")
    sub.add_argument("--fallbacks", metavar="MODEL,...",
                     help="models tried in turn when this one fails, for a request naming only it (\"\" clears)")

    sub = command("account", "create", account_create, "create a customer account")
    sub.add_argument("email")

    sub = command("wallet", "credit", wallet_credit, "add USD to an account's wallet, once per reference")
    sub.add_argument("account_id")
    sub.add_argument("usd", metavar="USD")
    sub.add_argument("--note")
    sub.add_argument("--reference", help="credits once: repeating the command with it changes nothing "
                                         "(default: a new credit each time)")

    sub = command("wallet", "show", wallet_show, "show an account's balance")
    sub.add_argument("account_id")

    sub = command("account", "list", account_list, "list accounts, optionally searching email or id")
    sub.add_argument("--search")

    for name, run, help in (("disable", account_disable, "disable an account: its keys stop working"),
                            ("enable", account_enable, "enable a disabled account")):
        command("account", name, run, help).add_argument("account_id")

    sub = command("account", "groups", account_groups, "set the groups (plans) an account may use")
    sub.add_argument("account_id")
    sub.add_argument("groups", nargs="*", metavar="GROUP")
    sub.add_argument("--default", action=argparse.BooleanOptionalAction,
                     help="whether the default plan is one of them too (default: leave as it is)")

    sub = command("account", "password-link", account_password_link,
                  "a one-time link for the account's owner to set a password (earlier links stop working)")
    sub.add_argument("account_id")

    sub = command("key", "create", key_create, "create an API key (shown only this once)")
    sub.add_argument("account_id")
    sub.add_argument("name")
    sub.add_argument("--group")

    command("key", "list", key_list, "list an account's keys (never their secrets)").add_argument("account_id")

    sub = command("group", "add", group_add, "add or replace a group (plan)")
    sub.add_argument("name")
    sub.add_argument("--multiplier", default="1", help="price multiplier, e.g. 1.2 (default 1)")
    sub.add_argument("--models", help="comma-separated models the group may use (default: all)")
    sub.add_argument("--description")

    command("group", "list", group_list, "list the groups (plans)")

    sub = command("limits", "set", limits_set,
                  "set a group's request limits per key, on all its models or on one (a limit left out: unlimited)")
    sub.add_argument("--group", required=True)
    sub.add_argument("--model")
    sub.add_argument("--rpm", type=int, help="requests per minute")
    sub.add_argument("--tpm", type=int, help="tokens per minute (prompt and completion)")
    sub.add_argument("--concurrency", type=int, help="requests in flight at once")

    command("limits", "show", limits_show, "show every group's request limits per key")

    command("holds", "sweep", holds_sweep, "release expired holds")
    add_payment_commands(command)
    add_usage_commands(command)
    add_operator_commands(command)

    sub = groups.add_parser("smoke", help="check a deployed stage end to end",
                            description="Check a stage end to end: models, a chat and a stream on a throwaway "
                                        "account's key, the cost header against the wallet, the console login. "
                                        "One line per check; exit status 1 at the first failure. The account is "
                                        "disabled and its key revoked afterwards, whatever happened.")
    sub.set_defaults(run=None, program=smoke.run, usage_error=sub.error)
    _connection_options(sub)
    smoke.add_smoke_arguments(sub)
    return parser


def _connection_options(parser: argparse.ArgumentParser) -> None:
    """--url and --admin-token after the command too; given before it, they are not overridden."""
    parser.add_argument("--url", default=argparse.SUPPRESS, help="the gateway's base URL (env TOKENWAY_URL)")
    parser.add_argument("--admin-token", default=argparse.SUPPRESS, help="the admin token (env TOKENWAY_ADMIN_TOKEN)")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    args = _parser().parse_args(argv)
    if args.run is model_add and args.per_image is None:
        missing = [flag for flag, value in (("--input-per-1m", args.input_per_1m),
                                            ("--output-per-1m", args.output_per_1m)) if value is None]
        if missing:
            args.usage_error(f"{' and '.join(missing)} required (or --per-image for an image model)")
    return args


class CliError(Exception):
    """A failure to report as one `error: …` line."""


def _request(http: httpx.Client, url: str, token: str, call: Call) -> dict[str, Any]:
    method, path, body = call
    target = url.rstrip("/") + path
    try:
        response = http.request(method, target, json=body, timeout=TIMEOUT_S,
                                headers={"Authorization": f"Bearer {token}"})
    except (httpx.ReadTimeout, httpx.WriteTimeout):
        raise CliError(f"the gateway at {url} did not answer within {TIMEOUT_S:g} s; "
                       "the change may or may not have been made") from None
    except (httpx.TransportError, httpx.InvalidURL) as exc:
        raise CliError(f"cannot reach the gateway at {url}: {exc or type(exc).__name__}") from None
    if not response.is_success:
        raise CliError(describe(response))
    try:
        return response.json()
    except ValueError:
        raise CliError(f"the gateway answered HTTP {response.status_code} with a body that is not JSON") from None


def main(argv: list[str] | None = None, *, http: httpx.Client | None = None,
         environ: Mapping[str, str] | None = None, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    environ = os.environ if environ is None else environ
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            args = _parse(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2

    url = args.url or environ.get("TOKENWAY_URL") or DEFAULT_URL
    token = args.admin_token or environ.get("TOKENWAY_ADMIN_TOKEN")
    if not token:
        print("error: no admin token: pass --admin-token or set TOKENWAY_ADMIN_TOKEN", file=stderr)
        return 2

    client = http or httpx.Client(timeout=TIMEOUT_S)
    program = getattr(args, "program", None)
    if program is not None:
        try:
            return program(args, http=client, url=url, token=token, stdout=stdout, stderr=stderr)
        finally:
            if http is None:
                client.close()
    try:
        result = _request(client, url, token, args.run(args))
    except CliError as exc:
        print(f"error: {str(exc).replace(token, '***')}", file=stderr)
        return 1
    finally:
        if http is None:
            client.close()
    print(json.dumps(result, indent=2), file=stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
