"""Login attempt counters in memory, for unit tests."""

from __future__ import annotations

import threading

from chalicelib.storage.ports import LoginAttemptRepo


class InMemoryLoginAttemptRepo(LoginAttemptRepo):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[str, int] = {}

    def add(self, counter_id: str, amount: int, expires_at_s: int) -> int:
        # Counter ids carry their time window, so an expired counter is never read again.
        with self._lock:
            self.counters[counter_id] = self.counters.get(counter_id, 0) + amount
            return self.counters[counter_id]

    def clear(self, counter_id: str) -> None:
        with self._lock:
            self.counters.pop(counter_id, None)
