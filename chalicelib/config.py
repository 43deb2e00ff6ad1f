"""Gateway settings: the only place that reads environment variables."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AliasChoices, Field, IPvAnyNetwork, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Environment variables that hold each built-in provider's API key. Supplying
# one makes that provider's catalog models routable.
PROVIDER_KEY_ENV = {
    "deepseek": "DEEPSEEK_API_KEY",
    "qwen": "DASHSCOPE_API_KEY",
    "kimi": "MOONSHOT_API_KEY",
    "doubao": "ARK_API_KEY",
    "glm": "ZHIPUAI_API_KEY",
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
}


class Settings(BaseSettings):
    """Everything the gateway can be configured with, typed and defaulted."""

    model_config = SettingsConfigDict(env_prefix="TOKENWAY_", extra="ignore")

    resource_prefix: str = "tokenway-dev"
    aws_region: str = Field(
        "us-east-1", validation_alias=AliasChoices("TOKENWAY_AWS_REGION", "AWS_REGION", "AWS_DEFAULT_REGION")
    )
    # Set only for the local emulator; on AWS the SDK's own endpoints are used.
    aws_endpoint_url: str | None = None

    admin_token: SecretStr | None = None
    # Optional HMAC pepper for key hashes. Changing it invalidates every key.
    key_pepper: SecretStr | None = None

    max_body_bytes: int = Field(10 * 1024 * 1024, gt=0)
    # The proxies (CIDR blocks, comma-separated in the environment) whose X-Forwarded-For
    # is believed: the client is the right-most address in it that is not one of them.
    # None by default: the client is the peer API Gateway or the local server saw.
    trusted_proxies: Annotated[tuple[IPvAnyNetwork, ...], NoDecode] = ()
    upstream_timeout_s: float = Field(120.0, gt=0)
    # How long a looked-up key and the catalog are reused before re-reading.
    key_cache_ttl_s: float = Field(5.0, ge=0)
    catalog_cache_ttl_s: float = Field(5.0, ge=0)
    # A hold not settled after the upstream timeout plus this margin is
    # treated as abandoned and released by the sweeper.
    hold_grace_s: int = Field(300, ge=0)

    # Console sign-in: how long a session lasts, and how many failed logins
    # one account (by email) and one client IP may make per fixed window.
    session_ttl_s: int = Field(43200, gt=0)
    login_failures_per_account: int = Field(5, gt=0)
    login_failures_per_ip: int = Field(20, gt=0)
    login_window_s: int = Field(900, gt=0)
    signups_per_ip: int = Field(10, gt=0)  # per login window

    deepseek_api_key: SecretStr | None = Field(None, validation_alias="DEEPSEEK_API_KEY")
    dashscope_api_key: SecretStr | None = Field(None, validation_alias="DASHSCOPE_API_KEY")
    moonshot_api_key: SecretStr | None = Field(None, validation_alias="MOONSHOT_API_KEY")
    ark_api_key: SecretStr | None = Field(None, validation_alias="ARK_API_KEY")
    zhipuai_api_key: SecretStr | None = Field(None, validation_alias="ZHIPUAI_API_KEY")
    openai_api_key: SecretStr | None = Field(None, validation_alias="OPENAI_API_KEY")
    anthropic_api_key: SecretStr | None = Field(None, validation_alias="ANTHROPIC_API_KEY")

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    def table_name(self, table: str) -> str:
        """The DynamoDB table name of one logical table (`accounts`, `keys`, …)."""
        return f"{self.resource_prefix}-{table}"

    @property
    def usage_stream_name(self) -> str:
        return f"{self.resource_prefix}-usage"

    def provider_keys(self) -> dict[str, str]:
        """Provider name → API key, for the providers whose key is set."""
        found = {}
        for provider, env_name in PROVIDER_KEY_ENV.items():
            secret = getattr(self, env_name.lower())
            if secret is not None and secret.get_secret_value():
                found[provider] = secret.get_secret_value()
        return found
