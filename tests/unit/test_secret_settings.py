"""Which key seals channel keys, as the settings say."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from chalicelib.config import Settings


def test_kms_is_the_default_keeper_through_the_templates_alias_for_the_prefix():
    assert Settings(resource_prefix="tokenway-prod").secrets_kms_key_id == "alias/tokenway-prod-secrets"
    assert Settings(kms_key_id="arn:aws:kms:us-east-1:1:key/abc").secrets_kms_key_id == \
        "arn:aws:kms:us-east-1:1:key/abc"


def test_the_key_file_and_a_kms_key_are_not_both_set(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENWAY_KMS_KEY_ID", "alias/x")
    monkeypatch.setenv("TOKENWAY_SECRETS_KEY_FILE", str(tmp_path / "secrets.key"))
    with pytest.raises(ValidationError, match="not both"):
        Settings()
    monkeypatch.delenv("TOKENWAY_KMS_KEY_ID")
    assert Settings().secrets_key_file == tmp_path / "secrets.key"
