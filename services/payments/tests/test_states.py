"""The manual payment state machine (B3). Pure."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from cagette_contracts import Money
from cagette_payments.domain import states
from cagette_payments.domain.methods import Method
from cagette_payments.domain.states import Kind, Payment, State

AT = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
BY = uuid4()


def eur(cents: int) -> Money:
    return Money(amount=cents, currency="EUR")


def declared(method: Method = Method.CHEQUE, cents: int = 2000) -> Payment:
    return Payment(uuid4(), Kind.PAYMENT, State.DECLARED, method, eur(cents), eur(cents))


def test_confirm_as_declared_records_the_transition() -> None:
    payment = declared()
    after, transition = states.confirm(payment, by=BY, at=AT)
    assert after.state is State.RECEIVED and after.amount == eur(2000) and after.method is Method.CHEQUE
    assert (transition.from_state, transition.to_state) == (State.DECLARED, State.RECEIVED)
    assert (transition.amount_before, transition.amount_after) == (eur(2000), eur(2000))
    assert transition.by == BY and transition.at == AT


def test_confirm_with_a_corrected_amount() -> None:
    after, transition = states.confirm(declared(), by=BY, at=AT, amount=eur(1850), note="cheque of 18.50")
    assert after.amount == eur(1850)
    assert (transition.amount_before, transition.amount_after, transition.note) == (
        eur(2000),
        eur(1850),
        "cheque of 18.50",
    )


def test_on_the_spot_needs_and_takes_the_actual_method() -> None:
    payment = declared(Method.ON_THE_SPOT)
    with pytest.raises(states.BadCorrection, match="method actually used"):
        states.confirm(payment, by=BY, at=AT)
    with pytest.raises(states.BadCorrection, match="not a method paid on the spot"):
        states.confirm(payment, by=BY, at=AT, method=Method.TRANSFER)
    after, transition = states.confirm(payment, by=BY, at=AT, method=Method.CARD_TERMINAL)
    assert after.method is Method.CARD_TERMINAL
    assert (transition.method_before, transition.method_after) == (Method.ON_THE_SPOT, Method.CARD_TERMINAL)


@pytest.mark.parametrize("actual", [Method.CHEQUE, Method.TRANSFER, Method.CARD_TERMINAL, Method.CASH])
def test_declared_cash_confirmed_as_the_method_actually_used(actual: Method) -> None:
    """R20: the member declared cash and handed over something else; the transition says so."""
    after, transition = states.confirm(declared(Method.CASH), by=BY, at=AT, method=actual, amount=eur(1850))
    assert (after.state, after.method, after.amount) == (State.RECEIVED, actual, eur(1850))
    assert (transition.method_before, transition.method_after) == (Method.CASH, actual)
    assert (transition.amount_before, transition.amount_after, transition.by, transition.at) == (
        eur(2000),
        eur(1850),
        BY,
        AT,
    )


@pytest.mark.parametrize("method", [Method.CARD, Method.MONEY_POT, Method.ON_THE_SPOT])
def test_no_declared_payment_is_confirmed_as_a_method_money_does_not_arrive_by(method: Method) -> None:
    with pytest.raises(states.BadCorrection, match=f"cannot be confirmed as {method}"):
        states.confirm(declared(Method.CHEQUE), by=BY, at=AT, method=method)


@pytest.mark.parametrize("amount", [eur(0), eur(-5), Money(amount=2000, currency="CHF")])
def test_corrected_amount_must_be_positive_and_in_the_currency(amount: Money) -> None:
    with pytest.raises(states.BadAmount):
        states.confirm(declared(), by=BY, at=AT, amount=amount)


def test_cancel() -> None:
    after, transition = states.cancel(declared(), by=BY, at=AT, note="no cheque given")
    assert after.state is State.CANCELLED
    assert (transition.from_state, transition.to_state, transition.note) == (
        State.DECLARED,
        State.CANCELLED,
        "no cheque given",
    )


@pytest.mark.parametrize("final", [State.RECEIVED, State.CANCELLED])
def test_received_and_cancelled_are_final(final: State) -> None:
    payment = Payment(uuid4(), Kind.PAYMENT, final, Method.CHEQUE, eur(2000))
    with pytest.raises(states.TransitionRefused):
        states.confirm(payment, by=BY, at=AT)
    with pytest.raises(states.TransitionRefused):
        states.cancel(payment, by=BY, at=AT)


def test_only_a_received_payment_is_reversed_by_its_opposite() -> None:
    received = Payment(uuid4(), Kind.PAYMENT, State.RECEIVED, Method.CASH, eur(1200))
    assert states.reversal_amount(received) == eur(-1200)
    with pytest.raises(states.TransitionRefused):
        states.reversal_amount(declared())
    with pytest.raises(states.TransitionRefused):
        states.reversal_amount(Payment(uuid4(), Kind.REFUND, State.RECEIVED, Method.CASH, eur(-100)))


def test_creation_transition() -> None:
    payment = Payment(uuid4(), Kind.PAYMENT, State.RECEIVED, Method.CASH, eur(700))
    transition = states.creation(payment, by=BY, at=AT)
    assert (
        transition.from_state is None and transition.to_state is State.RECEIVED and transition.amount_after == eur(700)
    )
