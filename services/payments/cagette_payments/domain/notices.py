"""What the card provider's notifications say, in our terms: a small set of typed notices that
webhooks.py builds from Stripe's events and the card effects `match` on. Pure data.

Each notice carries its `Source`: the provider event, the Stripe account it happened on (None:
the platform's own) and the ids that name our card payment (our metadata, else the provider's
session / payment intent / charge ids we recorded)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID

from .card import Outcome


@dataclass(frozen=True)
class Source:
    event_id: str
    account: str | None = None
    created: int | None = None  # the provider's time of the event (seconds)
    payment_id: UUID | None = None  # from our metadata
    session_id: str | None = None
    payment_intent: str | None = None
    charge_id: str | None = None


@dataclass(frozen=True)
class PaymentOutcome:
    """The attempt succeeded, failed or expired (checkout.session.*, payment_intent.*)."""

    source: Source
    outcome: Outcome
    amount: int | None = None  # what the provider took, when the event says it
    currency: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class ChargeRefunded:
    """The charge's cumulative refunded total (charge.refunded): what is new is derived from it."""

    source: Source
    amount_refunded: int | None
    currency: str | None


@dataclass(frozen=True)
class RefundFailed:
    """A refund that failed or was canceled after it was created (refund.failed,
    charge.refund.updated): the money it took from the member is given back once."""

    source: Source
    refund_id: str
    amount: int
    currency: str
    status: str  # failed | canceled
    reason: str = ""


class DisputeStep(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    FUNDS_WITHDRAWN = "funds_withdrawn"
    FUNDS_REINSTATED = "funds_reinstated"
    CLOSED = "closed"


@dataclass(frozen=True)
class DisputeFunds:
    """One balance transaction of a dispute: money taken (negative amount) or given back, with
    the dispute fee (positive: charged; negative: returned)."""

    transaction_id: str
    amount: int
    fee: int
    currency: str


@dataclass(frozen=True)
class DisputeChanged:
    """A dispute opened, changed, had its funds moved, or closed (charge.dispute.*)."""

    source: Source
    step: DisputeStep
    dispute_id: str
    status: str  # needs_response, under_review, won, lost, warning_closed, ...
    reason: str
    amount: int | None
    currency: str | None
    funds: tuple[DisputeFunds, ...] = ()


CardNotice = PaymentOutcome | ChargeRefunded | RefundFailed | DisputeChanged
