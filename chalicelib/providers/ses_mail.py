"""Mail through Amazon SES (API v2 SendEmail), beside the DynamoDB backend.

The message goes as raw MIME (mail_port.rfc5322), the same bytes the one-machine outbox keeps.
SES sends only from an identity verified in the account and region (the sender's address or its
domain); the role needs `ses:SendEmail` on that identity. A refusal or an unreachable service
is MailNotSent, naming SES's error code, never the message.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from email import policy
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.core.errors import MailNotSent
from chalicelib.providers.mail_port import MailMessage, rfc5322


class SesMail:
    """Sends each message from `sender` (an address, or `Name <address>`) with an sesv2 client."""

    def __init__(self, client: Any, sender: str, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._client = client
        self._sender = sender
        self._now = now

    def send(self, message: MailMessage) -> None:
        if not self._sender:
            raise MailNotSent("no sender address is configured (TOKENWAY_MAIL_FROM)")
        raw = rfc5322(message, sender=self._sender, now=self._now()).as_bytes(policy=policy.SMTP)
        try:
            self._client.send_email(FromEmailAddress=self._sender, Destination={"ToAddresses": [message.to]},
                                    Content={"Raw": {"Data": raw}})
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "unknown")
            raise MailNotSent(f"SES refused the message ({code})") from exc
        except BotoCoreError as exc:
            raise MailNotSent("SES is unreachable") from exc
