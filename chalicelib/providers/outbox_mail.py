"""The one-machine mode's mail: each message written to the server log and kept as a file.

    <data_dir>/outbox/                       mode 0700, made with the first message
      20261127T065805123456Z-1f2e3d4c5b6a.eml   one RFC 5322 message (mail_port.rfc5322), mode 0600

Nothing leaves the machine: the operator reads the log or the file and forwards the message (an
.eml file opens in any mail program). The log line and the file carry the whole message, one-time
links included; both are on the operator's own machine, the file readable by its owner alone.
Names sort by time; the random part keeps two messages of one microsecond apart.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from email import policy
from pathlib import Path

from chalicelib.core.errors import MailNotSent
from chalicelib.providers.mail_port import MailMessage, rfc5322

log = logging.getLogger(__name__)

DEFAULT_SENDER = "Tokenway <tokenway@localhost>"


class OutboxMail:
    """Writes each message to the log (INFO) and to a new file in `directory`."""

    def __init__(self, directory: Path, sender: str = "", *,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._directory = directory
        self._sender = sender or DEFAULT_SENDER
        self._now = now

    def send(self, message: MailMessage) -> None:
        now = self._now()
        raw = rfc5322(message, sender=self._sender, now=now).as_bytes(policy=policy.SMTP)
        path = self._directory / f"{now.astimezone(UTC):%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(6)}.eml"
        try:
            self._directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            _write_private(path, raw)
        except OSError as exc:
            raise MailNotSent(f"the outbox {self._directory} cannot be written: {exc.strerror}") from exc
        log.info("mail to %s, kept in %s\nSubject: %s\n\n%s", message.to, path, message.subject, message.text)


def _write_private(path: Path, content: bytes) -> None:
    """Write `content` to the new file `path`, mode 0600 from its first byte, published whole: it is
    written under a hidden name and renamed, so a reader of the outbox never sees half a message."""
    staging = path.with_name(f".{path.name}")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o600)  # whatever the umask
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.rename(staging, path)
    finally:
        staging.unlink(missing_ok=True)
