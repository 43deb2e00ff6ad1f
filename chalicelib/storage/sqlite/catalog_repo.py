"""The operator's catalog on SQLite: tables `channels`, `models` and `groups`.

A channel's API key is stored only sealed, as on DynamoDB (storage/secrets): the
ciphertext (`api_key_sealed`) and its wrapped data key (`api_key_data_key`) as BLOBs,
and the keeper that wrapped it (`api_key_wrapped_by`, `kms` or `local`). A channel's extra
headers are not secrets and are stored as JSON; its `state` is the operator's forced breaker state.
"""

from __future__ import annotations

import json
import sqlite3

from chalicelib.core.domain import (
    Channel,
    Group,
    ImagePrice,
    Limits,
    ModelEntry,
    ModelKind,
    Prices,
    Route,
    model_limits_from,
)
from chalicelib.storage.ports import CatalogRepo
from chalicelib.storage.secrets.channels import ChannelKeys
from chalicelib.storage.secrets.envelope import Sealed, SecretSealer
from chalicelib.storage.sqlite.database import Database, json_list, json_tuple

_MODEL_COLUMNS = ("name, kind, input_per_1m, output_per_1m, cached_input_per_1m, per_image, image_prices, routes, "
                  "context_window, max_output_tokens, use_case, timeout_s, owned_by, cap_field, pass_through, "
                  "cache_write_per_1m, fallbacks")


class SqliteCatalogRepo(CatalogRepo):
    def __init__(self, db: Database, *, sealer: SecretSealer) -> None:
        self._db = db
        self._keys = ChannelKeys(sealer)

    def put_channel(self, channel: Channel) -> None:
        # Sealed before the transaction: the keeper may be a network call, and the write lock is not held for it.
        sealed = self._keys.seal(channel.name, channel.api_key)
        with self._db.write() as tx:
            tx.execute("INSERT OR REPLACE INTO channels (name, base_url, kind, api_key_sealed, api_key_data_key, "
                       "api_key_wrapped_by, extra_headers, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (channel.name, channel.base_url, channel.kind, sealed.ciphertext, sealed.wrapped_key,
                        sealed.wrapped_by, json.dumps([list(header) for header in channel.extra_headers]),
                        channel.state))

    def set_channel_state(self, name: str, state: str) -> bool:
        with self._db.write() as tx:
            return bool(tx.execute("UPDATE channels SET state = ? WHERE name = ?", (state, name)).rowcount)

    def put_model(self, model: ModelEntry) -> None:
        prices = model.prices
        with self._db.write() as tx:
            tx.execute(
                f"INSERT OR REPLACE INTO models ({_MODEL_COLUMNS}) VALUES ({', '.join('?' * 17)})",
                (model.name, model.kind.value, prices.input_per_1m, prices.output_per_1m, prices.cached_input_per_1m,
                 prices.per_image, json.dumps([entry.__dict__ for entry in prices.image_prices]),
                 json.dumps([route.__dict__ for route in model.routes]), model.context_window,
                 model.max_output_tokens, model.use_case, model.timeout_s, model.owned_by, model.cap_field,
                 json_list(model.pass_through), prices.cache_write_per_1m, json_list(model.fallbacks)),
            )

    def put_group(self, group: Group) -> None:
        with self._db.write() as tx:
            tx.execute("INSERT OR REPLACE INTO groups (name, multiplier_ppm, models, description, rpm, tpm, "
                       "concurrency, model_limits) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (group.name, group.multiplier_ppm, json_list(group.models), group.description, group.limits.rpm,
                        group.limits.tpm, group.limits.concurrency, json.dumps(group.model_limits_dict())))

    def load(self) -> tuple[list[Channel], list[ModelEntry], list[Group]]:
        with self._db.read() as tx:  # one snapshot of all three
            # As BLOBs whatever a hand-edited row holds: what is not the sealed bytes does not open.
            channel_rows = tx.execute("SELECT name, base_url, kind, CAST(api_key_sealed AS BLOB) AS api_key_sealed, "
                                      "CAST(api_key_data_key AS BLOB) AS api_key_data_key, api_key_wrapped_by, "
                                      "extra_headers, state FROM channels ORDER BY name").fetchall()
            model_rows = tx.execute(f"SELECT {_MODEL_COLUMNS} FROM models ORDER BY name").fetchall()
            group_rows = tx.execute("SELECT name, multiplier_ppm, models, description, rpm, tpm, concurrency, "
                                    "model_limits FROM groups ORDER BY name").fetchall()
        channels = [channel for channel in map(self._channel, channel_rows) if channel is not None]
        groups = [Group(row["name"], row["multiplier_ppm"], json_tuple(row["models"]), row["description"],
                        Limits(row["rpm"], row["tpm"], row["concurrency"]),
                        model_limits_from(json.loads(row["model_limits"])))
                  for row in group_rows]
        return channels, [_model(row) for row in model_rows], groups

    def _channel(self, row: sqlite3.Row) -> Channel | None:
        """The channel with its key opened; None if the key does not open (reported by ChannelKeys)."""
        sealed = Sealed(row["api_key_sealed"] or b"", row["api_key_data_key"] or b"", str(row["api_key_wrapped_by"]))
        api_key = self._keys.open(row["name"], sealed)
        if api_key is None:
            return None
        return Channel(name=row["name"], base_url=row["base_url"], api_key=api_key, kind=row["kind"],
                       extra_headers=tuple((name, value) for name, value in json.loads(row["extra_headers"])),
                       state=row["state"])


def _model(row: sqlite3.Row) -> ModelEntry:
    return ModelEntry(
        name=row["name"],
        kind=ModelKind(row["kind"]),
        prices=Prices(input_per_1m=row["input_per_1m"], output_per_1m=row["output_per_1m"],
                      cached_input_per_1m=row["cached_input_per_1m"], per_image=row["per_image"],
                      cache_write_per_1m=row["cache_write_per_1m"],
                      image_prices=tuple(ImagePrice(**entry) for entry in json.loads(row["image_prices"]))),
        routes=tuple(Route(**route) for route in json.loads(row["routes"])),
        context_window=row["context_window"],
        max_output_tokens=row["max_output_tokens"],
        use_case=row["use_case"],
        timeout_s=row["timeout_s"],
        owned_by=row["owned_by"],
        cap_field=row["cap_field"],
        pass_through=json_tuple(row["pass_through"]),
        fallbacks=json_tuple(row["fallbacks"]),
    )

