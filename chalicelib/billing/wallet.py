"""Credits and adjustments, exactly once per reference, and the ledger as the customer reads it.

Credits put money into a wallet; the operator's adjustments may also take it out.

Every credit names a reference (a payment provider's event id, an operator's
own, or a fresh one): the same reference never credits twice, however often or
concurrently it is delivered. Its ledger entry's id is the credit's time then
its claim, `<13-digit ms>#credit#<kind>#<sha256(reference)>`, so an account's
ledger stays in time order; the claim alone (without the time) is what storage
keeps unique, since two deliveries of one reference are not at the same time.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

from chalicelib.core.domain import CREDIT_KINDS, Balance, Credited, LedgerEntry, LedgerKind
from chalicelib.core.errors import Conflict, InvalidRequest
from chalicelib.core.money import units_to_usd
from chalicelib.core.payments import LedgerPage, WalletMove
from chalicelib.storage.ports import WalletRepo

log = logging.getLogger(__name__)

MAX_REFERENCE_LENGTH = 200
MAX_NOTE_LENGTH = 200
MAX_LEDGER_PAGE = 200


def credit_claim(kind: LedgerKind, reference: str) -> str:
    """The id that makes a credit unique: its kind and a digest of its reference."""
    return f"credit#{kind.value}#{hashlib.sha256(reference.encode()).hexdigest()}"


class Wallet:
    def __init__(self, wallets: WalletRepo, *, now_ms: Callable[[], int]) -> None:
        self._wallets = wallets
        self._now_ms = now_ms

    def credit(self, account_id: str, amount_units: int, reference: str, kind: LedgerKind,
               note: str | None = None) -> Credited:
        """Add `amount_units` to the account's wallet once per (`kind`, `reference`); a repeat changes
        nothing and returns the first credit with `applied` False. Conflict if the reference
        credited another account or amount; NotFound if there is no such account."""
        if isinstance(amount_units, bool) or not isinstance(amount_units, int) or amount_units <= 0:
            raise InvalidRequest("A credit must be a positive whole number of units.", param="amount")
        if not reference.strip() or len(reference) > MAX_REFERENCE_LENGTH:
            raise InvalidRequest(f"reference must be 1 to {MAX_REFERENCE_LENGTH} characters.", param="reference")
        if note is not None and len(note) > MAX_NOTE_LENGTH:
            raise InvalidRequest(f"note must be at most {MAX_NOTE_LENGTH} characters.", param="note")
        kind = LedgerKind(kind)
        if kind not in CREDIT_KINDS:
            raise InvalidRequest(f"A credit cannot be of kind `{kind}`.", param="kind")
        claim = credit_claim(kind, reference)
        now = self._now_ms()
        credited = self._wallets.credit(LedgerEntry(
            account_id=account_id, entry_id=f"{now:013d}#{claim}", kind=kind.value, amount=amount_units,
            created_at=now, note=note, reference=reference,
        ), claim=claim)
        first = credited.entry
        if first.account_id != account_id or first.amount != amount_units:
            raise Conflict(f"The reference `{reference}` was used for a credit of {units_to_usd(first.amount)} USD "
                           f"to {first.account_id}.", param="reference", code="reference_conflict")
        if credited.applied:
            log.info("credited %d units to %s (%s, reference %s)", amount_units, account_id, kind.value, reference)
        else:
            log.info("reference %s (%s) credited %s before; nothing changed", reference, kind.value, account_id)
        return credited

    def adjust(self, account_id: str, amount_units: int, reason: str, reference: str) -> Credited:
        """The operator's adjustment, up or down, once per reference: a credit pays any debt first;
        a debit takes what is available and records the rest as a debt. Conflict and NotFound
        as for a credit."""
        if isinstance(amount_units, bool) or not isinstance(amount_units, int) or amount_units == 0:
            raise InvalidRequest("An adjustment must be a whole number of units other than zero.", param="amount")
        if not reason.strip() or len(reason) > MAX_NOTE_LENGTH:
            raise InvalidRequest(f"reason must be 1 to {MAX_NOTE_LENGTH} characters.", param="reason")
        if not reference.strip() or len(reference) > MAX_REFERENCE_LENGTH:
            raise InvalidRequest(f"reference must be 1 to {MAX_REFERENCE_LENGTH} characters.", param="reference")
        claim = credit_claim(LedgerKind.ADJUSTMENT, reference)
        now = self._now_ms()
        moved = self._wallets.move(WalletMove(account_id, entries=(LedgerEntry(
            account_id=account_id, entry_id=f"{now:013d}#{claim}", kind=LedgerKind.ADJUSTMENT,
            amount=amount_units, created_at=now, note=reason, reference=reference),)), claim=claim)
        first = moved.entry
        if first.account_id != account_id or first.amount != amount_units:
            raise Conflict(f"The reference `{reference}` was used for an adjustment of {units_to_usd(first.amount)} "
                           f"USD to {first.account_id}.", param="reference", code="reference_conflict")
        log.info("adjusted %s by %d units (%s, reference %s, applied %s)", account_id, amount_units, reason,
                 reference, moved.applied)
        return moved

    def ledger(self, account_id: str, *, limit: int = 50, cursor: str | None = None) -> LedgerPage:
        """The account's ledger, newest first, each entry with the balance after it."""
        return self._wallets.ledger_page(account_id, limit=max(1, min(limit, MAX_LEDGER_PAGE)), cursor=cursor)

    def balance(self, account_id: str) -> Balance:
        return self._wallets.balance(account_id)
