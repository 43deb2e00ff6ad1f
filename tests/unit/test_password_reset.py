"""Forgotten passwords as a service, over SQLite storage, a test clock and a mail service that keeps
what it is given: who gets a link, the limits and their windows, and the answer's least time."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import pytest

from chalicelib.core.errors import InvalidRequest, MailNotSent
from chalicelib.identity.password_reset import ForgotPassword, PasswordResets
from chalicelib.providers.mail_port import MailMessage
from tests.unit.console_world import OWNER_IP, ConsoleWorld

CONSOLE = "https://console.example.com"
NEW_PASSWORD = "battery staple 7"
RESET_TTL_S = 1800


@dataclass
class Mailbox:
    """A mail service: keeps each message, or refuses them all."""

    sent: list[MailMessage] = field(default_factory=list)
    refuse: bool = False

    def send(self, message: MailMessage) -> None:
        if self.refuse:
            raise MailNotSent("SES refused the message (Throttling)")
        self.sent.append(message)


@dataclass
class Stopwatch:
    """A monotonic clock that mailing moves on, and a sleep that records what it was asked for."""

    now_s: float = 100.0
    slept: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now_s += seconds


@pytest.fixture
def world(tmp_path) -> ConsoleWorld:
    return ConsoleWorld(tmp_path)


def resets(world: ConsoleWorld, mailbox: Mailbox, watch: Stopwatch | None = None, floor_s: float = 0.0,
           console_url: str | None = CONSOLE + "/"):
    watch = watch or Stopwatch()
    return PasswordResets(world.accounts_repo, world.links, world.limiter, mailbox, console_url=console_url,
                          ttl_s=RESET_TTL_S, floor_s=floor_s, monotonic=lambda: watch.now_s, sleep=watch.sleep)


def forgot(service: PasswordResets, email: str, ip: str | None = OWNER_IP) -> None:
    service.forgot(ForgotPassword(email=email), ip)


def token_of(message: MailMessage) -> str:
    [token] = set(re.findall(rf"{re.escape(CONSOLE)}/#/set-password\?token=(\S+)", message.text))
    return token


def test_the_mailed_link_sets_the_password_once_within_its_ttl(world):
    mailbox = Mailbox()
    world.signup("alice@example.com")
    forgot(resets(world, mailbox), "  Alice@Example.com ")
    [message] = mailbox.sent
    assert message.to == "alice@example.com"
    assert "within 30 minutes" in message.text and "30 分钟内" in message.text
    token = token_of(message)
    assert token in message.html and token not in repr(message)

    world.time_ms += RESET_TTL_S * 1000 - 1
    world.set_password(token, NEW_PASSWORD)
    assert world.login("alice@example.com", NEW_PASSWORD).account.email == "alice@example.com"


def test_without_a_configured_console_address_nothing_is_sent_and_the_log_says_why(world, caplog):
    # The request's Host is never the link's base: its client chooses it.
    mailbox = Mailbox()
    world.signup("alice@example.com")
    with caplog.at_level(logging.WARNING, logger="chalicelib.identity.password_reset"):
        forgot(resets(world, mailbox, console_url=None), "alice@example.com")
    assert mailbox.sent == []
    assert "set TOKENWAY_PUBLIC_URL" in caplog.text


def test_a_link_past_its_ttl_is_refused(world):
    mailbox = Mailbox()
    world.signup("alice@example.com")
    forgot(resets(world, mailbox), "alice@example.com")
    world.time_ms += RESET_TTL_S * 1000
    with pytest.raises(InvalidRequest) as refused:
        world.set_password(token_of(mailbox.sent[0]), NEW_PASSWORD)
    assert refused.value.code == "invalid_token" and token_of(mailbox.sent[0]) not in refused.value.message


def test_a_reset_replaces_the_operators_unused_link(world):
    mailbox = Mailbox()
    account_id = world.create("ops@example.com")
    operator = world.links.issue(account_id)
    forgot(resets(world, mailbox), "ops@example.com")
    with pytest.raises(InvalidRequest):
        world.set_password(operator.token, NEW_PASSWORD)
    world.set_password(token_of(mailbox.sent[0]), NEW_PASSWORD)


def test_no_mail_for_an_unknown_email_or_a_disabled_account(world):
    mailbox = Mailbox()
    account_id = world.signup("alice@example.com")
    world.accounts_repo.set_status(account_id, "disabled")
    service = resets(world, mailbox)
    forgot(service, "nobody@example.com")
    forgot(service, "alice@example.com")
    assert mailbox.sent == []
    world.accounts_repo.set_status(account_id, "active")
    forgot(service, "alice@example.com")
    assert [message.to for message in mailbox.sent] == ["alice@example.com"]


def test_the_limits_per_email_and_per_address_start_again_with_the_next_window(world):
    mailbox = Mailbox()
    service = resets(world, mailbox)
    world.signup("alice@example.com")
    world.signup("bob@example.com")
    for n in range(5):
        forgot(service, "alice@example.com", ip=f"198.51.100.{n}")
    assert len(mailbox.sent) == 3  # per email
    for n in range(10):
        forgot(service, f"someone{n}@example.com", ip="203.0.113.50")
    forgot(service, "bob@example.com", ip="203.0.113.50")
    assert len(mailbox.sent) == 3  # per address: bob's email is fresh, the address is not
    forgot(service, "bob@example.com", ip="203.0.113.51")
    assert [message.to for message in mailbox.sent][-1] == "bob@example.com"

    world.time_ms += 3600 * 1000
    forgot(service, "alice@example.com", ip="203.0.113.50")
    assert len(mailbox.sent) == 5 and mailbox.sent[-1].to == "alice@example.com"


def test_every_answer_waits_for_the_floor_and_a_slow_mail_waits_no_longer(world):
    watch = Stopwatch()
    mailbox = Mailbox()
    world.signup("alice@example.com")
    service = resets(world, mailbox, watch, floor_s=0.5)
    forgot(service, "nobody@example.com")
    assert watch.slept == [0.5]

    class SlowMailbox(Mailbox):
        def send(self, message: MailMessage) -> None:
            watch.now_s += 0.8
            super().send(message)

    slow = resets(world, SlowMailbox(), watch, floor_s=0.5)
    forgot(slow, "alice@example.com")
    assert watch.slept == [0.5]


def test_a_mail_service_that_fails_is_logged_and_not_told(world, caplog):
    world.signup("alice@example.com")
    forgot(resets(world, Mailbox(refuse=True)), "alice@example.com")
    [line] = [record.getMessage() for record in caplog.records if "not sent" in record.getMessage()]
    assert "Throttling" in line and "alice@example.com" not in line


def test_what_is_no_email_address_is_400(world):
    with pytest.raises(InvalidRequest) as refused:
        forgot(resets(world, Mailbox()), "not an address")
    assert (refused.value.code, refused.value.param) == ("invalid_email", "email")
