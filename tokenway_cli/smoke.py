"""`tokenway smoke`: a deployed stage checked end to end, as the operator and a customer use it.

    account ─► credit ─► key ─► models ─► chat ─► stream ─► console
       │                                                        │
       └─► cleanup, whatever happened (a failure, Ctrl-C) ◄─────┘
           the key revoked, the account disabled

- account, credit, key: a throwaway account (`smoke-…@smoke.invalid`) made through the admin API,
  credited a few cents, with one API key;
- models: `GET /v1/models` with that key lists models; the one to call is `--model`, else the
  cheapest chat model listed (input plus output price, from `GET /admin/models`);
- chat: one completion; its `X-Tokenway-Cost-USD` header is what left the wallet, exactly;
- stream: one streamed completion arrives as several server-sent events, ends with `[DONE]`, and
  what left the wallet is the cost it reports (the header, or the usage chunk when the events are
  streamed as they come); the first event's time is printed beside the whole stream's;
- console: the account's password set through a one-time set-password link, then
  `POST /api/auth/login` and `GET /api/auth/me` with the session, and logout.

Each check prints one line: `ok` or `FAIL`, its time, what it found. The first failure stops the
checks and the exit status is 1; the cleanup runs and prints its line all the same.
"""

from __future__ import annotations

import argparse
import json
import secrets
import time
import uuid
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, TextIO

import httpx

from tokenway_cli.calls import describe, segment

# The longest a relay call may take (the gateway's upstream timeout is 120 s), and some.
RELAY_TIMEOUT_S = 150.0
ADMIN_TIMEOUT_S = 30.0
CREDIT_USD = "0.10"
# Small, so that the hold (and the charge) is a fraction of a cent on any model.
MAX_TOKENS = 16
PROMPT = "Reply with one short sentence: the Tokenway smoke test reached you."
COST_HEADER = "X-Tokenway-Cost-USD"


class Failed(Exception):
    """A check that did not pass; the message says what was found."""


def add_smoke_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="the chat model to call (default: the cheapest chat model listed)")
    parser.add_argument("--relay-url", metavar="URL",
                        help="where /v1 is served, when not at --url (e.g. a streaming function's URL)")


def _usd(text: Any, what: str) -> Decimal:
    try:
        return Decimal(str(text))
    except InvalidOperation:
        raise Failed(f"{what} is not a USD amount: {str(text)[:40]!r}") from None


class Smoke:
    """The checks of one run, and what they made (for the cleanup)."""

    def __init__(self, http: httpx.Client, *, url: str, relay_url: str, token: str, model: str | None,
                 out: TextIO) -> None:
        self._http = http
        self._url = url.rstrip("/")
        self._relay_url = relay_url.rstrip("/")
        self._token = token
        self._model = model
        self._out = out
        self._email = f"smoke-{uuid.uuid4().hex[:12]}@smoke.invalid"
        self._account_id: str | None = None
        self._key: str | None = None
        self._key_id: str | None = None

    def run(self) -> str | None:
        """Every check in turn, then the cleanup: the first check that failed, or None."""
        failed = None
        try:
            for name, check in (("account", self._create_account), ("credit", self._credit), ("key", self._create_key),
                                ("models", self._models), ("chat", self._chat), ("stream", self._stream),
                                ("console", self._console)):
                if not self._check(name, check):
                    failed = name
                    break
        finally:
            if not self._check("cleanup", self._cleanup) and failed is None:
                failed = "cleanup"
        return failed

    def _check(self, name: str, check: Callable[[], str]) -> bool:
        start = time.perf_counter()
        try:
            detail, passed = check(), True
        except Failed as exc:
            detail, passed = str(exc), False
        except (KeyError, IndexError, TypeError) as exc:
            # An answer of another shape than the admin API's and the relay's: not this gateway, or not its version.
            detail, passed = f"an answer without the expected field {exc}", False
        seconds = time.perf_counter() - start
        self._print(f"{'ok' if passed else 'FAIL':<4} {seconds:7.3f} s  {name:<8} {detail}")
        return passed

    def _print(self, line: str) -> None:
        for secret in (self._token, self._key):
            if secret:
                line = line.replace(secret, "***")
        print(line, file=self._out, flush=True)

    # The checks, each returning what it found.

    def _create_account(self) -> str:
        account = self._admin("POST", "/admin/accounts", {"email": self._email})
        self._account_id = account["account_id"]
        return f"{self._email} ({self._account_id})"

    def _credit(self) -> str:
        wallet = self._admin("POST", f"{self._account_path()}/credit",
                             {"amount_usd": CREDIT_USD, "note": "smoke test", "reference": self._email})
        return f"${wallet['balance_usd']} in the wallet"

    def _create_key(self) -> str:
        created = self._admin("POST", f"{self._account_path()}/keys", {"name": "smoke test"})
        self._key, self._key_id = created["key"], created["key_id"]
        return f"{self._key_id}"

    def _models(self) -> str:
        listed = [model["id"] for model in self._customer("GET", "/v1/models")["data"]]
        if not listed:
            raise Failed("GET /v1/models lists no model")
        if self._model is None:
            self._model = self._cheapest_chat_model(listed)
        elif self._model not in listed:
            raise Failed(f"{self._model} is not among the {len(listed)} models listed: {', '.join(listed[:20])}")
        return f"{len(listed)} listed; calling {self._model}"

    def _cheapest_chat_model(self, listed: list[str]) -> str:
        catalog = {model["name"]: model for model in self._admin("GET", "/admin/models")["data"]}
        chat = [catalog[name] for name in listed if name in catalog and catalog[name]["kind"] == "chat"]
        if not chat:
            raise Failed(f"no chat model among the {len(listed)} listed; name one with --model")
        cheapest = min(chat, key=lambda model: (_usd(model["input_per_1m"], "input_per_1m")
                                                + _usd(model["output_per_1m"], "output_per_1m"), model["name"]))
        return cheapest["name"]

    def _chat(self) -> str:
        before = self._balance()
        response = self._relay({"model": self._model, "messages": [{"role": "user", "content": PROMPT}],
                                "max_tokens": MAX_TOKENS})
        reply = _json(response)
        try:
            content = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise Failed(f"the answer has no message: {json.dumps(reply)[:200]}") from None
        if COST_HEADER not in response.headers:
            raise Failed(f"the answer has no {COST_HEADER} header")
        cost = _usd(response.headers[COST_HEADER], COST_HEADER)
        self._moved(before, cost)
        return f"{len(content or '')} characters; charged ${cost}, the wallet moved by exactly that"

    def _stream(self) -> str:
        before = self._balance()
        body = {"model": self._model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": MAX_TOKENS,
                "stream": True, "stream_options": {"include_usage": True}}
        start = time.perf_counter()
        first = None
        events: list[Any] = []
        done = False
        try:
            with self._http.stream("POST", f"{self._relay_url}/v1/chat/completions", json=body,
                                   headers=self._bearer(self._key), timeout=RELAY_TIMEOUT_S) as response:
                if not response.is_success:
                    response.read()
                    raise Failed(describe(response))
                header = response.headers.get(COST_HEADER)
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    first = time.perf_counter() - start if first is None else first
                    data = line[len("data:"):].strip()
                    if data == "[DONE]":
                        done = True
                        break
                    events.append(json.loads(data))
        except httpx.HTTPError as exc:
            raise Failed(f"the stream broke off: {exc or type(exc).__name__}") from None
        except ValueError:
            raise Failed("an event of the stream is not JSON") from None
        total = time.perf_counter() - start
        errors = [event["error"] for event in events if isinstance(event, dict) and "error" in event]
        if errors:
            raise Failed(f"the stream ended with an error: {errors[0].get('message')}")
        if not done:
            raise Failed(f"the stream ended after {len(events)} events without [DONE]")
        if len(events) < 2:
            raise Failed(f"the stream came as {len(events)} event, not several")
        reported = next((event["usage"].get("cost_usd") for event in reversed(events)
                         if isinstance(event, dict) and event.get("usage")), None)
        if header is None and reported is None:
            raise Failed(f"the stream told no cost: no {COST_HEADER} header and no cost_usd in its usage")
        cost = _usd(header if header is not None else reported, "the stream's cost")
        self._moved(before, cost)
        return (f"{len(events)} events; the first after {first or 0:.3f} s of {total:.3f} s; charged ${cost}, "
                "the wallet moved by exactly that")

    def _console(self) -> str:
        link = self._admin("POST", f"{self._account_path()}/password-link")
        # Letters and a digit; random, so never a part of the email.
        password = f"Sm0ke-{secrets.token_urlsafe(18)}"
        self._call("POST", f"{self._url}/api/auth/password/set", {"token": link["token"], "password": password},
                   token=None)
        session = _json(self._call("POST", f"{self._url}/api/auth/login", {"email": self._email,
                                                                          "password": password}, token=None))
        me = _json(self._call("GET", f"{self._url}/api/auth/me", None, token=session["token"]))
        if me.get("email") != self._email:
            raise Failed(f"/api/auth/me answered for {me.get('email')!r}, not {self._email}")
        self._call("POST", f"{self._url}/api/auth/logout", None, token=session["token"])
        return f"password set by link, logged in, /api/auth/me is {self._email}, logged out"

    def _cleanup(self) -> str:
        self._http.cookies.clear()  # the login's session cookie, ended anyway
        if self._account_id is None:
            return "nothing was made"
        done = []
        if self._key_id is not None:
            self._admin("DELETE", f"{self._account_path()}/keys/{segment(self._key_id)}")
            done.append(f"key {self._key_id} revoked")
        self._admin("PATCH", self._account_path(), {"status": "disabled"})
        done.append(f"account {self._account_id} disabled")
        return ", ".join(done)

    # What the checks share.

    def _account_path(self) -> str:
        assert self._account_id is not None
        return f"/admin/accounts/{segment(self._account_id)}"

    def _balance(self) -> Decimal:
        wallet = self._admin("GET", f"{self._account_path()}/wallet")
        return _usd(wallet["balance_usd"], "balance_usd")

    def _moved(self, before: Decimal, cost: Decimal) -> None:
        """Fails unless the wallet is `cost` below `before` and holds nothing back."""
        wallet = self._admin("GET", f"{self._account_path()}/wallet")
        after = _usd(wallet["balance_usd"], "balance_usd")
        if before - after != cost:
            raise Failed(f"charged ${cost}, but the wallet moved by ${before - after} (${before} → ${after})")
        if _usd(wallet["held_usd"], "held_usd") != 0:
            raise Failed(f"${wallet['held_usd']} is still held after the answer")

    def _admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return _json(self._call(method, f"{self._url}{path}", body, token=self._token))

    def _customer(self, method: str, path: str) -> Any:
        return _json(self._call(method, f"{self._relay_url}{path}", None, token=self._key))

    def _relay(self, body: dict[str, Any]) -> httpx.Response:
        return self._call("POST", f"{self._relay_url}/v1/chat/completions", body, token=self._key,
                          timeout=RELAY_TIMEOUT_S)

    def _call(self, method: str, target: str, body: dict[str, Any] | None, *, token: str | None,
              timeout: float = ADMIN_TIMEOUT_S) -> httpx.Response:
        try:
            response = self._http.request(method, target, json=body, headers=self._bearer(token), timeout=timeout)
        except httpx.TimeoutException:
            raise Failed(f"{method} {target} did not answer within {timeout:g} s") from None
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            raise Failed(f"cannot reach {target}: {exc or type(exc).__name__}") from None
        if not response.is_success:
            raise Failed(f"{method} {target.removeprefix(self._url)}: {describe(response)}")
        return response

    @staticmethod
    def _bearer(token: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"} if token else {}


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise Failed(f"HTTP {response.status_code} with a body that is not JSON") from None


def run(args: argparse.Namespace, *, http: httpx.Client, url: str, token: str, stdout: TextIO,
        stderr: TextIO) -> int:
    """The smoke test of the stage at `url`: 0 when every check passed, else 1."""
    print(f"Tokenway smoke test of {url}", file=stdout, flush=True)
    smoke = Smoke(http, url=url, relay_url=args.relay_url or url, token=token, model=args.model, out=stdout)
    failed = smoke.run()
    if failed is not None:
        print(f"error: the smoke test failed at {failed}", file=stderr)
        return 1
    print("every check passed", file=stdout)
    return 0
