"""Set-password links in memory, for unit tests."""

from __future__ import annotations

import threading

from chalicelib.core.domain import PasswordLink
from chalicelib.storage.ports import PasswordLinkRepo


class InMemoryPasswordLinkRepo(PasswordLinkRepo):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.links: dict[str, PasswordLink] = {}

    def put(self, link: PasswordLink) -> None:
        with self._lock:
            self.links[link.account_id] = link

    def get(self, account_id: str) -> PasswordLink | None:
        return self.links.get(account_id)

    def consume(self, account_id: str, link_hash: str, now_ms: int) -> bool:
        with self._lock:
            link = self.links.get(account_id)
            if link is None or link.link_hash != link_hash or link.expires_at <= now_ms:
                return False
            del self.links[account_id]
            return True
