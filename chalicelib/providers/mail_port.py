"""What the services ask of a mail service: deliver one message to one address.

Two adapters: Amazon SES (ses_mail.py), chosen with the DynamoDB backend, and the outbox
(outbox_mail.py) of the one-machine mode, which writes each message to the server log and to a
file in the data directory for the operator to forward. Both hand over the same RFC 5322
message, built here from the stdlib's `email` package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Protocol


@dataclass(frozen=True)
class MailMessage:
    """One message to one address, as plain text and as HTML saying the same."""

    to: str
    subject: str
    # Left out of reprs: a body may carry a one-time link.
    text: str = field(repr=False)
    html: str = field(repr=False)


class MailSender(Protocol):
    def send(self, message: MailMessage) -> None:
        """Hand the message over for delivery; MailNotSent if it was not accepted."""


def rfc5322(message: MailMessage, *, sender: str, now: datetime) -> EmailMessage:
    """The message as sent: From `sender`, a text part and its HTML alternative, UTF-8."""
    mime = EmailMessage()
    mime["From"] = sender
    mime["To"] = message.to
    mime["Subject"] = message.subject
    mime["Date"] = format_datetime(now)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    mime["Message-ID"] = make_msgid(domain=domain)
    # Quoted-printable keeps lines short and 7-bit for any relay, and the English text readable.
    mime.set_content(message.text, cte="quoted-printable")
    mime.add_alternative(message.html, subtype="html", cte="quoted-printable")
    return mime
