"""The manual's Node.js snippet, with the official OpenAI Node SDK (tests/node), against the gateway."""

from __future__ import annotations

import json
import subprocess
from decimal import Decimal

import pytest

from tests.conftest import ROOT

NODE_CLIENT = ROOT / "tests" / "node" / "client.mjs"


@pytest.mark.parametrize("suffix", ["", "/v1"], ids=["no-v1", "v1"])
def test_the_node_sdk_chats_streams_embeds_and_sees_errors(stack, upstream, suffix):
    account_id, key = stack.customer("1")
    done = subprocess.run(["node", str(NODE_CLIENT), stack.url + suffix, key], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["model"] == "deepseek-chat" and "Hello!" in got["content"]
    assert got["streamed"] == got["content"]
    assert got["dimensions"] > 0
    assert got["refused"] == {"status": 404, "code": "model_not_found"}
    assert Decimal(stack.wallet(account_id)["balance_usd"]) < 1
