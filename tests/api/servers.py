"""The one-machine server as `make run` starts it (`python -m chalicelib.api.server`), in a process of
its own, configured through the environment from a test's Settings."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from chalicelib.config import Settings
from tests.conftest import ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def environment(settings: Settings, **overrides: Any) -> dict[str, str]:
    """The TOKENWAY_* variables that make the server's Settings() equal `settings` (updated by `overrides`)."""
    settings = settings.model_copy(update=overrides)
    env = {name: value for name, value in os.environ.items() if not name.startswith("TOKENWAY_")}
    for field in settings.model_fields_set | set(overrides):
        value = getattr(settings, field)
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        elif isinstance(value, tuple):
            value = ",".join(map(str, value))
        alias = Settings.model_fields[field].validation_alias
        env[alias if isinstance(alias, str) else f"TOKENWAY_{field.upper()}"] = str(value)
    return env


class Server:
    """One server process, the leader of its own process group: `url` once it answers; `stop(signal)`
    to stop it as an operator would."""

    def __init__(self, settings: Settings, log: Path, **overrides: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if not settings.public_url:  # as `make run` does: the links it hands out point at it
            overrides.setdefault("public_url", self.url)
        self.log = log
        with log.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "chalicelib.api.server", "--port", str(self.port)],
                cwd=ROOT, env=environment(settings, **overrides), stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, self.output()
            assert time.monotonic() < deadline, self.output()
            try:
                httpx.get(self.url + "/v1/models", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)

    def output(self) -> str:
        return self.log.read_text()

    def signal_group(self, sig: int) -> None:
        """Send `sig` to every process of the server's group (ProcessLookupError once none is left)."""
        os.killpg(self.process.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, *, group: bool = False, timeout_s: float = 60) -> float:
        """Send `sig` to the server (or, as a terminal's Ctrl-C does, to every process of its group: the
        workers too) and wait for it to exit; the seconds it took."""
        started = time.monotonic()
        if self.process.poll() is None:
            if group:
                self.signal_group(sig)
            else:
                self.process.send_signal(sig)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the server did not stop within {timeout_s:g} s:\n{self.output()}") from None
        return time.monotonic() - started
