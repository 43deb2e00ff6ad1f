"""Redemption codes: made in batches by the operator, shown once, stored hashed, each used once.

    create()  N codes of one value: each a fresh secret (100 random bits), stored as its hash
              (as keys are) with a hint; the secrets are in that answer only
    redeem()  counted first against the account's attempts this minute (past the limit: 429,
              so codes cannot be guessed); then used and credited in one transaction, on the
              condition that the code is still active (of racing uses, one credits); a failure
              says why: unknown, used, expired, disabled
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Callable
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from chalicelib.core.domain import LedgerEntry, LedgerKind
from chalicelib.core.errors import InvalidRequest, RateLimited
from chalicelib.core.payments import Redeemed, RedeemResult, RedemptionCode
from chalicelib.core.validation import parse_usd
from chalicelib.storage.ports import LoginAttemptRepo, RedemptionRepo

log = logging.getLogger(__name__)

CODE_PREFIX = "TW"
# Crockford's base32: no I, L, O or U, so a code read aloud or copied by hand survives.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_GROUPS, _GROUP_LENGTH = 4, 5  # 20 characters: 100 bits
_LOOKALIKES = str.maketrans({"O": "0", "I": "1", "L": "1"})
MAX_CODE_LENGTH = 64
MAX_BATCH = 1000
_WINDOW_S = 60

_FAILURES = {
    RedeemResult.UNKNOWN: ("This code does not exist. Check it and try again.", "code_invalid"),
    RedeemResult.USED: ("This code has been used already.", "code_used"),
    RedeemResult.EXPIRED: ("This code has expired.", "code_expired"),
    RedeemResult.DISABLED: ("This code has been disabled.", "code_disabled"),
}


def generate_code() -> str:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(_GROUPS * _GROUP_LENGTH))
    groups = [body[i:i + _GROUP_LENGTH] for i in range(0, len(body), _GROUP_LENGTH)]
    return "-".join([CODE_PREFIX, *groups])


def canonical(code: str) -> str:
    """The code as hashed: upper case, without spaces or dashes, look-alike letters as digits."""
    return "".join(code.split()).replace("-", "").upper().translate(_LOOKALIKES)


class CodeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: StrictInt = Field(ge=1, le=MAX_BATCH)
    value_usd: StrictStr | StrictInt
    expires_at: datetime | None = None  # ISO 8601 with a time zone
    batch: StrictStr | None = Field(None, min_length=1, max_length=64)
    note: StrictStr | None = Field(None, max_length=200)


class RedeemInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: StrictStr = Field(min_length=1, max_length=MAX_CODE_LENGTH)


class RedemptionCodes:
    def __init__(self, codes: RedemptionRepo, attempts: LoginAttemptRepo, hasher: Callable[[str], str], *,
                 now_ms: Callable[[], int], failures_per_minute: int = 10) -> None:
        self._codes = codes
        self._attempts = attempts
        self._hash = hasher
        self._now_ms = now_ms
        self._limit = failures_per_minute

    def create(self, command: CodeCreate) -> list[tuple[str, RedemptionCode]]:
        """New codes and their secrets (shown this once)."""
        value = parse_usd(command.value_usd, "value_usd")
        if value == 0:
            raise InvalidRequest("value_usd must be greater than zero.", param="value_usd", code="invalid_value")
        now = self._now_ms()
        expires_at = None
        if command.expires_at is not None:
            if command.expires_at.tzinfo is None:
                raise InvalidRequest("expires_at must name its time zone, e.g. 2027-01-01T00:00:00Z.",
                                     param="expires_at", code="invalid_value")
            expires_at = int(command.expires_at.timestamp() * 1000)
            if expires_at <= now:
                raise InvalidRequest("expires_at must be in the future.", param="expires_at", code="invalid_value")
        batch = command.batch or f"batch_{uuid.uuid4().hex[:12]}"
        made = []
        for _ in range(command.count):
            code = generate_code()
            made.append((code, RedemptionCode(
                code_hash=self._hash(canonical(code)), code_id=f"code_{uuid.uuid4().hex}",
                hint=f"{code[:8]}…{code[-4:]}", value_units=value, created_at=now, expires_at=expires_at,
                batch=batch, note=command.note)))
        self._codes.create([record for _, record in made])
        log.info("created %d redemption codes of %d units (batch %s)", len(made), value, batch)
        return made

    def list(self, batch: str | None = None) -> list[RedemptionCode]:
        return self._codes.list(batch=batch)

    def disable(self, code_id: str) -> RedemptionCode | None:
        return self._codes.disable(code_id)

    def redeem(self, account_id: str, command: RedeemInput) -> Redeemed:
        """Credit the code's value to the account, once; InvalidRequest naming why not, 429 past
        the attempts allowed this minute."""
        now = self._now_ms()
        window = now // 1000 // _WINDOW_S
        counter = f"redeem#{account_id}#{window}"
        window_end = (window + 1) * _WINDOW_S
        # Counted before the code is looked at, so racing guesses cannot pass the limit together.
        if self._attempts.add(counter, 1, window_end) > self._limit:
            self._attempts.add(counter, -1, window_end)
            raise RateLimited("Too many redemption attempts. Wait a minute and try again.",
                              retry_after_s=max(1, window_end - now // 1000), code="too_many_attempts")
        entry = LedgerEntry(account_id=account_id, entry_id=f"{now:013d}#redeem#{uuid.uuid4().hex}",
                            kind=LedgerKind.REDEEM, amount=0, created_at=now, note="redemption code")
        redeemed = self._codes.redeem(self._hash(canonical(command.code)), entry, now)
        if redeemed.result is RedeemResult.REDEEMED:
            self._attempts.add(counter, -1, window_end)  # only failures count against the limit
            log.info("account %s redeemed code %s", account_id, redeemed.code.code_id if redeemed.code else "?")
            return redeemed
        message, code = _FAILURES[redeemed.result]
        raise InvalidRequest(message, param="code", code=code)
