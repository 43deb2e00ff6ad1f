"""API keys: made from a CSPRNG, shown once, stored only as a hash, looked up by that hash."""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import secrets
import string
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from chalicelib.core.domain import ApiKey, KeyStatus
from chalicelib.core.errors import GatewayError, InvalidApiKey, PermissionDenied
from chalicelib.storage.ports import KeyRepo

KEY_PREFIX = "sk-"
_SECRET_LENGTH = 48
_ALPHABET = string.ascii_letters + string.digits
_MAX_KEY_LENGTH = 200
_CACHE_LIMIT = 10_000


def generate_key() -> str:
    """A new secret key: `sk-` and 48 base62 characters (about 285 bits)."""
    return KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(_SECRET_LENGTH))


def key_hint(key: str) -> str:
    """What may be shown of a key later: its prefix and last four characters."""
    return f"{key[:6]}…{key[-4:]}"


class KeyHasher:
    """SHA-256 of the key, or HMAC-SHA256 with a server-side pepper when one is configured."""

    def __init__(self, pepper: str | None = None) -> None:
        self._pepper = pepper.encode() if pepper else None

    def __call__(self, key: str) -> str:
        if self._pepper:
            return hmac.new(self._pepper, key.encode(), hashlib.sha256).hexdigest()
        return hashlib.sha256(key.encode()).hexdigest()


class KeyAuthenticator:
    """Turns an `Authorization` header into the stored key it names.

    Lookups are cached for `ttl_s` seconds per container, so a change to a
    key's allowlists takes effect within that time (its status, expiry and
    quota are checked again, atomically, when each request is held); unknown
    keys are cached too, so that guessing costs no storage reads. A cached
    record that would refuse the key (revoked, disabled, expired) is read
    again before refusing, so a refusal always names the key's current state;
    `fresh=True` reads the key in any case, for routes that make no hold.
    """

    def __init__(self, keys: KeyRepo, hasher: KeyHasher, *, ttl_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._keys = keys
        self._hash = hasher
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}

    def authenticate(self, authorization: str | None, *, now_ms: int, fresh: bool = False) -> ApiKey:
        key = _bearer(authorization)
        if not key.startswith(KEY_PREFIX) or len(key) > _MAX_KEY_LENGTH:
            raise InvalidApiKey("Incorrect API key provided. Keys start with `sk-`.")
        key_hash = self._hash(key)
        if fresh:
            return check_usable(self._read(key_hash, consistent=True), now_ms)
        cached = self._cached(key_hash)
        record = cached[1] if cached is not None else self._read(key_hash, consistent=False)
        try:
            return check_usable(record, now_ms)
        except GatewayError:
            if record is None:
                raise  # an unknown key stays cached: guessing costs no reads
            # Refuse only on the key's current state (it may have been enabled, or revoked, since).
            return check_usable(self._read(key_hash, consistent=True), now_ms)

    def _cached(self, key_hash: str) -> tuple[float, ApiKey | None] | None:
        with self._lock:
            cached = self._cache.get(key_hash)
        return cached if cached is not None and cached[0] > self._clock() else None

    def _read(self, key_hash: str, *, consistent: bool) -> ApiKey | None:
        now = self._clock()
        record = self._keys.get_by_hash(key_hash, consistent=consistent)
        with self._lock:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key_hash] = (now + self._ttl_s, record)
        return record


def check_usable(key: ApiKey | None, now_ms: int) -> ApiKey:
    """The key, if it may make requests now; else the error that names why not."""
    if key is None:
        raise InvalidApiKey("Incorrect API key provided.")
    if key.status == KeyStatus.REVOKED:
        raise InvalidApiKey("This API key has been revoked.", code="api_key_revoked")
    if key.status != KeyStatus.ACTIVE:
        raise PermissionDenied("This API key is disabled. Enable it in Token Management.", code="api_key_disabled")
    if key.expires_at is not None and key.expires_at <= now_ms:
        expired = datetime.fromtimestamp(key.expires_at / 1000, tz=UTC).isoformat(timespec="seconds")
        raise InvalidApiKey(f"This API key expired at {expired}.", code="api_key_expired")
    return key


def check_allowed(key: ApiKey, *, model: str, client_ip: str | None) -> None:
    """PermissionDenied unless the key's allowlists admit this model and client address."""
    if not key.allows(model):
        raise PermissionDenied(f"This API key may not use the model `{model}`.", param="model",
                               code="model_not_allowed")
    if key.cidrs:
        try:
            address = ipaddress.ip_address(client_ip or "")
        except ValueError:
            address = None
        if address is None or not any(address in _network(cidr) for cidr in key.cidrs):
            raise PermissionDenied(f"This API key may not be used from {client_ip or 'an unknown address'}.",
                                   code="ip_not_allowed")



@functools.lru_cache(maxsize=4096)
def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A key's allowed network, parsed once per process rather than on every request."""
    return ipaddress.ip_network(cidr)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` header, or None if the header is not one."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def key_authorization(x_api_key: str | None, authorization: str | None) -> str | None:
    """The `Authorization` value naming a request's key, sent as `x-api-key: sk-…` (Anthropic's clients)
    or as `Authorization: Bearer sk-…`; `x-api-key` wins when both are sent. None when neither is."""
    if x_api_key is not None and x_api_key.strip():
        return f"Bearer {x_api_key.strip()}"
    return authorization or None


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise InvalidApiKey("You didn't provide an API key. Send it as `Authorization: Bearer sk-…`.")
    token = bearer_token(authorization)
    if token is None:
        raise InvalidApiKey("Malformed Authorization header. Send it as `Authorization: Bearer sk-…`.")
    return token
