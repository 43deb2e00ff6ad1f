"""The operator's catalog in memory, for unit tests."""

from __future__ import annotations

from chalicelib.core.domain import (
    Channel,
    Group,
    ModelEntry,
)
from chalicelib.storage.ports import CatalogRepo


class InMemoryCatalogRepo(CatalogRepo):
    def __init__(self) -> None:
        self._channels: dict[str, Channel] = {}
        self._models: dict[str, ModelEntry] = {}
        self._groups: dict[str, Group] = {}

    def put_channel(self, channel: Channel) -> None:
        self._channels[channel.name] = channel

    def put_model(self, model: ModelEntry) -> None:
        self._models[model.name] = model

    def put_group(self, group: Group) -> None:
        self._groups[group.name] = group

    def load(self) -> tuple[list[Channel], list[ModelEntry], list[Group]]:
        return list(self._channels.values()), list(self._models.values()), list(self._groups.values())
