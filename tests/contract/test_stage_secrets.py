"""The stage's secret settings from one Secrets Manager secret (on the AWS emulator): what it supplies, what
wins over what, one read per construction, and failures that name the secret and the reason, never a value."""

from __future__ import annotations

import json
import traceback
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from chalicelib.config import SecretsUnavailable, Settings, current_settings, secret_env_names
from devstack.emulator import Emulator
from tests.conftest import ROOT

ADMIN_TOKEN = "adm-" + uuid.uuid4().hex
PEPPER = "pep-" + uuid.uuid4().hex
STRIPE_KEY = "sk_test_" + uuid.uuid4().hex
DEEPSEEK_KEY = "ds-" + uuid.uuid4().hex


@pytest.fixture
def secrets(emulator: Emulator) -> Any:
    return emulator.client("secretsmanager")


@pytest.fixture
def stage_secret(secrets: Any) -> str:
    """A stage's secret as an operator fills it from infra/secrets.example.json."""
    name = f"stage-{uuid.uuid4().hex[:8]}/secrets"
    values = dict.fromkeys(secret_env_names(), "") | {
        "TOKENWAY_ADMIN_TOKEN": ADMIN_TOKEN, "TOKENWAY_KEY_PEPPER": PEPPER,
        "STRIPE_SECRET_KEY": STRIPE_KEY, "DEEPSEEK_API_KEY": DEEPSEEK_KEY,
    }
    secrets.create_secret(Name=name, SecretString=json.dumps(values))
    return name


@pytest.fixture
def reads(emulator: Emulator) -> Iterator[list[str]]:
    """The secret ids of every GetSecretValue made through boto3's default session (the one the settings
    source uses), during the test."""
    previous = boto3.DEFAULT_SESSION
    boto3.setup_default_session()
    seen: list[str] = []
    boto3.DEFAULT_SESSION.events.register(
        "provide-client-params.secrets-manager.GetSecretValue", lambda params, **_: seen.append(params["SecretId"]))
    yield seen
    boto3.DEFAULT_SESSION = previous


@pytest.fixture
def on_aws(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """A function's environment: no secret values in it, the emulator as AWS."""
    for name in secret_env_names():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TOKENWAY_AWS_ENDPOINT_URL", emulator.endpoint_url)
    monkeypatch.setenv("TOKENWAY_AWS_REGION", "us-east-1")


def _secret(settings: Settings, name: str) -> str | None:
    value = getattr(settings, name)
    return None if value is None else value.get_secret_value()


def test_the_secret_settings_come_from_the_secret_the_environment_names(on_aws, stage_secret, monkeypatch):
    monkeypatch.setenv("TOKENWAY_SECRETS_ID", stage_secret)
    settings = Settings()
    assert _secret(settings, "admin_token") == ADMIN_TOKEN
    assert _secret(settings, "key_pepper") == PEPPER
    assert _secret(settings, "stripe_secret_key") == STRIPE_KEY
    assert settings.provider_keys() == {"deepseek": DEEPSEEK_KEY}
    # The keys left empty in the secret are unset settings, not empty ones.
    assert settings.stripe_webhook_secret is None and settings.openai_api_key is None


def test_the_secret_wins_over_the_environment_for_what_it_holds_and_arguments_win_over_both(
        on_aws, stage_secret, monkeypatch):
    monkeypatch.setenv("TOKENWAY_ADMIN_TOKEN", "stale-token-from-the-environment")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_from_the_environment")
    monkeypatch.setenv("TOKENWAY_SECRETS_ID", stage_secret)
    settings = Settings()
    assert _secret(settings, "admin_token") == ADMIN_TOKEN
    assert _secret(settings, "stripe_webhook_secret") == "whsec_from_the_environment"
    assert _secret(Settings(admin_token="given"), "admin_token") == "given"


def test_without_a_secret_named_the_environment_alone_is_read_and_aws_is_not_called(reads, monkeypatch, tmp_path):
    monkeypatch.delenv("TOKENWAY_SECRETS_ID", raising=False)
    monkeypatch.setenv("TOKENWAY_ADMIN_TOKEN", "from-the-environment")
    settings = Settings(storage="sqlite", data_dir=tmp_path)
    assert _secret(settings, "admin_token") == "from-the-environment"
    assert reads == []


def test_each_construction_reads_the_secret_once_and_the_process_settings_once(
        on_aws, stage_secret, reads, monkeypatch):
    monkeypatch.setenv("TOKENWAY_SECRETS_ID", stage_secret)
    Settings()
    assert reads == [stage_secret]
    current_settings.cache_clear()
    try:
        first = current_settings()
        assert current_settings() is first
        assert reads == [stage_secret, stage_secret]
        assert _secret(first, "admin_token") == ADMIN_TOKEN
    finally:
        current_settings.cache_clear()


def test_a_missing_secret_stops_the_start_naming_it_and_the_aws_error(on_aws, monkeypatch):
    monkeypatch.setenv("TOKENWAY_SECRETS_ID", "nowhere/secrets")
    with pytest.raises(SecretsUnavailable) as raised:
        Settings()
    assert str(raised.value) == "cannot read the secret 'nowhere/secrets': ResourceNotFoundException"


def test_an_unreachable_secrets_manager_is_named_by_its_error_class(monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(SecretsUnavailable, match=r"^cannot read the secret 's/secrets': EndpointConnectionError$"):
        Settings(secrets_id="s/secrets", aws_endpoint_url="http://127.0.0.1:9", aws_region="us-east-1")


@pytest.mark.parametrize("text, reason", [
    ('{"TOKENWAY_ADMIN_TOKEN": "' + ADMIN_TOKEN + '", "TOKENWAY_RESOURCE_PREFIX": "elsewhere"}',
     "holds 'TOKENWAY_RESOURCE_PREFIX', which is not a secret setting"),
    ('{"TOKENWAY_ADMIN_TOKEN": ' + str(len(ADMIN_TOKEN)) + '}', "holds a non-string value for 'TOKENWAY_ADMIN_TOKEN'"),
    ("TOKENWAY_ADMIN_TOKEN=" + ADMIN_TOKEN, "is not a JSON object in SecretString"),
    ('["' + ADMIN_TOKEN + '"]', "is not a JSON object in SecretString"),
], ids=["a-setting-not-secret", "a-number", "not-json", "not-an-object"])
def test_a_malformed_secret_is_refused_without_its_text_in_the_error(on_aws, secrets, monkeypatch, text, reason):
    name = f"bad-{uuid.uuid4().hex[:8]}/secrets"
    secrets.create_secret(Name=name, SecretString=text)
    monkeypatch.setenv("TOKENWAY_SECRETS_ID", name)
    with pytest.raises(SecretsUnavailable) as raised:
        Settings()
    message = str(raised.value)
    assert f"the secret {name!r} " in message and reason in message
    assert ADMIN_TOKEN not in "".join(traceback.format_exception(raised.value))  # as a log would show it


def test_the_example_file_lists_every_secret_setting_empty():
    example = json.loads((ROOT / "infra" / "secrets.example.json").read_text())
    assert example == dict.fromkeys(secret_env_names(), "")
