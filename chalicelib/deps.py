"""Composition root: builds clients, repositories and services once per container."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
from botocore.config import Config as BotoConfig

from chalicelib.admin.operations import Admin
from chalicelib.billing.holds import Billing
from chalicelib.billing.wallet import Wallet
from chalicelib.catalog.catalog import Catalog
from chalicelib.config import Settings, current_settings
from chalicelib.identity.accounts import Accounts
from chalicelib.identity.login_limits import LoginLimiter
from chalicelib.identity.password_links import PasswordLinks
from chalicelib.identity.password_reset import PasswordResets
from chalicelib.identity.passwords import PasswordHasher
from chalicelib.identity.sessions import ConsoleAuth
from chalicelib.keys.auth import KeyAuthenticator, KeyHasher
from chalicelib.keys.manage import KeyManager
from chalicelib.keys.plans import KeyPlans
from chalicelib.payments.codes import RedemptionCodes
from chalicelib.payments.reversals import Reversals
from chalicelib.payments.topups import Topups
from chalicelib.payments.webhooks import PaymentWebhooks
from chalicelib.providers.anthropic import AnthropicAdapter
from chalicelib.providers.mail_port import MailSender
from chalicelib.providers.openai_compat import OpenAICompatAdapter
from chalicelib.providers.outbox_mail import OutboxMail
from chalicelib.providers.payment_port import PaymentProvider
from chalicelib.providers.port import Adapters
from chalicelib.providers.ses_mail import SesMail
from chalicelib.relay.health import BreakerSettings, ChannelBreakers
from chalicelib.relay.limits import RequestLimits
from chalicelib.relay.relay import Relay
from chalicelib.storage.athena_usage_log import AthenaUsageLog
from chalicelib.storage.dynamodb.account_repo import DynamoAccountRepo
from chalicelib.storage.dynamodb.catalog_repo import DynamoCatalogRepo
from chalicelib.storage.dynamodb.key_repo import DynamoKeyRepo
from chalicelib.storage.dynamodb.limit_repo import DynamoLimitRepo
from chalicelib.storage.dynamodb.login_attempt_repo import DynamoLoginAttemptRepo
from chalicelib.storage.dynamodb.password_link_repo import DynamoPasswordLinkRepo
from chalicelib.storage.dynamodb.payment_repo import DynamoPaymentRepo
from chalicelib.storage.dynamodb.redemption_repo import DynamoRedemptionRepo
from chalicelib.storage.dynamodb.session_repo import DynamoSessionRepo
from chalicelib.storage.dynamodb.usage_rollup_repo import DynamoUsageRollupRepo
from chalicelib.storage.dynamodb.wallet_repo import DynamoWalletRepo
from chalicelib.storage.local_usage_sink import LocalUsageSink
from chalicelib.storage.ports import (
    AccountRepo,
    CatalogRepo,
    KeyRepo,
    KeyWrapper,
    LimitRepo,
    LoginAttemptRepo,
    PasswordLinkRepo,
    PaymentRepo,
    RedemptionRepo,
    SessionRepo,
    UsageLog,
    UsageRollupRepo,
    UsageSink,
    WalletRepo,
)
from chalicelib.storage.secrets.envelope import SecretSealer
from chalicelib.storage.secrets.kms import KmsKeyWrapper
from chalicelib.storage.secrets.local import LocalKeyWrapper
from chalicelib.storage.sqlite.account_repo import SqliteAccountRepo
from chalicelib.storage.sqlite.catalog_repo import SqliteCatalogRepo
from chalicelib.storage.sqlite.database import Database
from chalicelib.storage.sqlite.key_repo import SqliteKeyRepo
from chalicelib.storage.sqlite.limit_repo import SqliteLimitRepo
from chalicelib.storage.sqlite.login_attempt_repo import SqliteLoginAttemptRepo
from chalicelib.storage.sqlite.password_link_repo import SqlitePasswordLinkRepo
from chalicelib.storage.sqlite.payment_repo import SqlitePaymentRepo
from chalicelib.storage.sqlite.redemption_repo import SqliteRedemptionRepo
from chalicelib.storage.sqlite.session_repo import SqliteSessionRepo
from chalicelib.storage.sqlite.usage_rollup_repo import SqliteUsageRollupRepo
from chalicelib.storage.sqlite.wallet_repo import SqliteWalletRepo
from chalicelib.storage.usage_sinks import FirehoseUsageSink
from chalicelib.usage.reports import UsageReports


@dataclass(frozen=True)
class Gateway:
    """Everything a view may call."""

    settings: Settings
    catalog: Catalog
    keys: KeyAuthenticator
    relay: Relay
    billing: Billing
    wallet: Wallet
    admin: Admin
    console: ConsoleAuth
    accounts: Accounts
    password_links: PasswordLinks
    password_resets: PasswordResets
    tokens: KeyManager
    payments: PaymentRepo
    topups: Topups
    reversals: Reversals
    webhooks: PaymentWebhooks
    codes: RedemptionCodes
    usage: UsageReports
    usage_sink: UsageSink


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def aws_client(session: boto3.session.Session, settings: Settings, service: str) -> Any:
    config = BotoConfig(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=10,
                        max_pool_connections=64)
    return session.client(service, region_name=settings.aws_region, endpoint_url=settings.aws_endpoint_url,
                          config=config)


def key_wrapper(settings: Settings, session: boto3.session.Session) -> KeyWrapper:
    """The keeper of the key that seals channel keys: the local key file if there is one, else KMS."""
    if settings.secrets_key_path is not None:
        return LocalKeyWrapper.from_file(settings.secrets_key_path)
    return KmsKeyWrapper(aws_client(session, settings, "kms"), settings.secrets_kms_key_id)


@dataclass(frozen=True)
class Repositories:
    """One backend's implementation of every repository port."""

    accounts: AccountRepo
    keys: KeyRepo
    wallets: WalletRepo
    catalog: CatalogRepo
    sessions: SessionRepo
    login_attempts: LoginAttemptRepo
    password_links: PasswordLinkRepo
    payments: PaymentRepo
    codes: RedemptionRepo
    rollups: UsageRollupRepo
    limits: LimitRepo


def dynamodb_repositories(settings: Settings, session: boto3.session.Session, sealer: SecretSealer) -> Repositories:
    dynamodb = aws_client(session, settings, "dynamodb")
    table = settings.table_name
    return Repositories(
        accounts=DynamoAccountRepo(dynamodb, table("accounts"), emails=table("emails")),
        keys=DynamoKeyRepo(dynamodb, table("keys")),
        wallets=DynamoWalletRepo(dynamodb, accounts=table("accounts"), holds=table("holds"), ledger=table("ledger"),
                                 keys=table("keys"), rollups=table("usage-rollups"),
                                 outbox=table("usage-outbox")),
        catalog=DynamoCatalogRepo(dynamodb, table("catalog"), sealer=sealer),
        sessions=DynamoSessionRepo(dynamodb, table("sessions")),
        login_attempts=DynamoLoginAttemptRepo(dynamodb, table("login-attempts")),
        password_links=DynamoPasswordLinkRepo(dynamodb, table("password-links")),
        payments=DynamoPaymentRepo(dynamodb, orders=table("orders"), events=table("payment-events"),
                                   catalog=table("catalog"), accounts=table("accounts"), ledger=table("ledger")),
        codes=DynamoRedemptionRepo(dynamodb, codes=table("codes"), accounts=table("accounts"), ledger=table("ledger")),
        rollups=DynamoUsageRollupRepo(dynamodb, table("usage-rollups")),
        limits=DynamoLimitRepo(dynamodb, table("limits")),
    )


def sqlite_repositories(settings: Settings, sealer: SecretSealer) -> Repositories:
    db = Database(settings.database_path, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    return Repositories(
        accounts=SqliteAccountRepo(db),
        keys=SqliteKeyRepo(db),
        wallets=SqliteWalletRepo(db),
        catalog=SqliteCatalogRepo(db, sealer=sealer),
        sessions=SqliteSessionRepo(db),
        login_attempts=SqliteLoginAttemptRepo(db),
        password_links=SqlitePasswordLinkRepo(db),
        payments=SqlitePaymentRepo(db),
        codes=SqliteRedemptionRepo(db),
        rollups=SqliteUsageRollupRepo(db),
        limits=SqliteLimitRepo(db),
    )


def usage_log(settings: Settings, session: boto3.session.Session) -> UsageLog:
    """Where the request log is read: DuckDB over the data directory's files beside SQLite, Athena over the
    bucket beside DynamoDB (duckdb is a one-machine dependency, imported only there)."""
    if settings.storage == "sqlite":
        from chalicelib.storage.duckdb_usage_log import DuckDbUsageLog

        return DuckDbUsageLog(settings.data_dir, now_ms=now_ms)
    return AthenaUsageLog(aws_client(session, settings, "athena"), database=settings.usage_database,
                          table=settings.usage_table, workgroup=settings.usage_workgroup, now_ms=now_ms)


def usage_sink(settings: Settings, session: boto3.session.Session) -> UsageSink:
    """Where usage events go: files in the data directory beside SQLite, Firehose beside DynamoDB."""
    if settings.storage == "sqlite":
        return LocalUsageSink(settings.data_dir, max_bytes=settings.usage_file_max_bytes)
    return FirehoseUsageSink(aws_client(session, settings, "firehose"), settings.usage_stream_name)


def mail_sender(settings: Settings, session: boto3.session.Session) -> MailSender:
    """Where the gateway's emails go: the outbox in the data directory beside SQLite, SES beside DynamoDB."""
    if settings.storage == "sqlite":
        return OutboxMail(settings.outbox_path, settings.mail_from)
    return SesMail(aws_client(session, settings, "sesv2"), settings.mail_from)


def payment_provider(settings: Settings) -> PaymentProvider | None:
    """Stripe (or the local demo provider speaking its API) when a secret key is set; else no top-ups."""
    if settings.stripe_secret_key is None or not settings.stripe_secret_key.get_secret_value():
        return None
    from chalicelib.providers.stripe_payments import StripePayments  # the stripe library loads only if used

    webhook_secret = settings.stripe_webhook_secret.get_secret_value() if settings.stripe_webhook_secret else None
    return StripePayments(settings.stripe_secret_key.get_secret_value(), webhook_secret=webhook_secret,
                          api_base=settings.stripe_api_base, methods=settings.payment_methods)


def build_gateway(settings: Settings, *, http: httpx.Client | None = None,
                  session: boto3.session.Session | None = None) -> Gateway:
    """Wire the services; `http` and the boto3 `session` may be given (tests, benchmarks)."""
    session = session or boto3.session.Session()
    sealer = SecretSealer(key_wrapper(settings, session))
    if settings.storage == "sqlite":
        repos = sqlite_repositories(settings, sealer)
    else:
        repos = dynamodb_repositories(settings, session, sealer)
    keys_repo, accounts_repo, wallets, catalog_repo = repos.keys, repos.accounts, repos.wallets, repos.catalog
    http = http or httpx.Client(limits=httpx.Limits(max_connections=200, max_keepalive_connections=50))
    adapters: Adapters = {"openai": OpenAICompatAdapter(http), "anthropic": AnthropicAdapter(http)}
    catalog = Catalog(catalog_repo, settings.provider_keys(), ttl_s=settings.catalog_cache_ttl_s,
                      channel_kinds=frozenset(adapters))
    hasher = KeyHasher(settings.key_pepper.get_secret_value() if settings.key_pepper else None)
    billing = Billing(wallets, keys_repo, now_ms=now_ms, hold_ttl_ms=settings.hold_grace_s * 1000,
                      limits=repos.limits)
    wallet = Wallet(wallets, now_ms=now_ms)
    # Kept in this process's memory: a breaker needs no state shared across processes (see health.py).
    breakers = ChannelBreakers(BreakerSettings(failures=settings.breaker_failures,
                                               window_s=settings.breaker_window_s,
                                               cooldown_s=settings.breaker_cooldown_s))
    sink = usage_sink(settings, session)
    relay = Relay(
        catalog, billing, adapters, sink,
        plans=KeyPlans(catalog, accounts_repo),
        default_timeout_s=settings.upstream_timeout_s,
        first_token_timeout_s=settings.first_token_timeout_s,
        breakers=breakers,
        limits=RequestLimits(repos.limits),
    )
    key_manager = KeyManager(keys_repo, catalog, hasher, now_ms=now_ms)
    admin = Admin(
        token=settings.admin_token.get_secret_value() if settings.admin_token else None,
        accounts=accounts_repo,
        wallets=wallets, wallet=wallet, catalog_repo=catalog_repo, catalog=catalog, key_manager=key_manager,
        now_ms=now_ms, breakers=breakers,
    )
    console = ConsoleAuth(repos.sessions, accounts_repo, now_ms, ttl_s=settings.session_ttl_s)
    limiter = LoginLimiter(
        repos.login_attempts, now_ms,
        per_account_ip=settings.login_failures_per_account_ip, per_ip=settings.login_failures_per_ip,
        window_s=settings.login_window_s, per_account=settings.login_failures_per_account,
        delay_s=settings.login_delay_s, max_delay_s=settings.login_max_delay_s, signups_per_ip=settings.signups_per_ip,
        resets_per_email=settings.password_resets_per_email, resets_per_ip=settings.password_resets_per_ip,
        reset_window_s=settings.password_reset_window_s,
    )
    password_hasher = PasswordHasher()
    password_links = PasswordLinks(
        repos.password_links, accounts_repo, password_hasher,
        now_ms, ttl_s=settings.password_link_ttl_s, console_url=settings.console_url,
    )
    password_resets = PasswordResets(
        accounts_repo, password_links, limiter, mail_sender(settings, session),
        console_url=settings.console_url or settings.public_url, ttl_s=settings.password_reset_ttl_s,
        floor_s=settings.password_reset_floor_ms / 1000,
    )
    topups = Topups(repos.payments, payment_provider(settings), now_ms=now_ms)
    reversals = Reversals(repos.payments, wallets, topups, now_ms=now_ms)
    return Gateway(
        settings=settings,
        catalog=catalog,
        keys=KeyAuthenticator(keys_repo, hasher, ttl_s=settings.key_cache_ttl_s),
        relay=relay,
        billing=billing,
        wallet=wallet,
        admin=admin,
        console=console,
        accounts=Accounts(accounts_repo, console, limiter, password_hasher, now_ms),
        password_links=password_links,
        password_resets=password_resets,
        tokens=key_manager,
        payments=repos.payments,
        topups=topups,
        reversals=reversals,
        webhooks=PaymentWebhooks(repos.payments, topups, reversals, now_ms=now_ms),
        codes=RedemptionCodes(repos.codes, repos.login_attempts, hasher, now_ms=now_ms),
        usage=UsageReports(repos.rollups, usage_log(settings, session), keys_repo, now_ms=now_ms),
        usage_sink=sink,
    )


_lock = threading.Lock()
_gateway: Gateway | None = None


def get_gateway() -> Gateway:
    """The container's gateway, built on first use from the environment's settings."""
    global _gateway
    gateway = _gateway  # built already: every request after the first takes no lock
    if gateway is not None:
        return gateway
    with _lock:
        if _gateway is None:
            _gateway = build_gateway(current_settings())
        return _gateway


def use_gateway(gateway: Gateway | None) -> None:
    """Replace the container's gateway (tests and local tools build their own)."""
    global _gateway
    with _lock:
        _gateway = gateway
