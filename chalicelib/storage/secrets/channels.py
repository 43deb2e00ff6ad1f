"""Channel API keys at rest: sealed per channel, the channel's name as the owner.

A channel whose key does not open is left out of the catalog (its models fall
back to their other channels, or are not available) and the reason is logged
once per container, naming the channel and never the key.
"""

from __future__ import annotations

import logging
import threading

from chalicelib.core.errors import SecretUnreadable
from chalicelib.storage.secrets.envelope import Sealed, SecretSealer

log = logging.getLogger(__name__)


def owner(channel: str) -> dict[str, str]:
    """Whom a channel's sealed key belongs to: it opens for no other channel."""
    return {"channel": channel}


class ChannelKeys:
    """Seals channel keys for storage and opens them on load."""

    def __init__(self, sealer: SecretSealer) -> None:
        self._sealer = sealer
        self._reported: set[tuple[str, bytes]] = set()
        self._lock = threading.Lock()

    def seal(self, channel: str, api_key: str) -> Sealed:
        """The key sealed for `channel`; StorageError if the keeper is unreachable."""
        return self._sealer.seal(api_key, owner(channel))

    def open(self, channel: str, sealed: Sealed) -> str | None:
        """The channel's key, or None (reported once) if it does not open."""
        try:
            return self._sealer.open(sealed, owner(channel))
        except SecretUnreadable as exc:
            with self._lock:
                first = (channel, sealed.ciphertext) not in self._reported
                self._reported.add((channel, sealed.ciphertext))
            if first:
                log.error("channel `%s` is unavailable: its stored API key does not open: %s. Add the channel "
                          "again (tokenway channel add %s …) to store its key anew.", channel, exc.message, channel)
            return None
