"""Usage events as JSON lines in local files, laid out as the usage bucket is (one machine; AWS: Firehose).

    <directory>/usage/year=YYYY/month=MM/day=DD/usage-<host>-<pid>-<YYYY-MM-DD-HH-MM-SS>-<random>.jsonl

The partitions are the Firehose stream's prefix in infra/template.yaml, so one query reads the data
directory and the bucket alike. They follow each event's own `time` (Firehose uses the moment it receives
the record, a few milliseconds later). The lines are `UsageEvent.to_json_line()`, as Firehose gets them.

Each process writes files of its own, named by host, pid, the time the file was opened and a random
suffix (as Firehose names its objects), and never opens another's: processes need no lock between them;
the threads of one process share one. A file's life:

    opened (a new name, O_EXCL) → one os.write per event, a whole line → retired when the next line would
    pass max_bytes, or a third hour's file opens and it is the oldest → fsync, closed (also on close())

Nothing is buffered in the process: a line is in the file when put() returns, so a crash of the process
loses nothing. A crash of the machine loses what the system had not yet put on disk (files are synced when
retired), and may leave a partial last line, which `read_usage_events` skips. The file of the previous hour
stays open beside the current one, for events that settle just after the hour turns. A write that fails
(disk full) raises StorageError after cutting the file back to its whole lines; the next event tries again.
The caller (usage/events.py) logs the event it could not write, whole, and never fails the request for it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chalicelib.core.domain import UsageEvent
from chalicelib.core.errors import StorageError

log = logging.getLogger(__name__)

USAGE_PREFIX = "usage"  # the Firehose stream's prefix in the bucket (infra/template.yaml)
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
_OPEN_HOURS = 2  # the current hour and the one before

Hour = tuple[int, int, int, int]


@dataclass
class _File:
    hour: Hour
    path: Path
    fd: int
    size: int = 0


class LocalUsageSink:
    """Appends each event as one JSON line to this process's file for the event's hour."""

    def __init__(self, directory: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES,
                 clock: Callable[[], float] = time.time, host: str | None = None) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self._root = Path(directory) / USAGE_PREFIX
        self._max_bytes = max_bytes
        self._clock = clock
        self._host = re.sub(r"[^A-Za-z0-9.-]+", "_", host or socket.gethostname())[:63] or "host"
        self._lock = threading.Lock()
        self._files: dict[Hour, _File] = {}
        _SINKS.add(self)

    def put(self, event: UsageEvent) -> None:
        """Append the event as one line to this process's file for its hour (StorageError if it cannot)."""
        line = event.to_json_line()
        hour = _hour_of(event.time)
        with self._lock:
            file = self._files.get(hour)
            if file is not None and file.size and file.size + len(line) > self._max_bytes:
                self._retire(file)
                file = None
            if file is None:
                file = self._files[hour] = self._open(hour)
            self._write(file, line)
            while len(self._files) > _OPEN_HOURS:
                self._retire(self._files[min(self._files)])

    def close(self) -> None:
        """Sync and close every open file; an event put later opens a new one."""
        with self._lock:
            for file in list(self._files.values()):
                self._retire(file)

    def _open(self, hour: Hour) -> _File:
        year, month, day, _ = hour
        partition = self._root / f"year={year:04d}" / f"month={month:02d}" / f"day={day:02d}"
        opened = datetime.fromtimestamp(self._clock(), tz=UTC).strftime("%Y-%m-%d-%H-%M-%S")
        path = partition / f"usage-{self._host}-{os.getpid()}-{opened}-{secrets.token_hex(4)}.jsonl"
        try:
            partition.mkdir(parents=True, exist_ok=True)
            # O_EXCL: a file is only ever this process's; O_APPEND: each write lands whole at the end.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StorageError(f"usage file {path} could not be opened: {exc.strerror}") from exc
        return _File(hour, path, fd)

    def _write(self, file: _File, line: bytes) -> None:
        try:
            written = os.write(file.fd, line)  # one write of the whole line
        except OSError as exc:
            self._undo(file)
            raise StorageError(f"usage event not written to {file.path}: {exc.strerror}") from exc
        if written != len(line):
            self._undo(file)
            raise StorageError(f"usage event cut short in {file.path}: {written} of {len(line)} bytes written")
        file.size += written

    def _retire(self, file: _File) -> None:
        del self._files[file.hour]
        try:
            os.fsync(file.fd)
        except OSError as exc:  # the lines are written; only their durability past a machine crash is in doubt
            log.warning("usage file %s could not be synced: %s", file.path, exc.strerror)
        finally:
            os.close(file.fd)

    def _undo(self, file: _File) -> None:
        # Cut the file back to its whole lines (freeing space), and drop a file left empty. If even that
        # fails, write nothing more to it: a partial line can then only be its last, which readers skip.
        try:
            os.ftruncate(file.fd, file.size)
            if file.size:
                return
            os.unlink(file.path)
        except OSError as exc:
            log.warning("usage file %s could not be cut back to whole lines (its last may be partial): %s",
                        file.path, exc.strerror)
        del self._files[file.hour]
        os.close(file.fd)

    def _after_fork(self) -> None:
        # The child has copies of the parent's descriptors and possibly a lock held by a parent's thread:
        # start afresh, with files named by the child's own pid.
        self._lock = threading.Lock()
        for file in self._files.values():
            os.close(file.fd)  # the child's copy; the parent's file stays open
        self._files = {}


_SINKS: weakref.WeakSet[LocalUsageSink] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for sink in list(_SINKS):
        sink._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _hour_of(moment: str) -> Hour:
    parsed = datetime.fromisoformat(moment)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # events are written in UTC
    parsed = parsed.astimezone(UTC)
    return parsed.year, parsed.month, parsed.day, parsed.hour


def usage_files(directory: str | os.PathLike[str]) -> list[Path]:
    """Every usage file under `directory`, in partition order."""
    return sorted((Path(directory) / USAGE_PREFIX).glob("year=*/month=*/day=*/*.jsonl"))


def read_usage_events(directory: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Every event in the usage files under `directory`; a file's unfinished last line is skipped."""
    for path in usage_files(directory):
        data = path.read_bytes()
        complete = data[:data.rfind(b"\n") + 1]  # past the last newline: a line still being written, or cut
        for line in complete.splitlines():
            if line:
                yield json.loads(line)
