"""Plans (groups): which ones an account may use, and which one a key is priced and limited by.

An account's plans are the ones the operator gave it, and `default` (every model at list
price) unless the operator confined the account to the plans it was given.
"""

from __future__ import annotations

from chalicelib.catalog.catalog import Catalog
from chalicelib.core.domain import DEFAULT_GROUP, Account, ApiKey, Group
from chalicelib.core.errors import PermissionDenied
from chalicelib.storage.ports import AccountRepo


def plan_names(account: Account) -> tuple[str, ...]:
    """The names of the plans the account may use, `default` first when it is one of them."""
    names = ((DEFAULT_GROUP,) if account.default_plan else ()) + account.groups
    return tuple(dict.fromkeys(names))


def plan_not_allowed(name: str) -> PermissionDenied:
    """The refusal of a key whose plan its account no longer has."""
    return PermissionDenied(f"This API key's plan `{name}` is no longer one of its account's plans. "
                            "Give the key another plan in Token Management.", code="group_not_allowed")


class KeyPlans:
    """The plan of a key. The relay takes it from the catalog alone (`of_key`): whether the
    account still has it is a condition of the hold, the one write every request makes, so
    taking a plan away stops its keys at once without another read. Listings read the
    account (`listed`)."""

    def __init__(self, catalog: Catalog, accounts: AccountRepo) -> None:
        self._catalog = catalog
        self._accounts = accounts

    def of_key(self, key: ApiKey) -> Group:
        """The key's plan as the catalog has it; PermissionDenied (403) if it no longer exists."""
        name = key.plan
        group = self._catalog.group(name)
        if group is None:
            raise PermissionDenied(f"This API key's plan `{name}` no longer exists.", code="group_not_found")
        return group

    def of_account_key(self, key: ApiKey) -> Group:
        """The key's plan, if its account still has it; PermissionDenied (403) naming why not."""
        group = self.of_key(key)
        name = group.name
        account = self._accounts.get(key.account_id)
        if account is None or name not in plan_names(account):
            raise plan_not_allowed(name)
        return group

    def listed(self, key: ApiKey) -> Group | None:
        """The key's plan, or None if it may not use one."""
        try:
            return self.of_account_key(key)
        except PermissionDenied:
            return None
