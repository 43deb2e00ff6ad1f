"""Services wired to SQLite repositories (a file in the test's directory) and an httpx handler standing
in for the upstream."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from chalicelib.billing.holds import Billing
from chalicelib.catalog.catalog import Catalog
from chalicelib.core.domain import Account, ApiKey, Channel, LedgerEntry, ModelEntry, ModelKind, Prices, Route
from chalicelib.core.money import usd_to_units
from chalicelib.keys.plans import KeyPlans
from chalicelib.providers.openai_compat import OpenAICompatAdapter
from chalicelib.relay.relay import Relay
from chalicelib.storage.usage_sinks import InMemoryUsageSink
from tests.sqlite_store import store_in

Handler = Callable[[httpx.Request], httpx.Response]

CHAT = ModelEntry(
    name="test-chat", kind=ModelKind.CHAT,
    # $1 / $0.5 / $2 per 1M tokens: 1000 / 500 / 2000 units per token.
    prices=Prices(input_per_1m=usd_to_units("1"), cached_input_per_1m=usd_to_units("0.5"),
                  output_per_1m=usd_to_units("2")),
    routes=(Route("primary", "upstream-chat"),), max_output_tokens=1000,
)
EMBED = ModelEntry(name="test-embed", kind=ModelKind.EMBEDDING, prices=Prices(input_per_1m=usd_to_units("0.02")),
                   routes=(Route("primary", "upstream-embed"),))
IMAGE = ModelEntry(name="test-image", kind=ModelKind.IMAGE, prices=Prices(per_image=usd_to_units("0.04")),
                   routes=(Route("primary", "upstream-image"),))


def chat_reply(content: str = "Hi there", *, prompt: int = 10, completion: int = 5, cached: int = 0) -> dict:
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "upstream-chat",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                  "prompt_tokens_details": {"cached_tokens": cached}},
    }


def sse(*events: Any, done: bool = True) -> bytes:
    lines = [f"data: {json.dumps(event)}\n\n" for event in events]
    if done:
        lines.append("data: [DONE]\n\n")
    return "".join(lines).encode()


def chunk(content: str | None = None, *, finish: str | None = None, usage: dict | None = None,
          choices: bool = True) -> dict:
    event: dict[str, Any] = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "upstream-chat",
                             "choices": [], "usage": usage}
    if choices:
        delta = {"content": content} if content is not None else {}
        event["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
    return event


@dataclass
class World:
    """A relay over SQLite storage in `directory`; `handler` answers for the upstream."""

    handler: Handler = lambda request: httpx.Response(200, json=chat_reply())
    sent: list[httpx.Request] = field(default_factory=list)
    time_ms: int = 1_700_000_000_000
    directory: Path = field(kw_only=True)

    def __post_init__(self) -> None:
        self.store = store_in(self.directory)
        self.keys = self.store.keys
        self.wallets = self.store.wallets
        self.catalog_repo = self.store.catalog
        self.catalog_repo.put_channel(Channel("primary", "http://primary.test/v1", "upstream-secret"))
        for model in (CHAT, EMBED, IMAGE):
            self.catalog_repo.put_model(model)
        self.catalog = Catalog(self.catalog_repo, {}, ttl_s=0)
        self.billing = Billing(self.wallets, self.keys, now_ms=lambda: self.time_ms, hold_ttl_ms=60_000)
        self.usage = InMemoryUsageSink()
        http = httpx.Client(transport=httpx.MockTransport(self._answer))
        self.accounts = self.store.accounts
        self.relay = Relay(self.catalog, self.billing, {"openai": OpenAICompatAdapter(http)}, self.usage,
                           plans=KeyPlans(self.catalog, self.accounts), default_timeout_s=5)
        self.key = ApiKey(key_id="key_1", key_hash="hash_1", account_id="acct_1", name="test", created_at=0,
                          hint="sk-abc…wxyz")
        self.keys.create(self.key)
        self.accounts.create(Account("acct_1", "a@example.com", 0))  # and its wallet

    def change_key(self, **settings: Any) -> None:
        """Change the key's settings as token management saves them, and read it again."""
        self.keys.save_settings(replace(self.keys.get_by_hash(self.key.key_hash), **settings))
        self.key = self.keys.get_by_hash(self.key.key_hash)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return self.handler(request)

    def fund(self, usd: str) -> None:
        entry_id = f"{self.time_ms - 1:013d}#credit-{len(self.ledger())}"
        self.wallets.credit(LedgerEntry(account_id="acct_1", entry_id=entry_id, kind="credit",
                                        amount=usd_to_units(usd), created_at=0))

    def balance(self):
        return self.wallets.balance("acct_1")

    def ledger(self) -> list[LedgerEntry]:
        return self.wallets.ledger("acct_1")

    def sent_json(self, index: int = -1) -> dict:
        return json.loads(self.sent[index].content)


@pytest.fixture
def world(tmp_path) -> World:
    return World(directory=tmp_path)
