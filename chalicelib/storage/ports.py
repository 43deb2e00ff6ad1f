"""Repository interfaces. Services depend on these; storage modules implement them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from chalicelib.core.domain import (
    Account,
    ApiKey,
    Balance,
    Channel,
    ConsoleSession,
    Credited,
    Group,
    Hold,
    HoldResult,
    LedgerEntry,
    ModelEntry,
    PasswordLink,
    Settlement,
    UsageEvent,
)
from chalicelib.core.payments import (
    LedgerPage,
    OrderPage,
    Redeemed,
    RedemptionCode,
    TopupOrder,
    TopupSettings,
    WalletMove,
)
from chalicelib.core.usage import LogFilter, LogPage, RollupRow, UsageDelta


class AccountRepo(ABC):
    """Accounts, each with a unique email. Writes here never touch the wallet's counters."""

    @abstractmethod
    def create(self, account: Account) -> None:
        """Store a new account with an empty wallet; EmailTaken if another account has its
        email, Conflict if its id exists. Nothing is written in either case."""

    @abstractmethod
    def get(self, account_id: str) -> Account | None:
        """The account, or None."""

    @abstractmethod
    def get_by_email(self, email: str) -> Account | None:
        """The account with this email (compared in lower case), or None."""

    @abstractmethod
    def list(self, search: str | None = None) -> list[Account]:
        """Every account, oldest first; with `search`, those whose email or id contains it."""

    @abstractmethod
    def set_password(self, account_id: str, password_hash: str) -> Account:
        """Store a new password hash and move `session_epoch` on by one; NotFound if no account."""

    @abstractmethod
    def set_status(self, account_id: str, status: str) -> Account:
        """Set "active" or "disabled"; NotFound if no account."""

    @abstractmethod
    def set_groups(self, account_id: str, groups: tuple[str, ...]) -> Account:
        """Set the plans the operator gave the account; NotFound if no account."""

    @abstractmethod
    def set_default_plan(self, account_id: str, default_plan: bool) -> Account:
        """Say whether the `default` plan is among the account's plans; NotFound if no account."""

    @abstractmethod
    def set_role(self, account_id: str, role: str) -> Account:
        """Set "customer" or "admin"; NotFound if no account."""


class KeyRepo(ABC):
    @abstractmethod
    def create(self, key: ApiKey) -> None:
        """Store a new key record (its hash, never its secret)."""

    @abstractmethod
    def get_by_hash(self, key_hash: str, *, consistent: bool = False) -> ApiKey | None:
        """The key whose secret hashes to `key_hash`, or None; `consistent` reads the latest write."""

    @abstractmethod
    def get_by_id(self, key_id: str) -> ApiKey | None:
        """The key with this id, or None."""

    @abstractmethod
    def list_for_account(self, account_id: str) -> list[ApiKey]:
        """The account's keys, oldest first."""

    @abstractmethod
    def save_settings(self, key: ApiKey) -> ApiKey:
        """Store the settings of `key` (name, group, status, expiry, quota, models, networks),
        keeping its counters; a quota set or changed restarts `quota_left` from what is spent
        and reserved. Saved on the key's current item, also if it was regenerated since `key`
        was read. The key as stored."""

    @abstractmethod
    def replace_hash(self, key: ApiKey, key_hash: str, hint: str) -> ApiKey:
        """Move the key, with its settings and counters exactly as they are, to a new secret: the
        old hash stops working at once, and holds placed under it still settle and release on the
        key. Conflict if the key stays too busy to copy; NotFound if there is no such key."""


class CatalogRepo(ABC):
    """Operator-configured channels and models (the built-in catalog lives in code)."""

    @abstractmethod
    def put_channel(self, channel: Channel) -> None:
        """Store the channel, its API key sealed (never in plain text); StorageError if it cannot be sealed."""

    @abstractmethod
    def set_channel_state(self, name: str, state: str) -> bool:
        """Force a stored channel's breaker state ("auto", "open" or "closed"); False if no such channel."""

    @abstractmethod
    def put_model(self, model: ModelEntry) -> None: ...

    @abstractmethod
    def put_group(self, group: Group) -> None: ...

    @abstractmethod
    def load(self) -> tuple[list[Channel], list[ModelEntry], list[Group]]:
        """Every configured channel, model and group, in one read. A channel whose key does not open
        (altered, moved to another name, sealed under another key) is left out, and the reason logged."""


@dataclass(frozen=True)
class DataKey:
    """A fresh 256-bit key for one secret, in the clear and wrapped under the key-encryption key."""

    plaintext: bytes = field(repr=False)
    wrapped: bytes


class KeyWrapper(ABC):
    """The keeper of the key-encryption key (KMS, or a local key file): it makes data keys and unwraps them,
    and the key-encryption key itself never leaves it. `context` (the secret's owner) is bound to each
    wrapped key: unwrapping under another context fails."""

    # Stored beside each wrapped key, so a secret sealed by another keeper is reported as such.
    name: str

    @abstractmethod
    def generate(self, context: Mapping[str, str]) -> DataKey:
        """A new data key; StorageError if the keeper cannot be reached."""

    @abstractmethod
    def unwrap(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        """The data key; SecretUnreadable if it was not wrapped by this keeper under this context,
        StorageError if the keeper cannot be reached."""


class WalletRepo(ABC):
    """Balances, holds, the ledger, and the key counters that move with them. Every write keeps
    these invariants:

    - `available` never goes below zero;
    - a key's spend never passes its quota: `quota_left` never goes below zero;
    - the sum of an account's ledger entries equals `available + held` once
      no hold is open (a hold moves money from available to held, and its
      settlement writes the one ledger entry of the charge);
    - a hold is settled or released exactly once, and counted on its key's current
      item even if the key was regenerated meanwhile;
    - a credit's claim credits once;
    - the sum of an account's ledger entries equals `available + held + frozen - debt`
      at every commit, holds open or not (Balance.net);
    - nothing is held while the account owes a debt or has a dispute open.
    """

    @abstractmethod
    def balance(self, account_id: str) -> Balance:
        """The wallet's balance (zero for an unknown account)."""

    @abstractmethod
    def credit(self, entry: LedgerEntry, *, claim: str | None = None) -> Credited:
        """Add `entry.amount` (> 0) to the wallet (paying any debt first) and record `entry`, once
        per `claim` across all accounts (without one, once per entry id). If the claim was taken
        before, nothing is written and the entry that took it comes back, with `applied` False.
        NotFound if no account."""

    @abstractmethod
    def move(self, move: WalletMove, *, claim: str | None = None) -> Credited:
        """Apply `move` atomically (see WalletMove), once per `claim` as `credit` does; the first
        entry stands for the move in the result. NotFound if no account; Conflict if `freeze`
        is more than is available or `unfreeze` more than is frozen (nothing is written)."""

    @abstractmethod
    def ledger_page(self, account_id: str, *, limit: int, cursor: str | None = None) -> LedgerPage:
        """The account's entries newest first, `limit` at a time, each with the ledger's running
        sum after it (the balance after it), read from one consistent view of the wallet.
        `cursor` is the previous page's; InvalidRequest (param `cursor`) if it is not one."""

    @abstractmethod
    def hold(self, hold: Hold) -> HoldResult:
        """Reserve `hold.amount` on the account and on the key, if the account is active and has
        it available and the key is active, unexpired and within its quota."""

    # Whether settle and release write the request's usage event in their own transaction (to an
    # outbox forwarded to the usage sink), so that nobody else sends it: no round trip of its own.
    records_events: bool = False

    @abstractmethod
    def settle(self, hold: Hold, cost: int, entry: LedgerEntry, usage: UsageDelta | None = None,
               event: UsageEvent | None = None) -> Settlement:
        """Close the hold and charge `cost`: from the hold first, then beyond it only as far as
        both the wallet's available balance and the key's remaining quota allow; the rest is the
        shortfall, recorded on `entry` and added to the account's running total. `entry` is the
        ledger entry to write, whose amount and shortfall are filled in here. A second settle
        of the same hold charges nothing more. `usage` is added to its rollup row in the same
        transaction, with `cost` replaced by what was charged (and only by the settle that closes
        the hold: a request is counted once). Where `records_events`, `event` is written in the
        same transaction with what was charged and the shortfall filled in (`recorded` says so)."""

    @abstractmethod
    def release(self, hold: Hold, usage: UsageDelta | None = None, event: UsageEvent | None = None) -> bool:
        """Close the hold and give its amount back; False if it was already closed. `usage` (a
        failed request: an error at no cost) is added to its rollup row in the same transaction,
        only by the release that closes the hold; where `records_events`, so is `event`."""

    @abstractmethod
    def ledger(self, account_id: str) -> list[LedgerEntry]:
        """The account's ledger, oldest first."""

    @abstractmethod
    def expired_holds(self, now: int) -> list[Hold]:
        """Holds whose `expires_at` has passed."""


class PaymentRepo(ABC):
    """Top-up orders, the money their payments move, the provider events already handled, and
    the operator's top-up settings.

    An order changes only through `update`, conditional on the version it was read at, so two
    deliveries of one payment event (or the webhook and the customer's return racing) can never
    both apply: the second finds the version moved on, reads the order again and sees it done."""

    @abstractmethod
    def create_order(self, order: TopupOrder) -> None:
        """Store a new order; Conflict if its id exists."""

    @abstractmethod
    def get_order(self, order_id: str) -> TopupOrder | None:
        """The order (read consistently), or None."""

    @abstractmethod
    def order_by_payment(self, payment_intent: str) -> TopupOrder | None:
        """The order paid by this payment (its provider's payment intent), or None."""

    @abstractmethod
    def list_orders(self, *, account_id: str | None = None, status: str | None = None, limit: int = 50,
                    cursor: str | None = None) -> OrderPage:
        """Orders newest first, of one account and/or in one status; InvalidRequest (param
        `cursor`) for a cursor that is not one."""

    @abstractmethod
    def update(self, order: TopupOrder, changes: Mapping[str, object], move: WalletMove | None = None,
               ) -> TopupOrder | None:
        """Apply `changes` (fields of TopupOrder) to the order if it is still at `order.version`,
        moving its version on by one, together with `move` on the wallet, in one transaction.
        The order as changed; None if its version moved on meanwhile (nothing is written).
        NotFound if there is no such order or account; Conflict if the move's `freeze` or
        `unfreeze` is more than the wallet has."""

    @abstractmethod
    def record_event(self, event_id: str, event_type: str, received_at: int, expires_at: int) -> bool:
        """Remember that the provider event was handled, until `expires_at` (epoch ms): True the first time."""

    @abstractmethod
    def event_handled(self, event_id: str) -> bool:
        """Whether the provider event was handled before."""

    @abstractmethod
    def topup_settings(self) -> TopupSettings | None:
        """The operator's top-up settings, or None if never set (the defaults apply)."""

    @abstractmethod
    def put_topup_settings(self, settings: TopupSettings) -> None: ...


class RedemptionRepo(ABC):
    """Redemption codes, by the hash of their secret."""

    @abstractmethod
    def create(self, codes: list[RedemptionCode]) -> None:
        """Store new codes, all or none; Conflict if a hash exists."""

    @abstractmethod
    def list(self, *, batch: str | None = None) -> list[RedemptionCode]:
        """Every code (of one batch), newest first."""

    @abstractmethod
    def disable(self, code_id: str) -> RedemptionCode | None:
        """Disable an active code; the code as it is now (unchanged if used), or None if unknown."""

    @abstractmethod
    def redeem(self, code_hash: str, entry: LedgerEntry, now_ms: int) -> Redeemed:
        """Use the code for `entry.account_id`: if it is active and not expired at `now_ms`, mark
        it used and credit its value (paying any debt first) with `entry`, whose amount and
        reference are filled in from the code (its value and public id), in one transaction. Of
        concurrent uses of one code, exactly one redeems; the others read USED. NotFound if no account."""


class UsageRollupRepo(ABC):
    """The live usage rollups the wallet's settle and release transactions write."""

    @abstractmethod
    def rows(self, account_id: str | None, since_ms: int, until_ms: int) -> list[RollupRow]:
        """Every rollup row of the account (None: of every account) whose bucket starts in
        [since_ms, until_ms), read consistently."""

    @abstractmethod
    def sums(self, account_id: str | None, since_ms: int, until_ms: int, by: str, *,
             latency: bool = True) -> list[RollupRow]:
        """Those rows summed per value of `by` (one of ROLLUP_DIMENSIONS: "bucket", "model",
        "key_id", "channel", "account_id"), each sum a RollupRow whose other labels are None.
        Without `latency`, the latency and time-to-first-token sums and the histogram may be left
        at zero (a series needs none of them, and they are most of a row's counters)."""


class UsageLog(ABC):
    """The request log: the usage events as stored (local files or the usage bucket), queried."""

    @abstractmethod
    def page(self, where: LogFilter, *, limit: int, cursor: str | None = None) -> LogPage:
        """Events newest first (by time, then request id), `limit` at a time; InvalidRequest
        (param `cursor`) for a cursor that is not one."""

    @abstractmethod
    def export(self, where: LogFilter) -> Iterator[UsageEvent]:
        """Every event of the filter, oldest first, read as they are consumed (any number)."""


class SessionRepo(ABC):
    """Console sessions, by the SHA-256 of their token."""

    @abstractmethod
    def create(self, session: ConsoleSession) -> None:
        """Store a new session; Conflict if its hash exists."""

    @abstractmethod
    def get(self, session_hash: str) -> ConsoleSession | None:
        """The session, expired or not, or None once deleted (or removed by TTL)."""

    @abstractmethod
    def delete(self, session_hash: str) -> None:
        """Remove the session; nothing happens if it is gone already."""


class LoginAttemptRepo(ABC):
    """Counters of login attempts and the locks that space guesses out; the caller puts any
    time window in the counter id. Expiry is the reader's to check: storage may keep an
    expired item for a while (DynamoDB's TTL removes items lazily)."""

    @abstractmethod
    def add(self, counter_id: str, amount: int, expires_at_s: int) -> int:
        """Add `amount` (may be negative) atomically and move the expiry to `expires_at_s` (epoch
        seconds); the new count."""

    @abstractmethod
    def count(self, counter_id: str, now_s: int) -> int:
        """The counter's count, or 0 if it does not exist or expired before `now_s`."""

    @abstractmethod
    def clear(self, counter_id: str) -> None:
        """Remove the counter (or lock)."""

    @abstractmethod
    def claim(self, lock_id: str, now_s: int, until_s: int) -> int:
        """Take the lock until `until_s` if it is free at `now_s` (never taken, or its time
        is over): 0. Otherwise leave it and return the time it is taken until. Of concurrent
        claims of a free lock, exactly one gets 0."""


@dataclass(frozen=True)
class LimitCharge:
    """What one request counts against one scope (e.g. `key#<id>`, `key#<id>#model#<name>`) and
    the scope's limits (None: not counted against that limit)."""

    scope: str
    tokens: int  # the request's estimate: prompt and output cap
    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None


@dataclass(frozen=True)
class ScopeCount:
    """A scope's counters after an admission (or, when refused, as they were): its minute window's
    requests and tokens, its requests in flight, and the seconds until the window ends."""

    scope: str
    window_id: str  # `<scope>#<epoch minute>`: where a token correction goes
    requests: int
    tokens: int
    inflight: int
    reset_s: int


@dataclass(frozen=True)
class Admission:
    """Whether a request was admitted; if not, which scope and limit ("rpm", "tpm" or
    "concurrency") refused it and the seconds until it may succeed. `counts` are the scopes' counters
    where the backend knows them (empty otherwise)."""

    admitted: bool
    counts: tuple[ScopeCount, ...] = ()
    refused_scope: str | None = None
    refused_limit: str | None = None
    retry_after_s: int = 0


@dataclass(frozen=True)
class Lease:
    """A request admitted and not yet finished: the scopes whose in-flight counters it holds."""

    request_id: str
    scopes: tuple[str, ...]
    expires_at_s: int


class LimitRepo(ABC):
    """Request limit counters, exact across processes: per scope, a minute window (`<scope>#<epoch
    minute>`: requests and tokens; expires a minute after it ends) and an in-flight counter held by
    leases. Each method is one atomic write."""

    @abstractmethod
    def admit(self, request_id: str, charges: list[LimitCharge], lease_expires_at_s: int, *,
              now_s: int) -> Admission:
        """Count the request in every charge's scope: the window's requests +1 (at most rpm), its tokens
        + the estimate (at most tpm), the in-flight counter +1 (at most concurrency), and a lease naming
        the scopes; any limit exceeded: nothing is written, and the Admission says which."""

    @abstractmethod
    def finish(self, request_id: str, token_corrections: list[tuple[str, int]]) -> bool:
        """Give the lease's in-flight slots back and add each (window_id, actual - estimate) to its window,
        once: False, and nothing written, if the lease is gone (already finished)."""

    @abstractmethod
    def expired_leases(self, now_s: int) -> list[Lease]:
        """Leases past their expiry, for the sweeper to finish."""


class PasswordLinkRepo(ABC):
    """One-time set-password links, at most one per account, by the SHA-256 of their token."""

    @abstractmethod
    def put(self, link: PasswordLink) -> None:
        """Store the account's link, replacing any earlier one (which stops working)."""

    @abstractmethod
    def get(self, account_id: str) -> PasswordLink | None:
        """The account's link, expired or not, or None once used (or removed by TTL)."""

    @abstractmethod
    def consume(self, account_id: str, link_hash: str, now_ms: int) -> bool:
        """Remove the account's link if it is the one with `link_hash` and has not expired at
        `now_ms`: True. False otherwise, and nothing changes. Of concurrent uses of one link,
        exactly one gets True."""


def account_refusal(account: dict | None, amount: int) -> HoldResult:
    """Why a hold's account condition failed, from the account as it was: suspended by an open
    dispute; a short wallet (not active, not enough available, or a debt owed); else the one
    condition left, a refused plan."""
    if not account or account.get("status") != "active":
        return HoldResult.WALLET_SHORT
    if account.get("disputes", 0) > 0:
        return HoldResult.SUSPENDED
    if account.get("available", 0) < amount or account.get("debt", 0) > 0:
        return HoldResult.WALLET_SHORT
    return HoldResult.PLAN_REFUSED


def matches_search(account: Account, search: str | None) -> bool:
    needle = (search or "").lower()
    return needle in account.email.lower() or needle in account.account_id.lower()


def oldest_first(accounts: list[Account]) -> list[Account]:
    return sorted(accounts, key=lambda account: (account.created_at, account.account_id))


class UsageSink(Protocol):
    def put(self, event: UsageEvent) -> None: ...
