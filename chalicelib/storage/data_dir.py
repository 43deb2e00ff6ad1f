"""The one-machine data directory: everything the gateway keeps on one machine, in one place.

    <path>/                  mode 0700, created if missing
      tokenway.db            the tables (SQLite)
      usage/year=…/…         usage events as JSON lines (local_usage_sink.py)
      secrets.key            the key that seals channel keys (secrets/local.py)
      admin_token            the operator token, made once (mode 0600) unless one is configured
      outbox/…               emails the gateway would send, one file each (providers/outbox_mail.py)
      gateway.lock           locked (flock) by the running gateway; says which process holds it

Opening refuses, with one line that names the path and the fix, a directory that is not one, cannot be
created, is read-only, is full (a probe file cannot be written), or is held by another running gateway:
the gateway stops before it writes anything there.

One gateway, several processes: its first process (the launcher, or the server's master) opens the
directory with `exclusive=True` and holds the lock for its life; the worker processes it starts open it
with `exclusive=False`, which takes no lock but checks that a gateway holds it. The lock belongs to the
open lock file, so workers forked with the descriptor keep it held; the kernel drops it when the last of
them exits, whatever the way: a crashed gateway leaves no stale lock behind.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import secrets
import socket
from datetime import UTC, datetime
from pathlib import Path

from chalicelib.core.errors import DataDirectoryUnusable
from chalicelib.storage.private_file import read_private

log = logging.getLogger(__name__)

DATABASE_FILE = "tokenway.db"
SECRETS_KEY_FILE = "secrets.key"
ADMIN_TOKEN_FILE = "admin_token"
LOCK_FILE = "gateway.lock"
OUTBOX_DIR = "outbox"
PROBE_BYTES = 64 * 1024

_ELSEWHERE = "set TOKENWAY_DATA_DIR to another directory"


class DataDirectory:
    """A data directory checked usable, and locked for this gateway (see the module docstring)."""

    def __init__(self, path: Path, lock_fd: int | None) -> None:
        self.path = path
        self._lock_fd = lock_fd

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, exclusive: bool = True,
             probe_bytes: int = PROBE_BYTES) -> DataDirectory:
        """Create (0700) and check the directory; with `exclusive`, lock it for this gateway's life."""
        path = Path(path).expanduser().absolute()
        _create(path)
        if exclusive:
            _probe(path, probe_bytes)  # once per gateway: its workers share the directory it checked
            return cls(path, _lock(path))
        _check_held(path)
        return cls(path, None)

    @property
    def database_path(self) -> Path:
        return self.path / DATABASE_FILE

    @property
    def secrets_key_path(self) -> Path:
        return self.path / SECRETS_KEY_FILE

    @property
    def admin_token_path(self) -> Path:
        return self.path / ADMIN_TOKEN_FILE

    @property
    def lock_fd(self) -> int | None:
        """The descriptor holding the lock (None for a worker): pass it to a server run as a child process."""
        return self._lock_fd

    def admin_token(self, configured: str | None = None) -> str:
        """The operator token: `configured` if given (never written), else the one kept in `admin_token`."""
        if configured:
            return configured
        path = self.admin_token_path
        token = read_private(path, lambda: (secrets.token_urlsafe(32) + "\n").encode(),
                             made=f"made a new admin token in {path}").decode()
        if not token:
            raise DataDirectoryUnusable(f"the admin token file {path} is empty: delete it to have a new token made, "
                                        "or set TOKENWAY_ADMIN_TOKEN")
        return token

    def close(self) -> None:
        """Release the lock (a worker's close does nothing)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the last descriptor of the lock file releases the flock
            self._lock_fd = None

    def __enter__(self) -> DataDirectory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _create(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise DataDirectoryUnusable(f"data directory {path} is a file, not a directory: move the file away or "
                                    f"{_ELSEWHERE}")
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise _refusal(path, exc, "cannot be created") from exc


def _probe(path: Path, probe_bytes: int) -> None:
    # Writing (and syncing) real bytes is the one check a read-only mount, a full disk, a quota and
    # missing permissions all fail alike, whoever runs the gateway (permission bits do not stop root).
    probe = path / f".probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise _refusal(path, exc, "cannot be written", probe_bytes) from exc
    try:
        block = b"\0" * min(probe_bytes, 1 << 16)
        left = probe_bytes
        while left:
            left -= os.write(fd, block[:left])
        os.fsync(fd)
    except OSError as exc:
        raise _refusal(path, exc, "cannot be written", probe_bytes) from exc
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)


def _lock(path: Path) -> int:
    lock_path = path / LOCK_FILE
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise _refusal(path, exc, "cannot be locked") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise DataDirectoryUnusable(f"data directory {path} is in use by another running gateway{holder}: "
                                    f"stop that gateway, or {_ELSEWHERE}") from None
    # Who holds it, for the message another gateway gets; the lock itself is the flock, not this text.
    note = (f"pid={os.getpid()} host={socket.gethostname()} "
            f"since={datetime.now(UTC).isoformat(timespec='seconds')}\n").encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, note, 0)
    return fd


def _check_held(path: Path) -> None:
    try:
        fd = os.open(path / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = None
    if fd is not None:
        try:
            # A shared lock is refused while a gateway holds the exclusive one: that refusal is the answer wanted.
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        finally:
            os.close(fd)
    raise DataDirectoryUnusable(f"data directory {path} is not locked by a running gateway: a worker process "
                                "opens it only under the gateway process that locked it (exclusive=True)")


def _holder(fd: int) -> str:
    try:
        note = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""
    return f" ({note})" if note else ""


def _refusal(path: Path, exc: OSError, what: str, probe_bytes: int = 0) -> DataDirectoryUnusable:
    if exc.errno == errno.EROFS:
        reason = f"is on a read-only file system: remount it read-write, or {_ELSEWHERE}"
    elif exc.errno in (errno.ENOSPC, errno.EDQUOT):
        size = f" (a {probe_bytes // 1024} KiB probe file did not fit)" if probe_bytes else ""
        reason = f"is full{size}: free space on its file system, or {_ELSEWHERE}"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        reason = f"is not writable by this user (uid {os.getuid()}): give it to that user, or {_ELSEWHERE}"
    elif exc.errno == errno.ENOTDIR:
        reason = f"is under a file, not a directory: {_ELSEWHERE}"
    else:
        reason = f"{what}: {exc.strerror}: {_ELSEWHERE}"
    return DataDirectoryUnusable(f"data directory {path} {reason}")
