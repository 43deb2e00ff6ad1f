"""The operator CLI, as a separate process, against the running gateway."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

from openai import OpenAI

from tests.api.conftest import ADMIN_TOKEN, Stack

# The `tokenway` command as `make install` puts it beside the environment's python, run from
# outside the checkout, as the README's set-up steps leave an operator.
TOKENWAY = Path(sys.executable).parent / "tokenway"


def cli(stack: Stack, *args: str) -> dict:
    env = {**os.environ, "TOKENWAY_URL": stack.url, "TOKENWAY_ADMIN_TOKEN": ADMIN_TOKEN}
    done = subprocess.run([str(TOKENWAY), *args], cwd=tempfile.gettempdir(), env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_an_operator_sets_up_a_channel_model_account_and_key_that_a_customer_then_uses(stack, upstream):
    cli(stack, "channel", "add", "cli-channel", "--base-url", stack.upstream.base_url, "--api-key", "up-key")
    model = cli(stack, "model", "add", "cli-model", "--channel", "cli-channel", "--upstream-model", "echo-1",
                "--input-per-1m", "0.5", "--output-per-1m", "1.5", "--max-output-tokens", "256")
    assert model["routes"] == [{"channel": "cli-channel", "upstream_model": "echo-1", "priority": 0, "weight": 1}]
    account = cli(stack, "account", "create", "ops@example.com")
    credited = cli(stack, "wallet", "credit", account["account_id"], "2.50")
    assert credited["balance_usd"] == "2.50"
    created = cli(stack, "key", "create", account["account_id"], "Production", "--group", "default")
    assert created["key"].startswith("sk-") and created["key_id"]

    client = OpenAI(base_url=stack.url, api_key=created["key"], max_retries=0)
    reply = client.chat.completions.create(model="cli-model", messages=[{"role": "user", "content": "Hello"}])
    assert upstream.requests[-1].json["model"] == "echo-1"

    wallet = cli(stack, "wallet", "show", account["account_id"])
    # $0.5 and $1.5 per 1M tokens are 500 and 1500 nano-USD per token.
    expected = Decimal(reply.usage.prompt_tokens * 500 + reply.usage.completion_tokens * 1500) / 10**9
    assert Decimal(wallet["balance_usd"]) == Decimal("2.50") - expected
    assert wallet["held_usd"] == "0.00"


def test_cli_errors_exit_non_zero_with_a_message(stack):
    env = {**os.environ, "TOKENWAY_URL": stack.url, "TOKENWAY_ADMIN_TOKEN": ADMIN_TOKEN}
    done = subprocess.run([str(TOKENWAY), "wallet", "show", "acct_missing"], cwd=tempfile.gettempdir(),
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and done.stdout == ""
    assert "acct_missing" in done.stderr


def test_the_installed_command_names_itself_tokenway():
    done = subprocess.run([str(TOKENWAY), "--help"], cwd=tempfile.gettempdir(), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("usage: tokenway ")
