import base64

import pytest

from chalicelib.core.errors import InvalidRequest
from chalicelib.identity.passwords import PASSWORD_RULE, PasswordHasher, check_strength

EMAIL = "Alice.Smith@example.com"


@pytest.mark.parametrize("password", [
    "abcdefghi1",  # 10 characters: the shortest allowed
    "a" * 255 + "!",  # 256 characters: the longest allowed
    "correct horse battery",  # a space is a non-letter
    "Ünïcödé wörds 😀",
    "smith-alice-x",  # pieces of the local part are fine, the whole is not
])
def test_passwords_that_follow_the_rule(password):
    check_strength(password, EMAIL.lower(), param="password")


@pytest.mark.parametrize("password, problem", [
    ("abcdefgh1", "9 characters"),
    ("a" * 256 + "!", "257 characters"),
    ("onlyletterswithoutanything", "only letters"),
    ("1234567890!", "no letter"),
    ("my ALICE.SMITH password", "part of the email"),
    ("alice.smith2024", "part of the email"),
])
def test_passwords_that_break_the_rule_are_refused_naming_the_field_and_the_rule(password, problem):
    with pytest.raises(InvalidRequest) as caught:
        check_strength(password, EMAIL.lower(), param="new_password")
    error = caught.value
    assert (error.status, error.param, error.code) == (400, "new_password", "weak_password")
    assert problem in error.message and PASSWORD_RULE in error.message
    assert password not in error.message


def test_scrypt_hashes_round_trip_and_describe_themselves():
    hasher = PasswordHasher()
    stored = hasher.hash("correct horse 42")
    scheme, n, r, p, salt, key = stored.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    assert len(base64.b64decode(salt)) == 16 and len(base64.b64decode(key)) == 32
    assert hasher.verify("correct horse 42", stored)
    assert not hasher.verify("correct horse 43", stored)
    assert "correct horse" not in stored and b"correct horse 42".hex() not in stored


def test_each_hash_has_its_own_salt_and_any_stored_cost_is_honoured():
    cheap = PasswordHasher(n=2**4)
    first, second = cheap.hash("correct horse 42"), cheap.hash("correct horse 42")
    assert first != second and first.startswith("scrypt$16$8$1$")
    # A hasher configured with another cost still checks what was stored before.
    assert PasswordHasher().verify("correct horse 42", first)


def test_differently_composed_unicode_is_the_same_password():
    hasher = PasswordHasher(n=2**4)
    composed, decomposed = "caf\u00e9 au lait 1", "cafe\u0301 au lait 1"
    assert hasher.verify(decomposed, hasher.hash(composed))


@pytest.mark.parametrize("stored", ["", "plain text", "bcrypt$1$2$3$AA==$AA==", "scrypt$x$8$1$AA==$AA==",
                                    "scrypt$16$8$1$not base64!$AA==", "scrypt$1073741824$8$1$AA==$AA==",
                                    "scrypt$15$8$1$AAAA$AAAA"])
def test_anything_but_a_well_formed_hash_matches_nothing(stored):
    assert not PasswordHasher().verify("correct horse 42", stored)


def test_with_nothing_stored_the_check_does_the_same_scrypt_work_and_fails(monkeypatch):
    import chalicelib.identity.passwords as passwords

    calls = []
    real = passwords.hashlib.scrypt
    monkeypatch.setattr(passwords.hashlib, "scrypt", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    hasher = PasswordHasher()
    stored = hasher.hash("correct horse 42")
    calls.clear()
    assert not hasher.verify("correct horse 42", None)
    assert not hasher.verify("wrong horse 42", stored)
    # The dummy hash is made once (first use), then every check costs one scrypt of the same cost.
    assert not hasher.verify("correct horse 42", None)
    costs = [(c["n"], c["r"], c["p"], c["dklen"]) for c in calls]
    assert costs == [(16384, 8, 1, 32)] * 4
