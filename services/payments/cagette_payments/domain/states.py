"""The manual payment state machine (SPEC B3).

    declared --confirm--> received   (amount and method corrected to what was actually paid, R20;
                                      for on_the_spot, the actual method is required, R17)
    declared --cancel---> cancelled
    (created) ----------> received   (recorded by hand: already received)

Received and cancelled are final. A mistake on a received payment is corrected by a new
reversing payment (a refund-kind entry pointing at it), never by rewriting. Every change
produces a `Transition` saying who, when, from, to and the amounts and methods before/after.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from cagette_contracts import Money

from .methods import MANUAL_METHODS, ON_THE_SPOT_ACTUAL, Method


class State(StrEnum):
    DECLARED = "declared"
    RECEIVED = "received"
    CANCELLED = "cancelled"


FINAL_STATES = frozenset({State.RECEIVED, State.CANCELLED})


class Kind(StrEnum):
    PAYMENT = "payment"  # money from the member (positive amount)
    REFUND = "refund"  # money given back to the member, or a reversal (negative amount)


class TransitionRefused(ValueError):
    """The transition is not allowed from the payment's current state."""


class BadCorrection(ValueError):
    """The corrections given with a transition are wrong (amount, currency, method)."""


class BadAmount(BadCorrection):
    pass


@dataclass(frozen=True)
class Payment:
    """What the state machine needs of a payment. `amount` is signed: refunds are negative."""

    payment_id: UUID
    kind: Kind
    state: State
    method: Method
    amount: Money
    declared_amount: Money | None = None


@dataclass(frozen=True)
class Transition:
    payment_id: UUID
    from_state: State | None
    to_state: State
    amount_before: Money | None
    amount_after: Money
    method_before: Method | None
    method_after: Method
    by: UUID | None
    at: datetime
    note: str = ""


def require_positive(amount: Money, currency: str, what: str = "amount") -> None:
    """A payment amount: strictly positive, in the group's currency."""
    if amount.currency != currency:
        raise BadAmount(f"{what} must be in {currency}, the group's currency, not {amount.currency}")
    if amount.amount <= 0:
        raise BadAmount(f"{what} must be positive, got {amount}")


def creation(payment: Payment, *, by: UUID | None, at: datetime, note: str = "") -> Transition:
    return Transition(payment.payment_id, None, payment.state, None, payment.amount, None, payment.method, by, at, note)


def confirm(
    payment: Payment,
    *,
    by: UUID | None,
    at: datetime,
    amount: Money | None = None,
    method: Method | None = None,
    note: str = "",
) -> tuple[Payment, Transition]:
    """declared -> received. `amount` corrects the amount actually received; `method` the method
    actually used (R20: a member who declared cash may hand over a cheque): any manual method
    (cash, cheque, transfer, card terminal); for an on-the-spot payment it is required and one
    paid at the distribution (R17). The transition keeps both methods, who and when."""
    if payment.state is not State.DECLARED:
        raise TransitionRefused(
            f"payment {payment.payment_id} is {payment.state}: only a declared payment can be confirmed"
        )
    received = payment.amount if amount is None else amount
    require_positive(received, payment.amount.currency, "the received amount")
    if payment.method is Method.ON_THE_SPOT:
        if method is None:
            raise BadCorrection(
                "an on-the-spot payment needs the method actually used: " + ", ".join(sorted(ON_THE_SPOT_ACTUAL))
            )
        if method not in ON_THE_SPOT_ACTUAL:
            raise BadCorrection(f"{method} is not a method paid on the spot ({', '.join(sorted(ON_THE_SPOT_ACTUAL))})")
        actual = method
    elif method is None:
        actual = payment.method
    elif method in MANUAL_METHODS:
        actual = method
    else:
        raise BadCorrection(
            f"a declared payment cannot be confirmed as {method}: the money arrived by one of "
            f"{', '.join(sorted(MANUAL_METHODS))}"
        )
    after = replace(payment, state=State.RECEIVED, amount=received, method=actual)
    return after, Transition(
        payment.payment_id,
        State.DECLARED,
        State.RECEIVED,
        payment.amount,
        received,
        payment.method,
        actual,
        by,
        at,
        note,
    )


def cancel(payment: Payment, *, by: UUID | None, at: datetime, note: str = "") -> tuple[Payment, Transition]:
    """declared -> cancelled: the declared payment will not come."""
    if payment.state is not State.DECLARED:
        raise TransitionRefused(
            f"payment {payment.payment_id} is {payment.state}: only a declared payment can be cancelled"
        )
    after = replace(payment, state=State.CANCELLED)
    return after, Transition(
        payment.payment_id,
        State.DECLARED,
        State.CANCELLED,
        payment.amount,
        payment.amount,
        payment.method,
        payment.method,
        by,
        at,
        note,
    )


def reversal_amount(payment: Payment) -> Money:
    """The (signed) amount of the entry that reverses a received payment."""
    if payment.kind is not Kind.PAYMENT:
        raise TransitionRefused(f"{payment.payment_id} is a refund: only a payment can be reversed")
    if payment.state is not State.RECEIVED:
        raise TransitionRefused(
            f"payment {payment.payment_id} is {payment.state}: only a received payment can be reversed"
        )
    return -payment.amount
