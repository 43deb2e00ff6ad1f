"""Repository interfaces. Services depend on these; storage modules implement them."""

from __future__ import annotations

from abc import ABC, abstractmethod

from chalicelib.domain import Account, ApiKey, Balance, Channel, Hold, LedgerEntry, ModelEntry, Settlement


class AccountRepo(ABC):
    @abstractmethod
    def create(self, account: Account) -> None:
        """Store a new account with an empty wallet."""

    @abstractmethod
    def get(self, account_id: str) -> Account | None:
        """The account, or None."""


class KeyRepo(ABC):
    @abstractmethod
    def create(self, key: ApiKey) -> None:
        """Store a new key record (its hash, never its secret)."""

    @abstractmethod
    def get_by_hash(self, key_hash: str) -> ApiKey | None:
        """The key whose secret hashes to `key_hash`, or None."""


class CatalogRepo(ABC):
    """Operator-configured channels and models (the built-in catalog lives in code)."""

    @abstractmethod
    def put_channel(self, channel: Channel) -> None: ...

    @abstractmethod
    def put_model(self, model: ModelEntry) -> None: ...

    @abstractmethod
    def load(self) -> tuple[list[Channel], list[ModelEntry]]:
        """Every configured channel and model, in one read."""


class WalletRepo(ABC):
    """Balances, holds and the ledger. Every write keeps these invariants:

    - `available` never goes below zero;
    - the sum of an account's ledger entries equals `available + held` once
      no hold is open (a hold moves money from available to held, and its
      settlement writes the one ledger entry of the charge);
    - a hold is settled or released exactly once.
    """

    @abstractmethod
    def balance(self, account_id: str) -> Balance:
        """The wallet's balance (zero for an unknown account)."""

    @abstractmethod
    def credit(self, entry: LedgerEntry) -> Balance:
        """Add `entry.amount` (> 0) to the wallet and record it; the new balance."""

    @abstractmethod
    def hold(self, hold: Hold) -> bool:
        """Reserve `hold.amount` if the wallet has it available; False if it does not."""

    @abstractmethod
    def settle(self, hold: Hold, cost: int, entry: LedgerEntry) -> Settlement:
        """Close the hold and charge `cost`: from the hold first, then from what is
        available, never below zero. `entry` is the ledger entry to write, whose
        amount and shortfall are filled in here. A second settle of the same hold
        charges nothing more."""

    @abstractmethod
    def release(self, hold: Hold) -> bool:
        """Close the hold and give its amount back; False if it was already closed."""

    @abstractmethod
    def ledger(self, account_id: str) -> list[LedgerEntry]:
        """The account's ledger, oldest first."""

    @abstractmethod
    def expired_holds(self, now: int) -> list[Hold]:
        """Holds whose `expires_at` has passed."""
