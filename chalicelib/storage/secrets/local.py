"""The key-encryption key in a local file, for one machine (AWS uses KMS: kms.py).

The file holds 32 random bytes in base64 on one line. It is created on first
use with mode 0600, and published atomically, so processes starting together
agree on one key. Whoever reads the file can open every sealed secret: keep it
out of backups of the tables, and back it up on its own (losing it means adding
every channel's key again).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chalicelib.core.errors import SecretUnreadable
from chalicelib.storage.ports import DataKey, KeyWrapper
from chalicelib.storage.private_file import read_private
from chalicelib.storage.secrets.envelope import DATA_KEY_BYTES, associated_data

log = logging.getLogger(__name__)

KEY_BYTES = 32
_VERSION = b"\x01"  # of the wrapped key: version, 8-byte key id, 12-byte nonce, wrapped data key and tag
_KEY_ID_BYTES = 8
_NONCE_BYTES = 12
_WRAPPED_BYTES = 1 + _KEY_ID_BYTES + _NONCE_BYTES + DATA_KEY_BYTES + 16


class LocalKeyWrapper(KeyWrapper):
    """Wraps data keys with AES-256-GCM under a key-encryption key held by this process."""

    name = "local"

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a key-encryption key is {KEY_BYTES} bytes")
        self._aead = AESGCM(key)
        # Stored in each wrapped key, so one wrapped under another key file is told apart from one altered.
        self.key_id = hashlib.sha256(b"tokenway key-encryption key id\x00" + key).digest()[:_KEY_ID_BYTES]

    @classmethod
    def from_file(cls, path: Path) -> LocalKeyWrapper:
        """The wrapper of the key in `path`, which is created if it does not exist."""
        return cls(load_key_file(path))

    def generate(self, context: Mapping[str, str]) -> DataKey:
        data_key = os.urandom(DATA_KEY_BYTES)
        nonce = os.urandom(_NONCE_BYTES)
        wrapped = _VERSION + self.key_id + nonce + self._aead.encrypt(nonce, data_key, associated_data(context))
        return DataKey(data_key, wrapped)

    def unwrap(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        if len(wrapped) != _WRAPPED_BYTES or wrapped[:1] != _VERSION:
            raise SecretUnreadable("its data key is not one a local key file wraps")
        key_id, rest = wrapped[1:1 + _KEY_ID_BYTES], wrapped[1 + _KEY_ID_BYTES:]
        if key_id != self.key_id:
            raise SecretUnreadable(f"its data key was wrapped under another key file (key id {key_id.hex()}; "
                                   f"this gateway's is {self.key_id.hex()})")
        try:
            return self._aead.decrypt(rest[:_NONCE_BYTES], rest[_NONCE_BYTES:], associated_data(context))
        except InvalidTag:
            raise SecretUnreadable("its data key does not unwrap for this owner: it was altered, or copied "
                                   "from another owner") from None


def load_key_file(path: Path) -> bytes:
    """The key in `path`; a new random key is written there first (mode 0600) if there is no file."""
    path = Path(path).expanduser()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = read_private(path, lambda: base64.b64encode(os.urandom(KEY_BYTES)) + b"\n",
                        made=f"created the key-encryption key file {path}; back it up apart from the tables")
    try:
        key = base64.b64decode(text, validate=True)
    except binascii.Error:
        key = b""
    if len(key) != KEY_BYTES:
        raise ValueError(f"{path} does not hold a key-encryption key: expected {KEY_BYTES} bytes in base64 "
                         "on one line")
    return key
