"""The operator's payment commands, as the admin API takes them."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from chalicelib.billing.wallet import MAX_NOTE_LENGTH, MAX_REFERENCE_LENGTH
from chalicelib.core.errors import InvalidRequest
from chalicelib.core.validation import parse_usd


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReviewInput(_Input):
    note: StrictStr = Field(min_length=1, max_length=MAX_NOTE_LENGTH)


class RefundInput(_Input):
    # None: all that is not yet refunded.
    amount_usd: StrictStr | StrictInt | None = None
    reason: StrictStr = Field(min_length=1, max_length=MAX_NOTE_LENGTH)


class AdjustmentInput(_Input):
    """An adjustment up ("5") or down ("-5"), with the reason the customer's ledger shows."""

    amount_usd: StrictStr | StrictInt
    reason: StrictStr = Field(min_length=1, max_length=MAX_NOTE_LENGTH)
    # The same reference adjusts once; without one, each call is a new adjustment.
    reference: StrictStr | None = Field(None, min_length=1, max_length=MAX_REFERENCE_LENGTH)

    def units(self) -> int:
        """The signed amount in units; InvalidRequest naming amount_usd unless it is a non-zero amount."""
        text = str(self.amount_usd).strip()
        negative = text.startswith("-")
        amount = parse_usd(text[1:] if negative else text, "amount_usd")
        if amount == 0:
            raise InvalidRequest("amount_usd must not be zero.", param="amount_usd", code="invalid_value")
        return -amount if negative else amount

    def reference_or_new(self) -> str:
        return self.reference or f"adjustment-{uuid.uuid4().hex}"
