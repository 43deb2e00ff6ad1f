"""Making an account an operator of the console: the first admin of a new stage, or another one.

    email ──► no account ─────► create it (as an operator-created account: no password) ─┐
          ├─► active account ─────────────────────────────────────────────────────────────┤
          │                                                              role → admin ◄────┘
          │                                                                  │
          │                                                                  ▼
          │                                         a new set-password link (earlier ones stop)
          └─► disabled account: refused (409 `account_disabled`); nothing changes

Safe to run again: an account that is already an admin stays one and gets a new link; one made by
a run that stopped half-way is found by its email and finished. Two runs at once for a new email
both end on the one account: the second's create finds the email taken and promotes that account.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field, StrictStr

from chalicelib.admin.operations import AccountChanges, Admin
from chalicelib.core.domain import Account
from chalicelib.core.errors import Conflict, EmailTaken
from chalicelib.identity.accounts import MAX_INPUT_LENGTH, Accounts, Command, NewAccount, valid_email
from chalicelib.identity.password_links import IssuedLink, PasswordLinks


class AdminGrant(Command):
    """The account, by its email, to make an admin."""

    email: StrictStr = Field(max_length=MAX_INPUT_LENGTH)


@dataclass(frozen=True)
class GrantedAdmin:
    account: Account
    created: bool  # the account did not exist before
    promoted: bool  # the account was not an admin before
    link: IssuedLink  # for the admin to set a password with


def grant_admin(command: AdminGrant, *, accounts: Accounts, admin: Admin, links: PasswordLinks) -> GrantedAdmin:
    """The account with `command.email`, created if need be, with the admin role and a new set-password link."""
    email = valid_email(command.email)
    account = accounts.find(email)
    created = False
    if account is None:
        try:
            account = accounts.create(NewAccount(email=email))
            created = True
        except EmailTaken:
            # Created by a run beside this one since the lookup: that account is the one to promote.
            account = accounts.find(email)
            if account is None:
                raise
    if account.status != "active":
        raise Conflict(f"The account {account.account_id} with the email {email} is disabled; enable it first "
                       f"(`tokenway account enable {account.account_id}`), then run this again.", param="email",
                       code="account_disabled")
    promoted = account.role != "admin"
    if promoted:
        account = admin.change_account(account.account_id, AccountChanges(role="admin"))
    return GrantedAdmin(account=account, created=created, promoted=promoted, link=links.issue(account.account_id))
