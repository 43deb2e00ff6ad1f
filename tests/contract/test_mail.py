"""The mail port's two adapters: SES (API v2, against moto, whose SES keeps every message it accepted)
and the one-machine outbox (the log and a file in the data directory). Both hand over the same RFC 5322
message: read back, it has the sender, the recipient, the subject, the text and the HTML sent."""

from __future__ import annotations

import logging
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, message_from_string, policy
from email.message import EmailMessage
from itertools import count
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from chalicelib.config import Settings
from chalicelib.core.errors import MailNotSent
from chalicelib.deps import mail_sender
from chalicelib.providers.mail_port import MailMessage, MailSender
from chalicelib.providers.outbox_mail import DEFAULT_SENDER, OutboxMail
from chalicelib.providers.ses_mail import SesMail

REGION = "us-east-1"
SENDER = "Tokenway <no-reply@mail.example.com>"
NOW = datetime(2026, 11, 27, 7, 30, 1, 234567, tzinfo=UTC)
MESSAGE = MailMessage(
    to="alice@example.org",
    subject="Reset your password / 重置密码",
    text="Open https://console.example.com/#/set-password?token=acct_1.abc-_def\n\n请打开上面的链接。\n",
    html='<p><a href="https://console.example.com/#/set-password?token=acct_1.abc-_def">Reset</a> 重置</p>',
)


@dataclass
class Adapter:
    sender: MailSender
    sent: Callable[[], list[EmailMessage]]  # what reached the other side, oldest first
    from_address: str


@dataclass
class EmulatedSes:
    """SES on the tests' AWS emulator (one per process: moto's state is the process's, so these tests
    share it with the others rather than reset it)."""

    session: boto3.session.Session
    endpoint_url: str

    def client(self) -> Any:
        return self.session.client("sesv2", endpoint_url=self.endpoint_url)


@pytest.fixture
def ses(emulator) -> Iterator[EmulatedSes]:
    session = boto3.session.Session(region_name=REGION, aws_access_key_id="testing",
                                    aws_secret_access_key="testing")
    emulated = EmulatedSes(session, emulator.endpoint_url)
    # SES sends only from a verified identity: here the sender's domain.
    identities = emulated.client().list_email_identities()["EmailIdentities"]
    if "mail.example.com" not in {identity["IdentityName"] for identity in identities}:
        emulated.client().create_email_identity(EmailIdentity="mail.example.com")
    ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages.clear()  # what each test sent, from none
    yield emulated


def body(mail: EmailMessage, subtype: str) -> str:
    """A part's text as a mail program shows it (lines as sent end in CRLF)."""
    return mail.get_body((subtype,)).get_content().replace("\r\n", "\n")


def ses_sent() -> list[EmailMessage]:
    messages = ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages
    return [message_from_string(sent.raw_data, policy=policy.default) for sent in messages]


def outbox_sent(directory: Path) -> list[EmailMessage]:
    paths = sorted(directory.iterdir()) if directory.exists() else []
    return [message_from_bytes(path.read_bytes(), policy=policy.default) for path in paths]


@pytest.fixture(params=["ses", "outbox"])
def adapter(request, tmp_path) -> Iterator[Adapter]:
    ticks = (NOW + timedelta(microseconds=n) for n in count())
    clock = lambda: next(ticks)  # noqa: E731
    if request.param == "ses":
        session = request.getfixturevalue("ses")
        yield Adapter(SesMail(session.client(), SENDER, now=clock), ses_sent, SENDER)
    else:
        directory = tmp_path / "outbox"
        yield Adapter(OutboxMail(directory, SENDER, now=clock), lambda: outbox_sent(directory), SENDER)


def test_a_sent_message_arrives_whole(adapter):
    adapter.sender.send(MESSAGE)
    [mail] = adapter.sent()
    assert (mail["From"], mail["To"], mail["Subject"]) == (adapter.from_address, MESSAGE.to, MESSAGE.subject)
    assert mail["Date"].datetime == NOW.replace(microsecond=0)
    assert mail["Message-ID"].endswith("@mail.example.com>")
    assert mail.get_content_type() == "multipart/alternative"
    assert body(mail, "plain") == MESSAGE.text
    assert body(mail, "html").rstrip("\n") == MESSAGE.html
    # 7-bit on the wire, whatever the language: any relay passes it unchanged.
    assert all(part["Content-Transfer-Encoding"] == "quoted-printable" for part in mail.iter_parts())


def test_each_message_is_sent_on_its_own(adapter):
    adapter.sender.send(MESSAGE)
    adapter.sender.send(MailMessage(to="bob@example.org", subject="Second", text="two", html="<p>two</p>"))
    first, second = adapter.sent()
    assert (first["To"], second["To"]) == ("alice@example.org", "bob@example.org")
    assert first["Message-ID"] != second["Message-ID"]


def test_ses_is_told_the_sender_and_the_recipient(ses):
    SesMail(ses.client(), SENDER).send(MESSAGE)
    [sent] = ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages
    assert sent.source == SENDER and MESSAGE.to in sent.destinations


def test_ses_refusing_an_unverified_sender_is_mail_not_sent_naming_its_code_not_the_message(ses):
    with pytest.raises(MailNotSent) as refused:
        SesMail(ses.client(), "someone@unverified.example.net").send(MESSAGE)
    assert refused.value.status == 502 and refused.value.code == "mail_not_sent"
    assert "MessageRejected" in refused.value.message
    assert MESSAGE.to not in refused.value.message and "token" not in refused.value.message
    assert ses_sent() == []


def test_ses_without_a_sender_sends_nothing(ses):
    with pytest.raises(MailNotSent, match="TOKENWAY_MAIL_FROM"):
        SesMail(ses.client(), "").send(MESSAGE)
    assert ses_sent() == []


def test_ses_out_of_reach_is_mail_not_sent():
    client = boto3.client("sesv2", region_name=REGION, endpoint_url="http://127.0.0.1:9",
                          aws_access_key_id="testing", aws_secret_access_key="testing",
                          config=Config(retries={"max_attempts": 1}, connect_timeout=1))
    with pytest.raises(MailNotSent, match="unreachable"):
        SesMail(client, SENDER).send(MESSAGE)


def test_the_dynamodb_backend_mails_through_ses_in_the_configured_region(ses):
    sender = mail_sender(Settings(storage="dynamodb", aws_region=REGION, mail_from=SENDER,
                                  aws_endpoint_url=ses.endpoint_url), ses.session)
    sender.send(MESSAGE)
    [mail] = ses_sent()
    assert mail["From"] == SENDER and body(mail, "plain") == MESSAGE.text


def test_the_sqlite_backend_mails_to_the_outbox_of_its_data_directory(tmp_path):
    settings = Settings(storage="sqlite", data_dir=tmp_path / "data")
    mail_sender(settings, boto3.session.Session(region_name=REGION)).send(MESSAGE)
    [mail] = outbox_sent(tmp_path / "data" / "outbox")
    assert mail["From"] == DEFAULT_SENDER and mail["To"] == MESSAGE.to


def test_the_outbox_keeps_each_message_private_and_names_it_by_time(tmp_path):
    directory = tmp_path / "data" / "outbox"
    OutboxMail(directory, now=lambda: NOW).send(MESSAGE)
    [path] = directory.iterdir()
    assert path.name.startswith("20261127T073001234567Z-") and path.suffix == ".eml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert path.read_bytes().count(b"\r\n") > 10  # RFC 5322 lines end in CRLF


def test_the_outbox_writes_the_whole_message_to_the_log(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="chalicelib.providers.outbox_mail"):
        OutboxMail(tmp_path / "outbox").send(MESSAGE)
    [record] = caplog.records
    [path] = (tmp_path / "outbox").iterdir()
    logged = record.getMessage()
    assert record.levelno == logging.INFO
    assert MESSAGE.to in logged and MESSAGE.subject in logged and MESSAGE.text in logged and str(path) in logged


def test_an_outbox_that_cannot_be_written_is_mail_not_sent(tmp_path):
    blocked = tmp_path / "outbox"
    blocked.write_text("a file where the directory should be")
    with pytest.raises(MailNotSent, match="cannot be written"):
        OutboxMail(blocked).send(MESSAGE)
