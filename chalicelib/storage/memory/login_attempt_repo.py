"""Login attempt counters and guess locks in memory, for unit tests."""

from __future__ import annotations

import threading

from chalicelib.storage.ports import LoginAttemptRepo


class InMemoryLoginAttemptRepo(LoginAttemptRepo):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[str, int] = {}
        self._expiries: dict[str, int] = {}
        self._locks: dict[str, int] = {}

    def add(self, counter_id: str, amount: int, expires_at_s: int) -> int:
        with self._lock:
            self.counters[counter_id] = self.counters.get(counter_id, 0) + amount
            self._expiries[counter_id] = expires_at_s
            return self.counters[counter_id]

    def count(self, counter_id: str, now_s: int) -> int:
        with self._lock:
            if self._expiries.get(counter_id, 0) <= now_s:
                return 0
            return self.counters.get(counter_id, 0)

    def clear(self, counter_id: str) -> None:
        with self._lock:
            self.counters.pop(counter_id, None)
            self._expiries.pop(counter_id, None)
            self._locks.pop(counter_id, None)

    def claim(self, lock_id: str, now_s: int, until_s: int) -> int:
        with self._lock:
            taken_until = self._locks.get(lock_id, 0)
            if taken_until > now_s:
                return taken_until
            self._locks[lock_id] = until_s
            return 0
