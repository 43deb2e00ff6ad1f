"""Importing the app (a Lambda container's cold start) loads the routes, not what requests use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Imported by the first request that needs them: the composition root and the heavy libraries below it.
DEFERRED = ("chalicelib.deps", "chalicelib.config", "boto3", "botocore", "httpx", "pydantic",
            "chalicelib.admin.operations", "chalicelib.relay.relay", "chalicelib.relay.schemas", "stripe",
            "chalicelib.providers.stripe_payments")


def test_importing_the_app_defers_the_composition_root_and_its_libraries() -> None:
    code = ("import sys, app; print(' '.join(name for name in sys.argv[1:] if name in sys.modules)); "
            "print(len(app.app.routes))")
    answer = subprocess.run([sys.executable, "-c", code, *DEFERRED], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.splitlines()
    assert answer[0] == ""
    assert int(answer[1]) > 20  # every blueprint's routes are registered all the same
