"""Gateway settings: the only place that reads environment variables (and, on AWS, the stage's secret).

On AWS the secret settings (the admin token, the key pepper, provider keys, Stripe's secrets) live in one
Secrets Manager secret per stage, named by `TOKENWAY_SECRETS_ID` (for example `tokenway-prod/secrets`): a
JSON object whose keys are the same environment variable names. It is read once, when the settings are
built (`current_settings()`: once per container), and for the names it holds it wins over the
environment, so a value left in a function's environment cannot hide a rotated one.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, IPvAnyNetwork, SecretStr, field_validator, model_validator
from pydantic_settings import (
    AWSSecretsManagerSettingsSource,
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from chalicelib.catalog.catalog import PROVIDERS
from chalicelib.storage.data_dir import DATABASE_FILE, OUTBOX_DIR, SECRETS_KEY_FILE

# Environment variables that hold each built-in provider's API key. Supplying
# one makes that provider's catalog models routable.
PROVIDER_KEY_ENV = {provider.name: provider.key_env for provider in PROVIDERS.values()}

DEFAULT_REGION = "us-east-1"
REGION_NAMES = AliasChoices("TOKENWAY_AWS_REGION", "AWS_REGION", "AWS_DEFAULT_REGION")


class Settings(BaseSettings):
    """Everything the gateway can be configured with, typed and defaulted."""

    model_config = SettingsConfigDict(env_prefix="TOKENWAY_", extra="ignore")

    resource_prefix: str = "tokenway-dev"
    # The stage's Secrets Manager secret (name or ARN) holding the secret settings; None: the environment's.
    secrets_id: str | None = None
    # Where the tables live: DynamoDB (AWS, or the emulator), or one SQLite file in
    # `data_dir` (one machine).
    storage: Literal["dynamodb", "sqlite"] = "dynamodb"
    data_dir: Path = Path("./data")
    # How long a SQLite write waits for another writer's lock before it fails as "storage is busy" (503).
    sqlite_busy_timeout_ms: int = Field(10_000, gt=0)
    # Usage files (`<data_dir>/usage/…`, SQLite storage) start anew past this size, and every hour.
    usage_file_max_bytes: int = Field(64 * 1024 * 1024, gt=0)
    aws_region: str = Field(DEFAULT_REGION, validation_alias=REGION_NAMES)
    # Set only for the local emulator; on AWS the SDK's own endpoints are used.
    aws_endpoint_url: str | None = None

    admin_token: SecretStr | None = None
    # Optional HMAC pepper for key hashes. Changing it invalidates every key.
    key_pepper: SecretStr | None = None

    # Channel API keys are sealed at rest under one key-encryption key: the KMS key
    # `kms_key_id` (by default the template's alias `alias/<prefix>-secrets`), or, on one
    # machine, the key in `secrets_key_file` (created with mode 0600 on first use; with
    # SQLite storage and no KMS key named, `<data_dir>/secrets.key`).
    kms_key_id: str | None = None
    secrets_key_file: Path | None = None

    max_body_bytes: int = Field(10 * 1024 * 1024, gt=0)
    # The proxies (CIDR blocks, comma-separated in the environment) whose X-Forwarded-For
    # is believed: the client is the right-most address in it that is not one of them.
    # None by default: the client is the peer API Gateway or the one-machine server saw.
    trusted_proxies: Annotated[tuple[IPvAnyNetwork, ...], NoDecode] = ()
    upstream_timeout_s: float = Field(120.0, gt=0)
    # A stream whose first token has not come this long after the call moves on to the next
    # channel or model, or fails as timed out (never longer than the model's own timeout).
    first_token_timeout_s: float = Field(60.0, gt=0)
    # How long a looked-up key and the catalog are reused before re-reading.
    key_cache_ttl_s: float = Field(5.0, ge=0)
    catalog_cache_ttl_s: float = Field(5.0, ge=0)
    # Each channel's circuit breaker (relay/health.py): it opens after this many retryable
    # failures within the window, and lets one trial call through after the cool-down.
    breaker_failures: int = Field(5, ge=2)
    breaker_window_s: float = Field(60.0, gt=0)
    breaker_cooldown_s: float = Field(30.0, gt=0)
    # A hold not settled after the upstream timeout plus this margin is
    # treated as abandoned and released by the sweeper.
    hold_grace_s: int = Field(300, ge=0)

    # Console sign-in: how long a session lasts, and the failed-login limits
    # (identity/login_limits.py): per account and client address and per client
    # address in each window; per account in a day, past which guesses from
    # addresses the account never logged in from are spaced by a doubling delay.
    session_ttl_s: int = Field(43200, gt=0)
    login_failures_per_account_ip: int = Field(5, gt=0)
    login_failures_per_ip: int = Field(20, gt=0)
    login_window_s: int = Field(900, gt=0)
    login_failures_per_account: int = Field(50, gt=0)  # per day
    login_delay_s: int = Field(60, gt=0)  # the first delay past that ceiling
    login_max_delay_s: int = Field(3600, gt=0)
    signups_per_ip: int = Field(10, gt=0)  # per login window
    # How long an operator's set-password link works, and the console's address
    # that its URL starts with (empty: a path on this gateway).
    password_link_ttl_s: int = Field(72 * 3600, gt=0)
    console_url: str = ""
    # Forgotten passwords (identity/password_reset.py): how long a mailed reset link works; how many
    # reset emails an email and a client address may ask for in each window; and the least time a
    # request takes, whether it mails or not, so that its time does not tell which emails have accounts.
    password_reset_ttl_s: int = Field(3600, gt=0)
    password_resets_per_email: int = Field(3, gt=0)
    password_resets_per_ip: int = Field(10, gt=0)
    password_reset_window_s: int = Field(3600, gt=0)
    password_reset_floor_ms: int = Field(500, ge=0)
    # The sender of the gateway's emails, `address` or `Name <address>`: on AWS an identity verified in
    # SES (without one, no email is sent); on one machine only a header of the outbox's messages.
    mail_from: str = ""

    # The one-machine server (api/server.py): worker processes; threads per worker, each serving one
    # request at a time (a stream holds its thread until it ends); how long an idle kept-alive
    # connection stays open; and, once told to stop, how long requests in flight may run to their
    # end before the server cuts them (then settled for what they delivered).
    server_workers: int = Field(2, gt=0)
    server_threads: int = Field(32, gt=0)
    server_keepalive_s: int = Field(5, gt=0)
    server_graceful_timeout_s: int = Field(30, gt=0)
    # A worker silent for this long is restarted by the server; 0: never (the streaming function on
    # Lambda, whose processes are frozen between requests and would look silent once thawed).
    server_worker_timeout_s: int = Field(30, ge=0)

    # Payments (Stripe's API, or the local demo provider that speaks it). Without a secret key
    # there are no top-ups; without a webhook secret, webhooks are refused (503), never unverified.
    stripe_secret_key: SecretStr | None = Field(None, validation_alias="STRIPE_SECRET_KEY")
    stripe_webhook_secret: SecretStr | None = Field(None, validation_alias="STRIPE_WEBHOOK_SECRET")
    # The API's base URL (the library's `api` base address); None: Stripe's own.
    stripe_api_base: str | None = Field(None, validation_alias="STRIPE_API_BASE")
    # Checkout's payment method types (comma-separated in the environment): `card`, `alipay`, `wechat_pay`, …
    payment_methods: Annotated[tuple[str, ...], NoDecode] = ("card",)
    # Where checkout sends the customer back. `{ORDER_ID}` is replaced by the order's id and
    # Stripe replaces `{CHECKOUT_SESSION_ID}`; empty: this gateway's own return page under `public_url`.
    topup_success_url: str = ""
    topup_cancel_url: str = ""
    # The gateway's public base URL (as customers reach it), for links it hands out; empty:
    # taken from each request's Host.
    public_url: str = ""

    deepseek_api_key: SecretStr | None = Field(None, validation_alias="DEEPSEEK_API_KEY")
    dashscope_api_key: SecretStr | None = Field(None, validation_alias="DASHSCOPE_API_KEY")
    moonshot_api_key: SecretStr | None = Field(None, validation_alias="MOONSHOT_API_KEY")
    ark_api_key: SecretStr | None = Field(None, validation_alias="ARK_API_KEY")
    zhipuai_api_key: SecretStr | None = Field(None, validation_alias="ZHIPUAI_API_KEY")
    openai_api_key: SecretStr | None = Field(None, validation_alias="OPENAI_API_KEY")
    anthropic_api_key: SecretStr | None = Field(None, validation_alias="ANTHROPIC_API_KEY")

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Arguments win over the stage's secret, which wins over the environment.
        assert isinstance(init_settings, InitSettingsSource)
        known = SecretLocation.model_fields.keys() | set(REGION_NAMES.choices)
        location = SecretLocation(**{k: v for k, v in init_settings.init_kwargs.items() if k in known})
        if not location.secrets_id:
            return init_settings, env_settings, dotenv_settings, file_secret_settings
        secrets = StageSecrets(settings_cls, location.secrets_id, region_name=location.aws_region,
                               endpoint_url=location.aws_endpoint_url)
        return init_settings, secrets, env_settings, dotenv_settings, file_secret_settings

    @field_validator("trusted_proxies", "payment_methods", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _one_key_keeper(self) -> Settings:
        if self.kms_key_id and self.secrets_key_file:
            raise ValueError("set TOKENWAY_KMS_KEY_ID or TOKENWAY_SECRETS_KEY_FILE, not both")
        return self

    @property
    def database_path(self) -> Path:
        """The SQLite database, when `storage` is `sqlite`."""
        return self.data_dir / DATABASE_FILE

    @property
    def secrets_key_path(self) -> Path | None:
        """The local key file that seals channel keys; None: KMS seals them."""
        if self.secrets_key_file is None and self.storage == "sqlite" and not self.kms_key_id:
            return self.data_dir / SECRETS_KEY_FILE
        return self.secrets_key_file

    @property
    def outbox_path(self) -> Path:
        """Where the one-machine mode keeps the emails it would send (SQLite storage)."""
        return self.data_dir / OUTBOX_DIR

    @property
    def secrets_kms_key_id(self) -> str:
        """The KMS key that seals channel keys, when no key file is set."""
        return self.kms_key_id or f"alias/{self.resource_prefix}-secrets"

    def table_name(self, table: str) -> str:
        """The DynamoDB table name of one logical table (`accounts`, `keys`, …)."""
        return f"{self.resource_prefix}-{table}"

    @property
    def usage_stream_name(self) -> str:
        return f"{self.resource_prefix}-usage"

    @property
    def usage_database(self) -> str:
        """The Glue database of the usage events (the template's: the prefix with `_` for `-`)."""
        return self.resource_prefix.replace("-", "_")

    @property
    def usage_table(self) -> str:
        """The Glue table of the usage events (infra/template.yaml)."""
        return "usage_events"

    @property
    def usage_workgroup(self) -> str:
        """The Athena workgroup the request log's queries run in."""
        return f"{self.resource_prefix}-usage"

    def provider_keys(self) -> dict[str, str]:
        """Provider name → API key, for the providers whose key is set."""
        found = {}
        for provider, env_name in PROVIDER_KEY_ENV.items():
            secret = getattr(self, env_name.lower())
            if secret is not None and secret.get_secret_value():
                found[provider] = secret.get_secret_value()
        return found


def secret_env_names() -> tuple[str, ...]:
    """The environment variable names of the secret settings: the keys the stage's secret may hold."""
    names = []
    for name, field in Settings.model_fields.items():
        if SecretStr in getattr(field.annotation, "__args__", (field.annotation,)):
            alias = field.validation_alias
            names.append(alias if isinstance(alias, str) else f"TOKENWAY_{name.upper()}")
    return tuple(names)


@functools.cache
def current_settings() -> Settings:
    """The process's settings, built once from the environment (and the stage's secret): a server's
    workers, forked after it, share its copy."""
    return Settings()


class SecretLocation(BaseSettings):
    """Where the stage's secret is: read before the settings themselves, from the same environment."""

    model_config = SettingsConfigDict(env_prefix="TOKENWAY_", extra="ignore")

    secrets_id: str | None = None
    aws_region: str = Field(DEFAULT_REGION, validation_alias=REGION_NAMES)
    aws_endpoint_url: str | None = None



class SecretsUnavailable(RuntimeError):
    """The stage's secret could not be read or is not what the settings expect. The message names the
    secret and the reason (an AWS error code, a key name), never a value."""


class StageSecrets(AWSSecretsManagerSettingsSource):
    """pydantic-settings' Secrets Manager source, read as the environment is (the same names, case-insensitive),
    with errors that say what went wrong without the secret's text."""

    def __init__(self, settings_cls: type[BaseSettings], secret_id: str, *, region_name: str,
                 endpoint_url: str | None) -> None:
        super().__init__(settings_cls, secret_id, region_name=region_name, endpoint_url=endpoint_url,
                         case_sensitive=False, env_prefix=None)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        secret_id = self._secret_id
        try:
            reply = self._secretsmanager_client.get_secret_value(SecretId=secret_id)
        except Exception as exc:  # botocore's ClientError carries AWS's code; its other errors, their class
            code = getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__
            raise SecretsUnavailable(f"cannot read the secret {secret_id!r}: {code}") from None
        try:
            values = json.loads(reply["SecretString"])
        except (KeyError, ValueError):
            # `from None`: a JSON error carries the text it failed on.
            raise SecretsUnavailable(f"the secret {secret_id!r} is not a JSON object in SecretString") from None
        if not isinstance(values, dict):
            raise SecretsUnavailable(f"the secret {secret_id!r} is not a JSON object in SecretString")
        allowed = {name.lower() for name in secret_env_names()}
        for name, value in values.items():
            if name.lower() not in allowed:
                raise SecretsUnavailable(f"the secret {secret_id!r} holds {name!r}, which is not a secret setting "
                                         f"(one of {', '.join(secret_env_names())})")
            if not isinstance(value, str):
                raise SecretsUnavailable(f"the secret {secret_id!r} holds a non-string value for {name!r}")
        # An empty value is an unused setting, as the example file leaves it.
        return {name.lower(): value for name, value in values.items() if value}
