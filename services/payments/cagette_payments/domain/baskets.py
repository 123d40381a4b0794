"""Basket arithmetic (SPEC R20): what one member ordered for one distribution, what they paid,
what is still pending and the difference. Also used per subscription and for takings."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from cagette_contracts import Money

from .methods import Method
from .states import Kind, State


class Standing(StrEnum):
    SETTLED = "settled"
    MISSING = "missing"  # nothing received yet although something is due
    PARTLY_PAID = "partly_paid"
    OVERPAID = "overpaid"


class BasketState(StrEnum):
    TO_VALIDATE = "to_validate"
    VALIDATED = "validated"


@dataclass(frozen=True)
class Owed:
    """One debt: an order, an amendment or a subscription. `method` is how the member chose to pay."""

    amount: Money
    method: Method


@dataclass(frozen=True)
class PaymentLine:
    kind: Kind
    state: State
    method: Method
    amount: Money  # signed: refunds negative


@dataclass(frozen=True)
class Figures:
    ordered: Money
    money_pot: Money  # part of `ordered` paid from the money pot: the ledger tracks it, nothing to collect
    due: Money  # ordered - money_pot: what has to be collected
    received: Money  # confirmed payments minus refunds
    pending: Money  # declared payments not yet confirmed or cancelled
    difference: Money  # received - due: negative = missing, positive = overpaid
    standing: Standing

    @property
    def missing(self) -> Money:
        return Money.zero(self.due.currency) if self.difference.amount >= 0 else -self.difference

    @property
    def overpaid(self) -> Money:
        return self.difference if self.difference.amount > 0 else Money.zero(self.due.currency)


def figures(owed: Iterable[Owed], payments: Iterable[PaymentLine], currency: str) -> Figures:
    ordered = money_pot = received = pending = Money.zero(currency)
    for item in owed:
        ordered = ordered + item.amount
        if item.method is Method.MONEY_POT:
            money_pot = money_pot + item.amount
    for payment in payments:
        if payment.state is State.RECEIVED:
            received = received + payment.amount
        elif payment.state is State.DECLARED:
            pending = pending + payment.amount
    due = ordered - money_pot
    difference = received - due
    return Figures(ordered, money_pot, due, received, pending, difference, standing_of(due, received))


def standing_of(due: Money, received: Money) -> Standing:
    if received == due:
        return Standing.SETTLED
    if received > due:
        return Standing.OVERPAID
    if received.amount <= 0:
        return Standing.MISSING
    return Standing.PARTLY_PAID


class RefundTooLarge(ValueError):
    pass


def check_overpayment_refund(current: Figures, refund: Money) -> None:
    """A refund of an overpayment gives back at most what was overpaid."""
    if refund > current.overpaid:
        raise RefundTooLarge(f"the basket is overpaid by {current.overpaid}; a refund of {refund} would leave it short")
