"""The operator's catalog in memory, for unit tests. Channel keys are kept sealed, as on DynamoDB."""

from __future__ import annotations

import os
from dataclasses import dataclass

from chalicelib.core.domain import (
    Channel,
    Group,
    ModelEntry,
)
from chalicelib.storage.ports import CatalogRepo
from chalicelib.storage.secrets.channels import ChannelKeys
from chalicelib.storage.secrets.envelope import Sealed, SecretSealer
from chalicelib.storage.secrets.local import KEY_BYTES, LocalKeyWrapper


@dataclass(frozen=True)
class _StoredChannel:
    name: str
    base_url: str
    kind: str
    api_key: Sealed


class InMemoryCatalogRepo(CatalogRepo):
    def __init__(self, sealer: SecretSealer | None = None) -> None:
        # Without a sealer, a key-encryption key that lives as long as the repository.
        self._keys = ChannelKeys(sealer or SecretSealer(LocalKeyWrapper(os.urandom(KEY_BYTES))))
        self._channels: dict[str, _StoredChannel] = {}
        self._models: dict[str, ModelEntry] = {}
        self._groups: dict[str, Group] = {}

    def put_channel(self, channel: Channel) -> None:
        sealed = self._keys.seal(channel.name, channel.api_key)
        self._channels[channel.name] = _StoredChannel(channel.name, channel.base_url, channel.kind, sealed)

    def put_model(self, model: ModelEntry) -> None:
        self._models[model.name] = model

    def put_group(self, group: Group) -> None:
        self._groups[group.name] = group

    def load(self) -> tuple[list[Channel], list[ModelEntry], list[Group]]:
        channels = []
        for stored in list(self._channels.values()):
            api_key = self._keys.open(stored.name, stored.api_key)
            if api_key is not None:
                channels.append(Channel(stored.name, stored.base_url, api_key, stored.kind))
        return channels, list(self._models.values()), list(self._groups.values())
