"""A forgotten password over HTTP, on the one-machine backend: the reset email lands in the server log
and the outbox of the data directory, its link sets a new password once, before it expires; the
answer is the same for any email, and the requests are limited per email and per address."""

from __future__ import annotations

import hashlib
import logging
import re
import stat
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from email import message_from_bytes, message_from_string, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from chalicelib import deps
from tests.api.conftest import Stack, in_process
from tests.api.servers import Server
from tests.api.test_console_auth import NEW_PASSWORD, PASSWORD, assert_error

FORGOT = "/api/auth/password/forgot"
PUBLIC_URL = "https://console.example.com"
LINK = re.compile(r"(\S+)/#/set-password\?token=([A-Za-z0-9_.-]+)")


def one_machine(stack: Stack, data_dir: Path, **settings) -> Stack:
    """The app in process, on SQLite storage in `data_dir`, with `settings` changed."""
    changed = stack.settings.model_copy(update={"storage": "sqlite", "data_dir": data_dir, "kms_key_id": None,
                                                "password_reset_floor_ms": 0, "public_url": PUBLIC_URL,
                                                **settings})
    deps.use_gateway(deps.build_gateway(changed))
    return replace(stack, settings=changed)


@pytest.fixture
def gateway_on(stack, tmp_path) -> Iterator:
    """Switch the in-process app to a SQLite gateway of its own: `gateway_on(**settings)`."""
    previous = deps.get_gateway()
    made = iter(range(100))
    try:
        yield lambda **settings: one_machine(stack, tmp_path / f"data{next(made)}", **settings)
    finally:
        deps.use_gateway(previous)


@pytest.fixture
def local(gateway_on) -> Stack:
    return gateway_on(public_url=PUBLIC_URL)


def new_email() -> str:
    return f"{uuid.uuid4().hex[:10]}@example.com"


def signup(http: httpx.Client, email: str | None = None) -> str:
    email = email or new_email()
    response = http.post("/api/auth/signup", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return email


def forgot(http: httpx.Client, email: str) -> None:
    """Ask for a reset email; the answer is always the same."""
    response = http.post(FORGOT, json={"email": email})
    assert (response.status_code, response.json()) == (202, {"status": "sent"}), response.text


def outbox(stack: Stack) -> list[Path]:
    directory = stack.settings.outbox_path
    return sorted(directory.iterdir()) if directory.exists() else []


def read_mail(path: Path) -> EmailMessage:
    return message_from_bytes(path.read_bytes(), policy=policy.default)


def link_in(mail: EmailMessage) -> tuple[str, str]:
    """(base URL, token) of the one link the text part carries (twice: English, then Chinese)."""
    text = mail.get_body(("plain",)).get_content()
    links = set(LINK.findall(text))
    assert len(links) == 1, text
    return links.pop()


def set_password(http: httpx.Client, token: str, password: str = NEW_PASSWORD) -> httpx.Response:
    return http.post("/api/auth/password/set", json={"token": token, "password": password})


def login(http: httpx.Client, email: str, password: str) -> httpx.Response:
    return http.post("/api/auth/login", json={"email": email, "password": password})


def test_a_forgotten_password_is_reset_with_the_link_the_one_machine_server_writes_to_its_log_and_outbox(
        stack, tmp_path):
    settings = stack.settings.model_copy(update={"storage": "sqlite", "data_dir": tmp_path / "data",
                                                 "kms_key_id": None, "mail_from": "Tokenway <help@example.com>"})
    server = Server(settings, tmp_path / "server.log")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            email = signup(http)
            session = login(http, email, PASSWORD).json()["token"]
            forgot(http, email)

            [path] = outbox(replace(stack, settings=settings))
            assert re.fullmatch(r"\d{8}T\d{12}Z-[0-9a-f]{12}\.eml", path.name)
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
            mail = read_mail(path)
            assert (mail["To"], mail["From"]) == (email, "Tokenway <help@example.com>")
            assert mail["Subject"] == "Reset your Tokenway password / 重置 Tokenway 密码"
            text = mail.get_body(("plain",)).get_content()
            assert text.index("reset the password") < text.index("重置")  # English first
            assert "within 60 minutes" in text and "60 分钟内" in text
            base, token = link_in(mail)
            assert base == server.url  # no public URL set: the address the request came to
            assert f'href="{base}/#/set-password?token={token}"' in mail.get_body(("html",)).get_content()
            # The operator reads the whole message in the server's log too.
            logged = server.output()
            assert email in logged and mail["Subject"] in logged and token in logged

            assert set_password(http, token).status_code == 204
            assert_error(http.get("/api/auth/me", headers={"Authorization": f"Bearer {session}"}), 401,
                         "invalid_session")
            assert_error(login(http, email, PASSWORD), 401, "invalid_credentials")
            assert login(http, email, NEW_PASSWORD).status_code == 200
            # Once only.
            assert_error(set_password(http, token, "yet another one 9"), 400, "invalid_token", param="token")
            assert login(http, email, NEW_PASSWORD).status_code == 200
    finally:
        server.stop()
    assert "Traceback" not in server.output(), server.output()


def test_the_link_starts_with_the_public_url_and_a_newer_one_replaces_it(local):
    email = signup(local.http)
    forgot(local.http, email)
    forgot(local.http, email)
    first, second = (link_in(read_mail(path)) for path in outbox(local))
    assert first[0] == second[0] == PUBLIC_URL and first[1] != second[1]

    assert_error(set_password(local.http, first[1]), 400, "invalid_token", param="token")
    assert set_password(local.http, second[1]).status_code == 204
    assert login(local.http, email, NEW_PASSWORD).status_code == 200


def test_an_unknown_email_and_a_disabled_account_get_the_same_answer_and_no_mail(local):
    forgot(local.http, new_email())
    email = signup(local.http)
    [account] = local.admin("GET", f"/admin/accounts?search={email}")["data"]
    local.admin("PATCH", f"/admin/accounts/{account['account_id']}", {"status": "disabled"})
    forgot(local.http, email)
    assert outbox(local) == []


def test_an_expired_link_is_refused(gateway_on):
    local = gateway_on(password_reset_ttl_s=1)
    email = signup(local.http)
    forgot(local.http, email)
    [path] = outbox(local)
    _, token = link_in(read_mail(path))
    assert "within 1 minute:" in read_mail(path).get_body(("plain",)).get_content()
    time.sleep(1.1)
    assert_error(set_password(local.http, token), 400, "invalid_token", param="token")
    assert login(local.http, email, PASSWORD).status_code == 200  # nothing changed


def test_past_the_limit_per_email_the_answer_is_the_same_and_nothing_is_sent(gateway_on, caplog):
    local = gateway_on(password_resets_per_email=2)
    email = signup(local.http)
    with caplog.at_level(logging.WARNING, logger="chalicelib.identity.password_reset"):
        for _ in range(4):
            forgot(local.http, email)
    assert len(outbox(local)) == 2
    refusals = [record.getMessage() for record in caplog.records if "not sent" in record.getMessage()]
    assert len(refusals) == 2
    email_hash = hashlib.sha256(email.encode()).hexdigest()[:16]
    assert all("per email" in line and email_hash in line and email not in line for line in refusals)
    # Another email from the same address is not held back by this one's limit.
    forgot(local.http, signup(local.http))
    assert len(outbox(local)) == 3


def test_past_the_limit_per_address_the_answer_is_the_same_and_nothing_is_sent(gateway_on):
    from app import app

    local = gateway_on(password_resets_per_ip=3)
    emails = [signup(local.http) for _ in range(5)]
    with in_process(app, client_ip="198.51.100.7") as one, in_process(app, client_ip="198.51.100.8") as other:
        for email in emails[:4]:
            forgot(one, email)
        assert len(outbox(local)) == 3
        forgot(other, emails[4])  # another address has limits of its own
        assert len(outbox(local)) == 4
        assert read_mail(outbox(local)[-1])["To"] == emails[4]


def test_an_answer_takes_the_same_least_time_whether_an_account_has_the_email_or_not(gateway_on):
    local = gateway_on(password_reset_floor_ms=300)
    email = signup(local.http)
    for target in (email, new_email()):
        started = time.monotonic()
        forgot(local.http, target)
        assert time.monotonic() - started >= 0.3
    assert len(outbox(local)) == 1


@pytest.mark.parametrize("body, code, param", [
    ({}, "missing_required_parameter", "email"),
    ({"email": 5}, "invalid_value", "email"),
    ({"email": "someone"}, "invalid_email", "email"),
    ({"email": "a@example.com", "password": "x"}, "invalid_value", "password"),
    ({"email": "a" * 1025}, "invalid_value", "email"),
])
def test_a_malformed_request_is_400_naming_the_field(local, body, code, param):
    assert_error(local.http.post(FORGOT, json=body), 400, code, param=param)
    assert outbox(local) == []


def test_a_body_that_is_not_json_is_refused(local):
    not_json = local.http.post(FORGOT, content=b"{email", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400 and set(not_json.json()["error"]) == {"message", "type", "param", "code"}
    assert_error(local.http.post(FORGOT, data={"email": "a@example.com"}), 415, "unsupported_media_type")


def test_on_aws_the_reset_email_goes_through_ses_from_the_configured_sender(stack):
    """The DynamoDB backend, against the emulator's SES, which keeps what it accepted."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    stack.aws("sesv2").create_email_identity(EmailIdentity="mail.example.com")
    sent = ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages
    before = len(sent)
    previous = deps.get_gateway()
    settings = stack.settings.model_copy(update={"mail_from": "Tokenway <no-reply@mail.example.com>",
                                                 "public_url": PUBLIC_URL, "password_reset_floor_ms": 0})
    deps.use_gateway(deps.build_gateway(settings))
    try:
        email = signup(stack.http)
        forgot(stack.http, new_email())
        forgot(stack.http, email)
        [message] = sent[before:]
        mail = message_from_string(message.raw_data, policy=policy.default)
        assert (mail["From"], mail["To"]) == ("Tokenway <no-reply@mail.example.com>", email)
        base, token = link_in(mail)
        assert base == PUBLIC_URL
        assert set_password(stack.http, token).status_code == 204
        assert login(stack.http, email, NEW_PASSWORD).status_code == 200
    finally:
        deps.use_gateway(previous)


def test_on_aws_a_mail_service_that_refuses_changes_no_answer(stack, caplog):
    """No verified sender: SES refuses, the answer is the same, and the log says why without the email."""
    previous = deps.get_gateway()
    settings = stack.settings.model_copy(update={"mail_from": "someone@unverified.example.net",
                                                 "public_url": PUBLIC_URL, "password_reset_floor_ms": 0})
    deps.use_gateway(deps.build_gateway(settings))
    try:
        email = signup(stack.http)
        with caplog.at_level(logging.WARNING, logger="chalicelib.identity.password_reset"):
            forgot(stack.http, email)
        [line] = [record.getMessage() for record in caplog.records if "not sent" in record.getMessage()]
        assert "SES refused the message (MessageRejected)" in line and email not in line
    finally:
        deps.use_gateway(previous)
