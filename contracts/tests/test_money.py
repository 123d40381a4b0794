from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from cagette_contracts import MAX_MINOR_UNITS, CurrencyMismatch, Money, MoneyError, line_amount, total


def eur(cents: int) -> Money:
    return Money(amount=cents, currency="EUR")


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        (12.5, r"must be an integer number of minor units \(cents\), got float"),
        (12.0, "got float"),
        (Decimal("12"), "got Decimal"),
        ("1250", "got str"),
        (True, "got bool"),
        (None, "got NoneType"),
        (MAX_MINOR_UNITS + 1, "out of range"),
        (-MAX_MINOR_UNITS - 1, "out of range"),
    ],
)
def test_money_refuses_anything_but_bounded_integer_cents(amount: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Money(amount=amount, currency="EUR")


@pytest.mark.parametrize("currency", ["eur", "EURO", "XXY", "", None, 978])
def test_money_refuses_unknown_currencies(currency: object) -> None:
    with pytest.raises(ValidationError, match="ISO 4217"):
        Money(amount=1, currency=currency)


def test_money_from_json_keeps_integers_and_refuses_floats() -> None:
    assert Money.model_validate_json('{"amount": 1250, "currency": "EUR"}') == eur(1250)
    with pytest.raises(ValidationError, match="got float"):
        Money.model_validate_json('{"amount": 12.50, "currency": "EUR"}')
    with pytest.raises(ValidationError, match="Extra inputs"):
        Money.model_validate({"amount": 1, "currency": "EUR", "rate": 2})


def test_arithmetic_refuses_mixed_currencies() -> None:
    with pytest.raises(CurrencyMismatch, match="EUR and CHF"):
        eur(100) + Money(amount=100, currency="CHF")
    with pytest.raises(CurrencyMismatch):
        eur(100) < Money(amount=100, currency="CHF")  # noqa: B015
    with pytest.raises(MoneyError, match="cannot combine Money with int"):
        eur(100) + 5  # type: ignore[operator]  # adding a plain int is the refusal under test


def test_arithmetic_and_display() -> None:
    assert eur(1250) - eur(2000) == eur(-750)
    assert -eur(5) == eur(-5)
    assert total([eur(1), eur(2)], "EUR") == eur(3)
    assert total([], "EUR") == eur(0)
    assert eur(-1250).decimal_text() == "-12.50"
    assert Money(amount=1250, currency="XPF").decimal_text() == "1250"
    assert eur(1250).format("fr").replace("\u202f", " ").replace("\xa0", " ") == "12,50 €"
    assert eur(1250).format("en") == "€12.50"


@pytest.mark.parametrize(
    ("quantity", "unit", "fee", "expected"),
    [
        ("1", 1550, "0", 1550),
        ("0.333", 1999, "0", 666),  # 665.667 -> 666
        ("0.5", 1, "0", 1),  # half-up, not banker's rounding
        ("1.5", 1, "0", 2),
        ("2.5", 1, "0", 3),
        ("1", 1000, "0.05", 1050),
        ("0.125", 2000, "0.05", 263),  # 262.5 -> 263
    ],
)
def test_line_amount_rounds_half_up_once_per_line(quantity: str, unit: int, fee: str, expected: int) -> None:
    assert line_amount(Decimal(quantity), eur(unit), Decimal(fee)) == eur(expected)


def test_line_amount_refuses_float_quantities() -> None:
    with pytest.raises(MoneyError, match="never float"):
        line_amount(0.5, eur(100))  # type: ignore[arg-type]  # a float is the refusal under test


@given(st.lists(st.integers(-(10**9), 10**9), max_size=50))
def test_total_is_exact_integer_sum(amounts: list[int]) -> None:
    assert total([eur(a) for a in amounts], "EUR").amount == sum(amounts)
