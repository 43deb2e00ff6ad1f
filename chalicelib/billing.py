"""Hold → settle → release: how each relay request is paid for."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from chalicelib.domain import ApiKey, Balance, Hold, LedgerEntry, Settlement
from chalicelib.errors import InsufficientQuota, StorageError
from chalicelib.money import TOKENS_PER_PRICE, ceil_div
from chalicelib.storage.ports import WalletRepo

log = logging.getLogger(__name__)

_HOLD_ATTEMPTS = 4


@dataclass(frozen=True)
class Reservation:
    hold: Hold
    # The output cap the hold pays for: the one asked for, or lower if that is
    # all the wallet affords.
    output_tokens: int


@dataclass(frozen=True)
class Quote:
    """The most a request may cost: `fixed` (units × 1M) plus `output_rate` per output token."""

    fixed: int
    output_rate: int = 0
    output_tokens: int = 0
    # Fewer output tokens than this and the request is not worth sending.
    min_output_tokens: int = 1

    def amount(self, output_tokens: int) -> int:
        return ceil_div(self.fixed + self.output_rate * output_tokens, TOKENS_PER_PRICE)

    def affordable_output(self, available: int) -> int:
        """The largest output cap whose amount fits in `available` (may be negative)."""
        if self.output_rate == 0:
            return self.output_tokens if self.amount(0) <= available else -1
        return min(self.output_tokens, (available * TOKENS_PER_PRICE - self.fixed) // self.output_rate)


class Billing:
    def __init__(self, wallets: WalletRepo, *, now_ms: Callable[[], int], hold_ttl_ms: int) -> None:
        self._wallets = wallets
        self._now_ms = now_ms
        self._hold_ttl_ms = hold_ttl_ms

    def reserve(self, request_id: str, key: ApiKey, quote: Quote, *, timeout_s: float) -> Reservation:
        """Hold the most the request may cost, lowering its output cap if the wallet
        cannot afford the full one; InsufficientQuota if it cannot afford the minimum."""
        output_tokens = quote.output_tokens
        for _ in range(_HOLD_ATTEMPTS):
            now = self._now_ms()
            hold = Hold(
                request_id=request_id,
                account_id=key.account_id,
                key_hash=key.key_hash,
                amount=quote.amount(output_tokens),
                created_at=now,
                expires_at=now + int(timeout_s * 1000) + self._hold_ttl_ms,
            )
            if self._wallets.hold(hold):
                return Reservation(hold, output_tokens)
            # The wallet is short: size the hold to what is available now.
            available = self._wallets.balance(key.account_id).available
            output_tokens = quote.affordable_output(available)
            if output_tokens < min(quote.min_output_tokens, quote.output_tokens):
                raise InsufficientQuota(
                    "Your wallet balance is too low for this request. Top up your wallet and try again."
                )
        raise InsufficientQuota("Your wallet balance changed while reserving this request; try again.")

    def settle(self, reservation: Reservation, cost: int, *, model: str, key_id: str) -> Settlement:
        """Charge `cost` for a completed request and close its hold."""
        hold = reservation.hold
        entry = LedgerEntry(
            account_id=hold.account_id,
            entry_id=f"{hold.created_at:013d}#{hold.request_id}",
            kind="charge",
            amount=-cost,
            created_at=self._now_ms(),
            request_id=hold.request_id,
            key_id=key_id,
            model=model,
        )
        settlement = self._wallets.settle(hold, cost, entry)
        if settlement.shortfall:
            log.warning("request %s cost %d units more than the wallet held", hold.request_id, settlement.shortfall)
        return settlement

    def release(self, reservation: Reservation) -> None:
        """Give a failed request's hold back. Never raises: the sweeper retries what fails here."""
        try:
            self._wallets.release(reservation.hold)
        except StorageError:
            log.exception("could not release hold %s; the sweeper will", reservation.hold.request_id)

    def sweep(self) -> int:
        """Release every hold past its expiry (left by a crashed or timed-out run); how many."""
        released = 0
        for hold in self._wallets.expired_holds(self._now_ms()):
            released += self._wallets.release(hold)
        return released

    def balance(self, account_id: str) -> Balance:
        return self._wallets.balance(account_id)
