"""One AWS emulator for the whole test session, as `make run` starts it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.emulator import Emulator

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "infra" / "template.yaml"

# Records the gateway's AWS calls and checks them against the IAM policy at the end (tests/aws_calls.py).
pytest_plugins = ["tests.aws_calls"]


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        os.environ.setdefault(name, value)
    with Emulator(port=0) as running:
        yield running
