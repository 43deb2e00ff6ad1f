"""Channel API keys at rest: sealed by both catalog repositories, under a local key file or KMS (moto).

What is stored is checked by scanning the raw DynamoDB items and SQLite rows; what an
attacker or a mistake could do to them (alter a byte, move a sealed key to another
channel, swap the key-encryption key) is done to those raw items and rows.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chalicelib.core.domain import Channel
from chalicelib.storage.dynamodb.catalog_repo import DynamoCatalogRepo
from chalicelib.storage.ports import CatalogRepo, KeyWrapper
from chalicelib.storage.secrets.envelope import SecretSealer
from chalicelib.storage.secrets.kms import KmsKeyWrapper
from chalicelib.storage.secrets.local import LocalKeyWrapper, load_key_file
from chalicelib.storage.sqlite.catalog_repo import SqliteCatalogRepo
from chalicelib.storage.sqlite.database import Database
from tests.contract.conftest import PREFIX

TABLE = f"{PREFIX}-catalog"


def upstream_key() -> str:
    return f"sk-up{secrets.token_urlsafe(32)}wxyz"


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return tmp_path / "data" / "secrets.key"


@pytest.fixture
def kms(_aws, emulator) -> Any:
    return emulator.client("kms")


@pytest.fixture(params=["local", "kms"])
def wrapper(request, key_file) -> Callable[[], KeyWrapper]:
    """A maker of the keeper under test; each call is a keeper as a new container would build it."""
    if request.param == "local":
        return lambda: LocalKeyWrapper.from_file(key_file)
    client = request.getfixturevalue("kms")
    return lambda: KmsKeyWrapper(client, f"alias/{PREFIX}-secrets")


@pytest.fixture
def dynamodb(_aws) -> Any:
    for item in _aws.scan(TableName=TABLE)["Items"]:
        _aws.delete_item(TableName=TABLE, Key={"kind": item["kind"], "name": item["name"]})
    return _aws


def dynamo_repo(dynamodb: Any, wrapper: Callable[[], KeyWrapper]) -> DynamoCatalogRepo:
    """The repository as a new container builds it: nothing unwrapped yet."""
    return DynamoCatalogRepo(dynamodb, TABLE, sealer=SecretSealer(wrapper()))


def raw_channel(dynamodb: Any, name: str) -> dict[str, Any]:
    return dynamodb.get_item(TableName=TABLE, Key={"kind": {"S": "channel"}, "name": {"S": name}})["Item"]


def channels(repo: CatalogRepo) -> dict[str, str]:
    return {channel.name: channel.api_key for channel in repo.load()[0]}


def flip_a_bit(text: str, at: int) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[at] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def test_both_repositories_give_back_the_key_they_sealed(request, wrapper, tmp_path):
    repos = [SqliteCatalogRepo(Database(tmp_path / "tokenway.db"), sealer=SecretSealer(wrapper())),
             dynamo_repo(request.getfixturevalue("dynamodb"), wrapper)]
    for repo in repos:
        key, replaced = upstream_key(), upstream_key()
        repo.put_channel(Channel("deepseek", "https://api.deepseek.com/v1", replaced))
        repo.put_channel(Channel("deepseek", "https://api.deepseek.com/v1", key))
        repo.put_channel(Channel("short", "https://short.example/v1", "k"))
        assert sorted(repo.load()[0], key=lambda c: c.name) == [
            Channel("deepseek", "https://api.deepseek.com/v1", key), Channel("short", "https://short.example/v1", "k")]


def test_a_stored_channel_item_holds_no_plaintext_key(dynamodb, wrapper):
    key = upstream_key()
    dynamo_repo(dynamodb, wrapper).put_channel(Channel("deepseek", "https://api.deepseek.com/v1", key))

    items = dynamodb.scan(TableName=TABLE)["Items"]
    assert len(items) == 1 and "api_key" not in items[0]
    for value in items[0].values():
        (text,) = value.values()
        assert key not in text and key[5:-4] not in text
    for sealed in ("api_key_sealed", "api_key_data_key"):
        assert key[5:-4].encode() not in base64.b64decode(items[0][sealed]["S"])
    assert items[0]["api_key_wrapped_by"] == {"S": wrapper().name}
    # A new container opens it.
    assert channels(dynamo_repo(dynamodb, wrapper)) == {"deepseek": key}


@pytest.mark.parametrize("attribute", ["api_key_sealed", "api_key_data_key"])
def test_a_channel_whose_sealed_key_was_altered_is_left_out_and_logged(dynamodb, wrapper, attribute, caplog):
    key, other = upstream_key(), upstream_key()
    repo = dynamo_repo(dynamodb, wrapper)
    repo.put_channel(Channel("tampered", "https://a.example/v1", key))
    repo.put_channel(Channel("intact", "https://b.example/v1", other))
    item = raw_channel(dynamodb, "tampered")
    item[attribute] = {"S": flip_a_bit(item[attribute]["S"], at=-1)}
    dynamodb.put_item(TableName=TABLE, Item=item)

    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            assert channels(dynamo_repo(dynamodb, wrapper)) == {"intact": other}
        assert channels(repo) == {"intact": other}  # the writer's cached data key does not help
    reports = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(reports) == 4  # once in each of the four containers
    for report in reports:
        assert "channel `tampered` is unavailable" in report and "it was altered" in report
        assert "tokenway channel add tampered" in report
    assert key not in caplog.text and other not in caplog.text


def test_a_sealed_key_moved_to_another_channel_does_not_open_there(dynamodb, wrapper, caplog):
    a_key, b_key = upstream_key(), upstream_key()
    repo = dynamo_repo(dynamodb, wrapper)
    repo.put_channel(Channel("a", "https://a.example/v1", a_key))
    repo.put_channel(Channel("b", "https://b.example/v1", b_key))
    a_item = raw_channel(dynamodb, "a")
    dynamodb.put_item(TableName=TABLE, Item={**raw_channel(dynamodb, "b"), **{
        name: a_item[name] for name in ("api_key_sealed", "api_key_data_key", "api_key_wrapped_by")}})

    with caplog.at_level(logging.ERROR):
        assert channels(dynamo_repo(dynamodb, wrapper)) == {"a": a_key}
        assert channels(repo) == {"a": a_key}
    assert "channel `b` is unavailable" in caplog.text and "copied from another" in caplog.text
    assert a_key not in caplog.text and b_key not in caplog.text


@pytest.mark.parametrize("damage", [
    {"api_key_sealed": {"S": "not base64!"}},
    {"api_key_data_key": {"S": ""}},
    {"api_key_data_key": {"S": base64.b64encode(os.urandom(7000)).decode()}},  # longer than KMS takes
])
def test_a_malformed_sealed_key_is_left_out_not_a_storage_failure(dynamodb, wrapper, damage, caplog):
    repo = dynamo_repo(dynamodb, wrapper)
    repo.put_channel(Channel("a", "https://a.example/v1", upstream_key()))
    dynamodb.put_item(TableName=TABLE, Item={**raw_channel(dynamodb, "a"), **damage})
    with caplog.at_level(logging.ERROR):
        assert channels(dynamo_repo(dynamodb, wrapper)) == {}
    assert "channel `a` is unavailable" in caplog.text


def test_a_channel_is_reported_once_per_container_while_it_stays_unreadable(dynamodb, wrapper, caplog):
    repo = dynamo_repo(dynamodb, wrapper)
    repo.put_channel(Channel("a", "https://a.example/v1", upstream_key()))
    item = raw_channel(dynamodb, "a")
    item["api_key_sealed"] = {"S": flip_a_bit(item["api_key_sealed"]["S"], at=-1)}
    dynamodb.put_item(TableName=TABLE, Item=item)
    with caplog.at_level(logging.ERROR):
        for _ in range(5):
            assert channels(repo) == {}
    assert len([r for r in caplog.records if "channel `a` is unavailable" in r.getMessage()]) == 1


def test_a_key_sealed_under_another_key_file_says_so(dynamodb, tmp_path, caplog):
    key = upstream_key()
    dynamo_repo(dynamodb, lambda: LocalKeyWrapper.from_file(tmp_path / "first.key")).put_channel(
        Channel("a", "https://a.example/v1", key))
    with caplog.at_level(logging.ERROR):
        assert channels(dynamo_repo(dynamodb, lambda: LocalKeyWrapper.from_file(tmp_path / "second.key"))) == {}
    assert "wrapped under another key file" in caplog.text


def test_a_key_sealed_with_kms_says_so_to_a_gateway_with_a_key_file(dynamodb, kms, key_file, caplog):
    dynamo_repo(dynamodb, lambda: KmsKeyWrapper(kms, f"alias/{PREFIX}-secrets")).put_channel(
        Channel("a", "https://a.example/v1", upstream_key()))
    with caplog.at_level(logging.ERROR):
        assert channels(dynamo_repo(dynamodb, lambda: LocalKeyWrapper.from_file(key_file))) == {}
    assert "sealed by the `kms` key wrapper, and this gateway unwraps with `local`" in caplog.text


def test_kms_unwraps_each_data_key_once_per_container(dynamodb, kms):
    calls: list[str] = []
    kms.meta.events.register("before-call.kms.*", lambda model, **_: calls.append(model.name))
    writer = dynamo_repo(dynamodb, lambda: KmsKeyWrapper(kms, f"alias/{PREFIX}-secrets"))
    for name in ("a", "b"):
        writer.put_channel(Channel(name, f"https://{name}.example/v1", upstream_key()))
    for _ in range(3):
        writer.load()
    assert calls == ["GenerateDataKey", "GenerateDataKey"]  # the writer keeps the keys it made

    reader = dynamo_repo(dynamodb, lambda: KmsKeyWrapper(kms, f"alias/{PREFIX}-secrets"))
    for _ in range(3):
        assert len(channels(reader)) == 2
    assert calls[2:] == ["Decrypt", "Decrypt"]


def test_a_channel_stored_in_plaintext_before_sealing_loads_and_is_sealed_in_place(dynamodb, wrapper, caplog):
    key, other = upstream_key(), upstream_key()
    for name, api_key in (("legacy", key), ("replaced", other)):
        dynamodb.put_item(TableName=TABLE, Item={"kind": {"S": "channel"}, "name": {"S": name},
                                                 "base_url": {"S": f"https://{name}.example/v1"},
                                                 "api_key": {"S": api_key}, "channel_kind": {"S": "openai"}})
    new_key = upstream_key()
    repo = dynamo_repo(dynamodb, wrapper)
    repo.put_channel(Channel("replaced", "https://replaced.example/v1", new_key))  # the next write drops it
    with caplog.at_level(logging.DEBUG, logger="chalicelib"):
        assert channels(repo) == {"legacy": key, "replaced": new_key}
    for name in ("legacy", "replaced"):
        item = raw_channel(dynamodb, name)
        assert "api_key" not in item and "api_key_sealed" in item
    assert channels(dynamo_repo(dynamodb, wrapper)) == {"legacy": key, "replaced": new_key}
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("chalicelib")]
    assert "channel `legacy`: its API key, stored in plain text, is now sealed" in ours
    assert not [message for message in ours if key in message or new_key in message]


def test_the_key_file_is_made_private_on_first_use_and_then_reused(tmp_path):
    path = tmp_path / "data" / "secrets.key"
    key = load_key_file(path)
    assert len(key) == 32 and load_key_file(path) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert base64.b64decode(path.read_text().strip()) == key
    assert [p.name for p in path.parent.iterdir()] == ["secrets.key"]  # no staging file left behind


def test_a_key_file_that_holds_no_key_is_refused_naming_it(tmp_path):
    path = tmp_path / "secrets.key"
    path.write_text(base64.b64encode(os.urandom(16)).decode())
    with pytest.raises(ValueError, match=f"{path} does not hold a key-encryption key"):
        LocalKeyWrapper.from_file(path)
