"""Run Python over a small file system of its own: a read-only or a full disk, without root and without leaks.

Permission bits do not stop root (and the tests may run as root), so a read-only or full directory is made
for real: a tmpfs mounted in a user and mount namespace of the child process alone. The mount is seen by
no other process and vanishes with the child.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_over_own_mount(mountpoint: Path, python: str, *, size_kib: int = 64, read_only: bool = False,
                       setup: str = "") -> subprocess.CompletedProcess[str]:
    """Mount a `size_kib` tmpfs on `mountpoint`, run `setup` (shell) in it, then `python` (ro: after setup)."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    place = shlex.quote(str(mountpoint))
    script = "\n".join([
        "set -e",
        f"mount -t tmpfs -o size={size_kib}k,mode=0700 tmpfs {place}",
        f"cd {place}",
        setup,
        f"mount -o remount,ro {place}" if read_only else "",
        f"cd {shlex.quote(str(ROOT))}",
        f"exec {shlex.quote(sys.executable)} -c {shlex.quote(python)}",
    ])
    return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60)
