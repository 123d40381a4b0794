"""Amounts as people type them in the pages' forms. Pure."""

from __future__ import annotations

import pytest

from cagette_web.domain import BadAmount, parse_amount


@pytest.mark.parametrize(
    ("typed", "cents"),
    [
        ("14,65", 1465),
        ("14.65", 1465),
        (" 14,6 ", 1460),
        ("14", 1400),
        ("0,05", 5),
        (",5", 50),
        ("1 234,56", 123456),
        ("1\u202f234,56", 123456),
        ("-3,10", -310),
    ],
)
def test_french_and_english_writings_are_read_in_cents(typed: str, cents: int) -> None:
    assert parse_amount(typed, "EUR") == cents


def test_a_currency_without_decimals_takes_whole_units() -> None:
    assert parse_amount("1500", "XPF") == 1500
    with pytest.raises(BadAmount) as refused:
        parse_amount("15,5", "XPF")
    assert refused.value.key == "amount.too_precise"


@pytest.mark.parametrize("typed", ["", " ", "-", "abc", "14,6,5", "1.2.3", "١٤", "14€", "+3", "--3", "1" * 13])
def test_anything_else_is_refused_with_a_message_key(typed: str) -> None:
    with pytest.raises(BadAmount) as refused:
        parse_amount(typed, "EUR")
    assert refused.value.key == "amount.invalid"


def test_more_decimals_than_the_currency_has_are_refused() -> None:
    with pytest.raises(BadAmount) as refused:
        parse_amount("14,655", "EUR")
    assert refused.value.key == "amount.too_precise"
