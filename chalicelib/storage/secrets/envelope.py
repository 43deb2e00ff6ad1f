"""Envelope encryption of secrets at rest (the upstream keys of channels).

    seal(secret, owner)
      └─ the keeper (KMS, or the local key file) makes a fresh 256-bit data key, bound to the owner
         ├─ the secret is encrypted with it: AES-256-GCM, the owner as associated data
         └─ only the wrapped data key is stored, beside the ciphertext
    open(sealed, owner)
      └─ the keeper unwraps the data key (once per container: unwrapped keys are cached), then decrypt

The owner (`{"channel": "deepseek"}`) is bound to both the wrapped data key and the
ciphertext, so a sealed secret copied to another owner, or altered, does not open:
`SecretUnreadable`, whose message says why and never holds key material.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chalicelib.core.errors import SecretUnreadable
from chalicelib.storage.ports import KeyWrapper

DATA_KEY_BYTES = 32  # AES-256
_VERSION = b"\x01"  # of the ciphertext layout: version, 12-byte nonce, ciphertext and 16-byte tag
_NONCE_BYTES = 12
_TAG_BYTES = 16
# Unwrapped data keys kept per container; one per sealed secret, and an operator has few.
_CACHE_LIMIT = 1024


def associated_data(owner: Mapping[str, str]) -> bytes:
    """The owner as canonical bytes, bound to every ciphertext and wrapped key made for it."""
    return json.dumps(dict(owner), sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Sealed:
    """A secret as stored: its ciphertext, the data key wrapped by the keeper, and which keeper that was."""

    ciphertext: bytes = field(repr=False)
    wrapped_key: bytes = field(repr=False)
    wrapped_by: str


class SecretSealer:
    """Seals and opens secrets under one keeper's key-encryption key. Thread-safe; one per container."""

    def __init__(self, wrapper: KeyWrapper) -> None:
        self._wrapper = wrapper
        self._lock = threading.Lock()
        self._data_keys: OrderedDict[tuple[bytes, bytes], bytes] = OrderedDict()

    def seal(self, secret: str, owner: Mapping[str, str]) -> Sealed:
        """The secret encrypted under a new data key bound to `owner`; StorageError if the keeper is unreachable."""
        aad = associated_data(owner)
        data_key = self._wrapper.generate(owner)
        nonce = os.urandom(_NONCE_BYTES)
        ciphertext = _VERSION + nonce + AESGCM(data_key.plaintext).encrypt(nonce, secret.encode(), aad)
        # The writing container reads this secret back within seconds: no need to ask the keeper.
        self._remember((data_key.wrapped, aad), data_key.plaintext)
        return Sealed(ciphertext, data_key.wrapped, self._wrapper.name)

    def open(self, sealed: Sealed, owner: Mapping[str, str]) -> str:
        """The secret; SecretUnreadable if it does not open for `owner` under this keeper's key,
        StorageError if the keeper is unreachable."""
        if sealed.wrapped_by != self._wrapper.name:
            raise SecretUnreadable(f"it was sealed by the `{sealed.wrapped_by}` key wrapper, "
                                   f"and this gateway unwraps with `{self._wrapper.name}`")
        # Checked before the keeper is asked: a malformed item is this secret's fault, not an outage.
        version, nonce, body = _split(sealed.ciphertext)
        if version != _VERSION or len(body) < _TAG_BYTES or not sealed.wrapped_key:
            raise SecretUnreadable("it is not in a layout this gateway reads")
        aad = associated_data(owner)
        data_key = self._data_key(sealed.wrapped_key, aad, owner)
        try:
            plaintext = AESGCM(data_key).decrypt(nonce, body, aad)
        except InvalidTag:
            raise SecretUnreadable("its ciphertext does not decrypt: it was altered, or copied from "
                                   "another owner") from None
        try:
            return plaintext.decode()
        except UnicodeDecodeError:
            raise SecretUnreadable("it decrypts to bytes that are not text") from None

    def _data_key(self, wrapped: bytes, aad: bytes, owner: Mapping[str, str]) -> bytes:
        with self._lock:
            cached = self._data_keys.get((wrapped, aad))
            if cached is not None:
                self._data_keys.move_to_end((wrapped, aad))
                return cached
        # Outside the lock: a slow keeper must not hold up secrets already unwrapped.
        data_key = self._wrapper.unwrap(wrapped, owner)
        if len(data_key) != DATA_KEY_BYTES:
            raise SecretUnreadable("its data key is not a 256-bit key")
        self._remember((wrapped, aad), data_key)
        return data_key

    def _remember(self, cache_key: tuple[bytes, bytes], data_key: bytes) -> None:
        with self._lock:
            self._data_keys[cache_key] = data_key
            self._data_keys.move_to_end(cache_key)
            while len(self._data_keys) > _CACHE_LIMIT:
                self._data_keys.popitem(last=False)


def _split(ciphertext: bytes) -> tuple[bytes, bytes, bytes]:
    """Version, nonce, and the encrypted secret with its tag."""
    return ciphertext[:1], ciphertext[1:1 + _NONCE_BYTES], ciphertext[1 + _NONCE_BYTES:]
