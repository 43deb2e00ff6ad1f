"""Hold → settle → release: how each relay request is paid for."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from chalicelib.billing.pricing import Usage, charge
from chalicelib.core.domain import PPM, ApiKey, Hold, HoldResult, LedgerEntry, Prices, Settlement, UsageEvent
from chalicelib.core.errors import InsufficientQuota, PermissionDenied, StorageError
from chalicelib.core.money import units_to_usd
from chalicelib.core.usage import UsageDelta
from chalicelib.keys.auth import check_usable
from chalicelib.keys.plans import plan_not_allowed
from chalicelib.storage.ports import KeyRepo, LimitRepo, WalletRepo

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
    """The most a request may use: `usage` before any output (the prompt estimate, the
    images), plus up to `output_tokens` per choice for `choices` choices; priced by
    `pricing.charge`, the same rule that settles it."""

    prices: Prices
    usage: Usage = Usage()
    output_tokens: int = 0
    choices: int = 1
    multiplier_ppm: int = PPM

    def amount(self, output_tokens: int) -> int:
        """What the request costs if it uses its whole quote with this output cap."""
        usage = replace(self.usage, completion_tokens=self.usage.completion_tokens + output_tokens * self.choices)
        if self.prices.cache_write_rate > self.prices.input_per_1m:
            # The provider may write the whole prompt to its cache, above the input price.
            usage = replace(usage, cache_write_tokens=usage.prompt_tokens - usage.cached_tokens)
        return charge(self.prices, usage, self.multiplier_ppm)

    def affordable_output(self, available: int) -> int:
        """The largest output cap (up to the quoted one) whose amount fits in `available`; -1 if none."""
        if self.amount(0) > available:
            return -1
        # `amount` grows with the cap: search it, so that the hold is priced by the one rule.
        low, high = 0, self.output_tokens
        while low < high:
            middle = (low + high + 1) // 2
            if self.amount(middle) <= available:
                low = middle
            else:
                high = middle - 1
        return low


class Billing:
    def __init__(self, wallets: WalletRepo, keys: KeyRepo, *, now_ms: Callable[[], int], hold_ttl_ms: int,
                 limits: LimitRepo | None = None) -> None:
        self._wallets = wallets
        self._limits = limits
        self._keys = keys
        self._now_ms = now_ms
        self._hold_ttl_ms = hold_ttl_ms

    def reserve(self, request_id: str, key: ApiKey, quote: Quote, *, timeout_s: float) -> Reservation:
        """Hold the most the request may cost on the wallet and the key, lowering its output
        cap if either cannot afford the full one; an error naming the reason if they cannot
        afford the minimum or may not spend at all."""
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
                key_quota=key.quota is not None,
                plan=key.plan,
            )
            result = self._wallets.hold(hold)
            if result is HoldResult.HELD:
                return Reservation(hold, output_tokens)
            if result is HoldResult.PLAN_REFUSED:
                raise plan_not_allowed(hold.plan)
            # Refused: find out why from the account and the key as they are now,
            # and size the hold to what both can still afford.
            balance = self._wallets.balance(key.account_id)
            if balance.status != "active":
                raise PermissionDenied("This account is disabled.", code="account_disabled")
            if balance.disputes:
                raise PermissionDenied("This account's keys are suspended while a payment dispute is open.",
                                       code="account_suspended")
            if balance.debt:
                raise InsufficientQuota(f"Your wallet owes {units_to_usd(balance.debt)} USD (a refunded or "
                                        "disputed payment). Top up your wallet and try again.")
            key = check_usable(self._keys.get_by_hash(key.key_hash, consistent=True), now)
            key_left = key.quota_left if key.quota is not None and key.quota_left is not None else None
            limit = balance.available if key_left is None else min(balance.available, key_left)
            output_tokens = quote.affordable_output(limit)
            if output_tokens < min(1, quote.output_tokens):  # not one token affordable
                if key_left is not None and key_left < balance.available:
                    raise PermissionDenied("This API key has reached its quota. Raise it in Token Management.",
                                           code="key_quota_exceeded")
                raise InsufficientQuota(
                    "Your wallet balance is too low for this request. Top up your wallet and try again."
                )
        raise InsufficientQuota("Your balance changed while reserving this request; try again.")

    def settle(self, reservation: Reservation, cost: int, *, model: str, key_id: str,
               prompt_tokens: int = 0, completion_tokens: int = 0, usage: UsageDelta | None = None,
               event: UsageEvent | None = None) -> Settlement:
        """Charge `cost` for a completed request and close its hold, adding `usage` to the live rollups
        and, where the wallet records events, writing `event` (`recorded` says whether it did)."""
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
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )
        settlement = self._wallets.settle(hold, cost, entry, usage, event)
        if settlement.shortfall:
            # Beyond its hold, a request is charged only what the wallet and the key's quota
            # still have; the rest is the operator's loss, totalled on the account.
            log.warning("request %s of account %s (key %s): shortfall of %d units (cost %d, charged %d)",
                        hold.request_id, hold.account_id, key_id, settlement.shortfall, cost, settlement.charged)
        return settlement

    def release(self, reservation: Reservation, usage: UsageDelta | None = None,
                event: UsageEvent | None = None) -> bool:
        """Give a failed request's hold back, counting `usage` (an error) in the live rollups; whether
        `event` was written with it (only where the wallet records events). Never raises: the
        sweeper retries what fails here (without counting it)."""
        try:
            closed = self._wallets.release(reservation.hold, usage, event)
        except StorageError:
            log.exception("could not release hold %s; the sweeper will", reservation.hold.request_id)
            return False
        return closed and event is not None and self._wallets.records_events

    def sweep(self) -> int:
        """Release every hold past its expiry (left by a crashed or timed-out run), on its key's
        current item even if the key was regenerated since; how many."""
        released = 0
        for hold in self._wallets.expired_holds(self._now_ms()):
            try:
                released += self._wallets.release(hold)
            except StorageError:
                log.exception("could not release expired hold %s; the next sweep will", hold.request_id)
        self._finish_expired_leases()
        return released

    def _finish_expired_leases(self) -> None:
        """Give back the request-limit slots of requests that never finished (a crashed run): their
        tokens stay counted as estimated."""
        if self._limits is None:
            return
        for lease in self._limits.expired_leases(self._now_ms() // 1000):
            try:
                self._limits.finish(lease.request_id, [])
            except StorageError:
                log.exception("could not finish expired lease %s; the next sweep will", lease.request_id)
