"""Events the payments service publishes about bank statements (routing keys `payments.bank_*`),
kept apart from payments.py so accounting exports can follow the bank side alone.

A statement line's `amount` is signed: positive for money in (credit), negative for money out
(debit)."""

from __future__ import annotations

from datetime import date
from typing import Literal
from uuid import UUID

from pydantic import Field

from . import routing
from .envelope import Event
from .money import Money


class BankStatementImported(Event):
    """A coordinator imported a statement file for the group's bank account (all of it, or
    nothing: a refused file publishes nothing)."""

    event_type: Literal["payments.bank_statement.imported"] = routing.BANK_STATEMENT_IMPORTED
    schema_version: Literal[1] = 1
    import_id: UUID
    format: str = Field(description="camt.053.001.08, camt.052.001.02, mt940, csv...")
    statement_id: str | None = Field(default=None, description="the bank's statement id, when it has one")
    first_booking_date: date | None = None
    last_booking_date: date | None = None
    lines: int = Field(description="lines in the file")
    matched: int = Field(description="credits that confirmed a declared payment for its amount")
    amount_corrected: int = Field(description="credits that confirmed a declared payment for another amount")
    top_ups: int = Field(description="credits to a member's standing reference (money pot)")
    to_review: int = Field(description="credits left to a coordinator")
    debits: int = Field(description="money out: listed, not matched")
    already_imported: int = Field(description="lines an earlier import already counted")
    imported_by: UUID


class BankLineMatched(Event):
    """A credit line settled a payment: by its reference (matched, amount_corrected, top_up) or
    assigned by a coordinator (assigned). The payment's own event (payments.payment.received)
    carries the money; this one ties it to the bank line."""

    event_type: Literal["payments.bank_line.matched"] = routing.BANK_LINE_MATCHED
    schema_version: Literal[1] = 1
    line_id: UUID
    import_id: UUID
    payment_id: UUID
    member_id: UUID
    outcome: Literal["matched", "amount_corrected", "top_up", "assigned"]
    amount: Money
    booking_date: date
    reference: str | None = Field(default=None, description="the RF reference it carried, printed in groups of four")
    bank_reference: str | None = None
    assigned_by: UUID | None = Field(default=None, description="the coordinator, for an assigned line")


class BankLineToReview(Event):
    """A credit line matched nothing, or several things, or a reference with a typo: it waits
    for a coordinator (assign it to a member, or ignore it)."""

    event_type: Literal["payments.bank_line.to_review"] = routing.BANK_LINE_TO_REVIEW
    schema_version: Literal[1] = 1
    line_id: UUID
    import_id: UUID
    amount: Money
    booking_date: date
    counterparty: str = ""
    label: str = ""
    reason: str
    suggested_payment_id: UUID | None = None


__all__ = ["BankLineMatched", "BankLineToReview", "BankStatementImported"]
