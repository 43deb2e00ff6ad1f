"""Console sessions in memory, for unit tests."""

from __future__ import annotations

from chalicelib.core.domain import ConsoleSession
from chalicelib.core.errors import Conflict
from chalicelib.storage.ports import SessionRepo


class InMemorySessionRepo(SessionRepo):
    def __init__(self) -> None:
        self.sessions: dict[str, ConsoleSession] = {}

    def create(self, session: ConsoleSession) -> None:
        if session.session_hash in self.sessions:
            raise Conflict("session already exists")
        self.sessions[session.session_hash] = session

    def get(self, session_hash: str) -> ConsoleSession | None:
        return self.sessions.get(session_hash)

    def delete(self, session_hash: str) -> None:
        self.sessions.pop(session_hash, None)
