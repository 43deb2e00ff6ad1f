import pytest

from chalicelib.core.domain import ApiKey
from chalicelib.core.errors import InvalidApiKey
from chalicelib.keys.auth import KeyAuthenticator, KeyHasher, generate_key, key_hint
from tests.sqlite_store import store_in


def test_keys_are_long_random_and_prefixed():
    keys = {generate_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(key.startswith("sk-") and len(key) == 51 and key[3:].isalnum() for key in keys)


def test_a_pepper_changes_the_hash_and_neither_hash_contains_the_key():
    key = generate_key()
    plain, peppered = KeyHasher()(key), KeyHasher("pepper")(key)
    assert plain != peppered and len(plain) == 64
    assert key not in plain and key[3:] not in peppered
    assert key_hint(key) == f"{key[:6]}…{key[-4:]}"


@pytest.fixture
def setup(tmp_path):
    repo = store_in(tmp_path).keys
    hasher = KeyHasher()
    clock = {"now": 0.0}
    secret = generate_key()
    repo.create(ApiKey("key_1", hasher(secret), "acct_1", "k", 0, key_hint(secret)))
    return repo, KeyAuthenticator(repo, hasher, ttl_s=5, clock=lambda: clock["now"]), secret, clock


def test_a_bearer_key_authenticates_to_its_record(setup):
    _, auth, secret, _ = setup
    assert auth.authenticate(f"Bearer {secret}", now_ms=0).key_id == "key_1"
    assert auth.authenticate(f"bearer   {secret} ", now_ms=0).key_id == "key_1"


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic abc", "Bearer sk-unknown", "Bearer nope",
                                    "Bearer sk-" + "a" * 500])
def test_missing_malformed_or_unknown_keys_are_refused(setup, header):
    _, auth, _, _ = setup
    with pytest.raises(InvalidApiKey) as caught:
        auth.authenticate(header, now_ms=0)
    assert caught.value.status == 401 and caught.value.code == "invalid_api_key"


def test_a_revoked_key_stops_working_once_the_cache_lifetime_passes(setup):
    repo, auth, secret, clock = setup
    auth.authenticate(f"Bearer {secret}", now_ms=0)
    record = repo.get_by_hash(KeyHasher()(secret))
    repo.save_settings(ApiKey(**{**record.__dict__, "status": "revoked"}))
    assert auth.authenticate(f"Bearer {secret}", now_ms=0)  # cached for up to 5 s
    clock["now"] += 5.01
    with pytest.raises(InvalidApiKey) as caught:
        auth.authenticate(f"Bearer {secret}", now_ms=0)
    assert caught.value.code == "api_key_revoked"
