"""Basket arithmetic and the takings report. Pure."""

from __future__ import annotations

import csv
import io
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cagette_contracts import Money
from cagette_payments.domain.baskets import (
    Owed,
    PaymentLine,
    RefundTooLarge,
    Standing,
    check_overpayment_refund,
    figures,
)
from cagette_payments.domain.methods import Method
from cagette_payments.domain.states import Kind, State
from cagette_payments.domain.takings import MemberBasket, takings, to_csv


def eur(cents: int) -> Money:
    return Money(amount=cents, currency="EUR")


def paid(cents: int, method: Method = Method.CHEQUE, state: State = State.RECEIVED) -> PaymentLine:
    return PaymentLine(Kind.PAYMENT if cents > 0 else Kind.REFUND, state, method, eur(cents))


def test_settled_missing_partly_paid_overpaid() -> None:
    owed = [Owed(eur(2000), Method.CHEQUE), Owed(eur(500), Method.CHEQUE)]
    assert figures(owed, [paid(2500)], "EUR").standing is Standing.SETTLED
    missing = figures(owed, [paid(2500, state=State.DECLARED)], "EUR")
    assert (missing.standing, missing.pending, missing.received, missing.missing) == (
        Standing.MISSING,
        eur(2500),
        eur(0),
        eur(2500),
    )
    partly = figures(owed, [paid(2000), paid(400, state=State.CANCELLED)], "EUR")
    assert (partly.standing, partly.difference, partly.missing) == (Standing.PARTLY_PAID, eur(-500), eur(500))
    over = figures(owed, [paid(3000)], "EUR")
    assert (over.standing, over.overpaid, over.missing) == (Standing.OVERPAID, eur(500), eur(0))


def test_refunds_count_against_received_and_money_pot_is_not_collected() -> None:
    owed = [Owed(eur(1000), Method.MONEY_POT), Owed(eur(2000), Method.CASH)]
    result = figures(owed, [paid(2500, Method.CASH), paid(-500, Method.CASH)], "EUR")
    assert (result.ordered, result.money_pot, result.due, result.received) == (
        eur(3000),
        eur(1000),
        eur(2000),
        eur(2000),
    )
    assert result.standing is Standing.SETTLED


def test_refund_of_an_overpayment_is_at_most_the_overpayment() -> None:
    over = figures([Owed(eur(1000), Method.CASH)], [paid(1500, Method.CASH)], "EUR")
    check_overpayment_refund(over, eur(500))
    with pytest.raises(RefundTooLarge):
        check_overpayment_refund(over, eur(501))


def test_takings_csv_totals_by_method_pending_and_members() -> None:
    alice, bob, carol = uuid4(), uuid4(), uuid4()
    lines = [
        paid(1000, Method.CASH),
        paid(2000, Method.CHEQUE),
        paid(1500, Method.CHEQUE),
        paid(-300, Method.CASH),
        paid(700, Method.CARD_TERMINAL),
        paid(900, Method.TRANSFER, State.DECLARED),
        paid(50, Method.CASH, State.CANCELLED),
    ]
    baskets = [
        MemberBasket(alice, "Alice", figures([Owed(eur(2000), Method.CHEQUE)], [paid(2000)], "EUR")),
        MemberBasket(bob, "=cmd()", figures([Owed(eur(2000), Method.CHEQUE)], [], "EUR")),
        MemberBasket(carol, "Carol", figures([Owed(eur(1000), Method.CASH)], [paid(700, Method.CASH)], "EUR")),
    ]
    report = takings(lines, baskets, "EUR")
    assert report.net_total == eur(4900)
    rows = list(csv.reader(io.StringIO(to_csv(report))))
    table = {(r[0], r[1]): r for r in rows[1:]}
    assert table[("received", "cash")][3:5] == ["1", "10.00"]
    assert table[("received", "cheque")][3:5] == ["2", "35.00"]
    assert table[("received", "card_terminal")][3:5] == ["1", "7.00"]
    assert table[("received", "transfer")][3:5] == ["0", "0.00"]
    assert table[("received", "card")][3:5] == ["0", "0.00"]
    assert table[("refunded", "cash")][3:5] == ["1", "-3.00"]
    assert table[("total", "net_received")][4] == "49.00"
    assert table[("pending", "transfer")][3:5] == ["1", "9.00"]
    assert table[("pending", "total")][3:5] == ["1", "9.00"]
    assert table[("unpaid", str(bob))][2] == "'=cmd()"  # no formula injection
    assert table[("unpaid", str(bob))][4] == "20.00"
    assert table[("partly_paid", str(carol))][4:7] == ["3.00", "10.00", "7.00"]
    assert ("settled", str(alice)) not in table and not any(r[1] == str(alice) for r in rows)


amounts = st.integers(min_value=1, max_value=10**7)
methods = st.sampled_from([Method.CHEQUE, Method.CASH, Method.TRANSFER, Method.MONEY_POT, Method.ON_THE_SPOT])
payment_lines = st.builds(
    lambda cents, refund, state, method: PaymentLine(
        Kind.REFUND if refund else Kind.PAYMENT,
        State.RECEIVED if refund else state,
        method,
        eur(-cents if refund else cents),
    ),
    amounts,
    st.booleans(),
    st.sampled_from(list(State)),
    st.sampled_from([Method.CHEQUE, Method.CASH, Method.CARD_TERMINAL]),
)


@given(
    st.lists(st.builds(lambda c, m: Owed(eur(c), m), amounts, methods), max_size=6), st.lists(payment_lines, max_size=8)
)
def test_figures_add_up(owed: list[Owed], lines: list[PaymentLine]) -> None:
    result = figures(owed, lines, "EUR")
    assert result.ordered.amount == sum(o.amount.amount for o in owed)
    assert result.due == result.ordered - result.money_pot
    assert result.received.amount == sum(p.amount.amount for p in lines if p.state is State.RECEIVED)
    assert result.pending.amount == sum(p.amount.amount for p in lines if p.state is State.DECLARED)
    assert result.difference == result.received - result.due
    assert (result.missing - result.overpaid) == -result.difference
    assert (result.standing is Standing.SETTLED) == (result.difference.amount == 0)
    assert (result.standing is Standing.OVERPAID) == (result.difference.amount > 0)
