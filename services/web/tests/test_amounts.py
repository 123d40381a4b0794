"""Amounts as people type them into the pages' forms (domain.parse_amount)."""

from __future__ import annotations

import pytest

from cagette_web.domain import AmountRefused, parse_amount


@pytest.mark.parametrize(
    ("typed", "cents"),
    [
        ("14,65", 1465),
        ("14.65", 1465),
        (" 14,6 ", 1460),
        ("14", 1400),
        ("0,01", 1),
        ("1 234,50", 123450),
        ("1\u202f234,50", 123450),
        (",5", 50),
        ("12.", 1200),
    ],
)
def test_typed_amounts_in_cents(typed: str, cents: int) -> None:
    assert parse_amount(typed, "EUR") == cents


def test_signs_only_where_allowed_and_currencies_without_decimals() -> None:
    assert parse_amount("-12,50", "EUR", signed=True) == -1250
    assert parse_amount("+25", "EUR", signed=True) == 2500
    assert parse_amount("\u22123", "EUR", signed=True) == -300
    assert parse_amount("1500", "XPF") == 1500
    with pytest.raises(AmountRefused) as refused:
        parse_amount("-12,50", "EUR")
    assert refused.value.reason == "amounts.positive_only"


@pytest.mark.parametrize(
    ("typed", "key"),
    [
        ("12,3x", "amounts.not_a_number"),
        ("", "amounts.required"),
        ("  ", "amounts.required"),
        ("1,2,3", "amounts.not_a_number"),
        ("1.234", "amounts.too_many_decimals"),
        ("0,00", "amounts.zero"),
        ("\u0661\u0662", "amounts.not_a_number"),
        ("１２", "amounts.not_a_number"),
        ("1e3", "amounts.not_a_number"),
        ("9" * 13, "amounts.too_large"),
        ("-", "amounts.positive_only"),
    ],
)
def test_what_is_not_an_amount_is_refused_with_a_message_key(typed: str, key: str) -> None:
    with pytest.raises(AmountRefused) as refused:
        parse_amount(typed, "EUR")
    assert refused.value.reason == key


def test_decimals_of_the_currency() -> None:
    with pytest.raises(AmountRefused) as refused:
        parse_amount("15,5", "XPF")
    assert refused.value.reason == "amounts.too_many_decimals" and refused.value.details["decimals"] == 0
