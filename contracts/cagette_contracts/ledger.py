"""Events the ledger service publishes (routing keys `ledger.*`)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field

from . import routing
from .common import Part
from .envelope import Event
from .money import Money


class AccountType(StrEnum):
    MEMBER = "member"
    SALES = "sales"
    CHEQUES = "cheques"
    CASH = "cash"
    TRANSFERS = "transfers"
    CARD_CLEARING = "card_clearing"
    CARD_FEES = "card_fees"
    OPENING_BALANCE_EQUITY = "opening_balance_equity"


class TransactionKind(StrEnum):
    """What a ledger transaction records (a closed set: a new kind is a new schema version)."""

    ORDER = "order"
    ORDER_AMENDMENT = "order_amendment"
    SUBSCRIPTION = "subscription"
    SUBSCRIPTION_AMENDMENT = "subscription_amendment"
    PAYMENT = "payment"
    REFUND = "refund"
    CARD_FEE = "card_fee"
    OPENING_BALANCE = "opening_balance"
    CORRECTION = "correction"
    REVERSAL = "reversal"


# Added within version 1 (optional): the posting's place in its account's history.
AccountSequence = Annotated[
    int | None,
    Field(
        ge=1,
        description="This posting's number in its account's history: 1, 2, 3... with no gap, so a missing "
        "event shows as a gap and a late one as a lower number (absent on postings written before sequences)",
    ),
]


class PostingLine(Part):
    account_id: UUID
    account_type: AccountType
    member_id: UUID | None = None
    amount: Money = Field(description="Signed: positive credits the account as members see it")
    balance_after: Money
    sequence: AccountSequence = None


class TransactionPosted(Event):
    """One balanced ledger transaction was posted ("EntryPosted" in the brief)."""

    event_type: Literal["ledger.transaction.posted"] = routing.TRANSACTION_POSTED
    schema_version: Literal[1] = 1
    transaction_id: UUID
    kind: TransactionKind
    idempotency_key: str
    reverses_transaction_id: UUID | None = None
    postings: list[PostingLine] = Field(min_length=2)
    source_event_id: UUID | None = Field(
        default=None,
        description="The event this transaction posts (e.g. the OrderConfirmed), when it came from one: "
        "its postings' balance_after is the balance right after it (what an email about it states, B7)",
    )


class BalanceChanged(Event):
    """A member's posted balance changed. Positive = credit with the group; negative = owes."""

    event_type: Literal["ledger.balance.changed"] = routing.BALANCE_CHANGED
    schema_version: Literal[1] = 1
    member_id: UUID
    account_id: UUID
    transaction_id: UUID
    previous_balance: Money
    balance: Money
    sequence: AccountSequence = None


class BalanceWentNegative(Event):
    event_type: Literal["ledger.balance.went_negative"] = routing.BALANCE_WENT_NEGATIVE
    schema_version: Literal[1] = 1
    member_id: UUID
    account_id: UUID
    transaction_id: UUID
    balance: Money
    sequence: AccountSequence = Field(default=None, description="The sequence of the posting that crossed zero")


class BalanceBackToNonNegative(Event):
    event_type: Literal["ledger.balance.back_to_non_negative"] = routing.BALANCE_BACK_TO_NON_NEGATIVE
    schema_version: Literal[1] = 1
    member_id: UUID
    account_id: UUID
    transaction_id: UUID
    balance: Money
    sequence: AccountSequence = Field(default=None, description="The sequence of the posting that crossed zero")


class PlaceHold(Part):
    """Request (not an event): hold `amount` on the member's account for a money-pot order.

    Sent to the queue `routing.LEDGER_HOLD_REQUESTS_QUEUE` with reply_to; answered by a HoldDecision.
    The hold_id is derived by the asker from the order attempt, so a retry asks again with the
    same one and gets the same decision (a grant is held once); a released or expired hold is
    not granted again (the asker's next attempt uses a new id); the same id with a different
    group, member, order or amount is refused. A request that reaches the ledger at or after its
    `grant_before` is refused unread: its asker stopped waiting then (it is also published with
    that AMQP expiration, so the broker drops it unread)."""

    hold_id: UUID
    group_id: UUID
    member_id: UUID
    order_id: UUID
    amount: Money
    expires_at: datetime = Field(description="When a granted hold stops counting if no debit captured it")
    grant_before: datetime | None = Field(
        default=None,
        description="Deadline of the request: not granted when it arrives at or after it (absent: no deadline)",
    )
    correlation_id: str | None = None


class HoldDecision(Part):
    hold_id: UUID
    granted: bool
    available: Money = Field(description="Posted balance minus active holds, after this decision")
    reason: str | None = None
    decided: bool = Field(
        default=True,
        description="False: the ledger did not decide (too late, not able to now); nothing was held, ask again",
    )


# Queue (default exchange) for ReleaseHold requests; reply_to is optional (answered by HoldReleased).


class ReleaseHold(Part):
    """Request (not an event): void an active hold whose order will not be confirmed (e.g. the
    member abandoned the basket). Sent to `routing.LEDGER_HOLD_RELEASES_QUEUE`; idempotent. A hold that
    is not released expires by itself at its expires_at."""

    hold_id: UUID
    group_id: UUID
    reason: str = ""
    correlation_id: str | None = None


class HoldReleased(Part):
    """Answer to a ReleaseHold that carried reply_to: the hold's status after the request
    ('released', or 'captured' / 'expired' / 'refused' when it was no longer active)."""

    hold_id: UUID
    status: str
    available: Money | None = None
    reason: str | None = None


__all__ = [
    "TransactionKind",
    "HoldDecision",
    "HoldReleased",
    "ReleaseHold",
    "PlaceHold",
    "AccountType",
    "BalanceBackToNonNegative",
    "BalanceChanged",
    "BalanceWentNegative",
    "PostingLine",
    "TransactionPosted",
]
