"""Writing a secret file once: private from its first byte, published whole, never replaced."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def publish_once(path: Path, content: bytes) -> bool:
    """Write `content` to `path` with mode 0600 unless the file exists; True if this call wrote it.

    The content goes to a staging file first, synced, then is hard-linked into place: a link
    publishes the whole file at once and refuses to replace one, so of processes starting
    together the first to link wins and the others read its file.
    """
    staging = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        with os.fdopen(os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), "wb") as out:
            os.fchmod(out.fileno(), 0o600)  # whatever the umask
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(staging, path)
        except FileExistsError:
            return False
        return True
    finally:
        staging.unlink(missing_ok=True)


def read_private(path: Path, make: Callable[[], bytes], *, made: str) -> bytes:
    """The content of the secret file `path` (stripped), made with `make()` first if there is none
    (logging `made`); a file others may read is made the owner's alone (0600), with a warning."""
    if not path.exists() and publish_once(path, make()):
        log.warning(made)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        # Whoever reads it holds a secret of the gateway: keep it the owner's alone.
        os.chmod(path, 0o600)
        log.warning("%s was readable by other users (mode %o); made it 0600", path, mode)
    return path.read_bytes().strip()
