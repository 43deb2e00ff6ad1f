"""Forgotten passwords: a one-time set-password link mailed to the account's address.

    forgot(email)    counted first (login_limits.py: per client address, then per email, known or
      │              not); past a limit: nothing sent, a log line naming the limit and the email's
      │              hash, never the email
      ├── no account with the email, or a disabled one: nothing sent
      └── otherwise   a new set-password link (password_links.py) valid for the reset TTL, which
                      replaces the account's earlier unused link; mailed, in English then Simplified
                      Chinese, as `<console>/#/set-password?token=<token>`; a mail service that
                      fails is logged, not told
    every answer     the same (202 `sent`), and given no sooner than the floor after the request
                     came in: neither the answer nor its time tells whether an account has the email
                     (unless mailing takes longer than the floor, as when the mail service is slow)

    the console      the configured address (TOKENWAY_CONSOLE_URL, else TOKENWAY_PUBLIC_URL), never the
                     request's Host, which its client chooses: a stranger's request could otherwise
                     mail the owner a working link to another site. Without one, nothing is sent (and
                     the log says why); `make run` sets the public URL to the address it serves on

    the link         POST /api/auth/password/set with its token and a new password, as an operator's
                     link: once, before it expires; every session of the account ends
"""

from __future__ import annotations

import hashlib
import html
import logging
import time
from collections.abc import Callable

from pydantic import Field, StrictStr

from chalicelib.core.errors import MailNotSent
from chalicelib.identity.accounts import MAX_INPUT_LENGTH, Command, valid_email
from chalicelib.identity.login_limits import LoginLimiter
from chalicelib.identity.password_links import PasswordLinks
from chalicelib.providers.mail_port import MailMessage, MailSender
from chalicelib.storage.ports import AccountRepo

log = logging.getLogger(__name__)



class ForgotPassword(Command):
    email: StrictStr = Field(max_length=MAX_INPUT_LENGTH)


class PasswordResets:
    """Mails set-password links to the owners of accounts who forgot their password."""

    def __init__(self, accounts: AccountRepo, links: PasswordLinks, limiter: LoginLimiter, mail: MailSender, *,
                 console_url: str | None, ttl_s: int, floor_s: float, monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._accounts = accounts
        self._links = links
        self._limiter = limiter
        self._mail = mail
        self._console_url = console_url.rstrip("/") if console_url else None
        self._ttl_s = ttl_s
        self._floor_s = floor_s
        self._monotonic = monotonic
        self._sleep = sleep

    def forgot(self, command: ForgotPassword, client_ip: str | None) -> None:
        """Mail a reset link if an enabled account has the email and no limit is passed; the same
        return, after at least the floor's time, in every case. 400 (`invalid_email`) only for what
        is no email address at all."""
        email = valid_email(command.email)
        started = self._monotonic()
        try:
            self._forgot(email, client_ip)
        finally:
            # Mailing takes time that a refusal does not: every answer waits for the same floor.
            left = self._floor_s - (self._monotonic() - started)
            if left > 0:
                self._sleep(left)

    def _forgot(self, email: str, client_ip: str | None) -> None:
        refused_by = self._limiter.password_reset(email, client_ip)
        if refused_by is not None:
            log.warning("password reset not sent: past the limit per %s (email sha256 %s)", refused_by,
                        hashlib.sha256(email.encode()).hexdigest()[:16])
            return
        account = self._accounts.get_by_email(email)
        if account is None or account.status != "active":
            return
        if self._console_url is None:
            log.warning("password reset for %s not sent: no console address to link to "
                        "(set TOKENWAY_PUBLIC_URL or TOKENWAY_CONSOLE_URL)", account.account_id)
            return
        link = self._links.issue(account.account_id, ttl_s=self._ttl_s, console_url=self._console_url)
        message = reset_message(account.email, link.url, ttl_s=self._ttl_s)
        try:
            self._mail.send(message)
        except MailNotSent as exc:
            log.warning("password reset for %s not sent: %s", account.account_id, exc.message)


def reset_message(to: str, url: str, *, ttl_s: int) -> MailMessage:
    """The reset email, English then Simplified Chinese: accounts carry no language."""
    minutes = max(1, ttl_s // 60)
    unit = "minute" if minutes == 1 else "minutes"
    text = (
        f"Someone asked to reset the password of the Tokenway account {to}.\n"
        f"To choose a new password, open this link within {minutes} {unit}:\n\n"
        f"{url}\n\n"
        "The link works once. If you did not ask for this, ignore this email: your password stays as it is.\n\n"
        "----\n\n"
        f"有人请求重置 Tokenway 账户 {to} 的密码。\n"
        f"请在 {minutes} 分钟内打开以下链接设置新密码：\n\n"
        f"{url}\n\n"
        "该链接只能使用一次。如果这不是您本人的操作，请忽略此邮件，您的密码不会改变。\n"
    )
    link = f'<p><a href="{html.escape(url)}">{html.escape(url)}</a></p>'
    page = (
        '<!doctype html><html><body style="font-family:system-ui,sans-serif">'
        f'<div lang="en"><p>Someone asked to reset the password of the Tokenway account {html.escape(to)}.</p>'
        f"<p>To choose a new password, open this link within {minutes} {unit}:</p>{link}"
        "<p>The link works once. If you did not ask for this, ignore this email: your password stays as it is."
        "</p></div><hr>"
        f'<div lang="zh-CN"><p>有人请求重置 Tokenway 账户 {html.escape(to)} 的密码。</p>'
        f"<p>请在 {minutes} 分钟内打开以下链接设置新密码：</p>{link}"
        "<p>该链接只能使用一次。如果这不是您本人的操作，请忽略此邮件，您的密码不会改变。</p></div>"
        "</body></html>"
    )
    return MailMessage(to=to, subject="Reset your Tokenway password / 重置 Tokenway 密码", text=text, html=page)
