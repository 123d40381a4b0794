"""Pure rules of statement import: exact amounts, references found in bank text, line identity."""

from __future__ import annotations

from datetime import date

import pytest

from cagette_payments.domain.references import make_reference
from cagette_payments.domain.statements import (
    Statement,
    StatementError,
    StatementLine,
    check_statement,
    find_references,
    line_keys,
    minor_units,
    near_miss,
)

REF = make_reference("539007547034")  # RF18539007547034
IBAN = "FR7630006000011234567890189"


@pytest.mark.parametrize(
    ("text", "exponent", "cents"),
    [
        ("12.50", 2, 1250),
        ("12,5", 2, 1250),
        ("0.10", 2, 10),
        ("1234567890.99", 2, 123456789099),
        ("7", 0, 7),
        ("-3.20", 2, -320),
        ("+4", 2, 400),
        ("12.500", 2, 1250),
    ],
)
def test_amounts_are_exact_minor_units(text: str, exponent: int, cents: int) -> None:
    assert minor_units(text, exponent) == cents


@pytest.mark.parametrize("text", ["1e3", "12.345", "twelve", "", "1.2.3", "١٢", "NaN", "12 .5", "0x10"])
def test_malformed_amounts_are_refused_with_the_line(text: str) -> None:
    with pytest.raises(StatementError) as refused:
        minor_units(text, 2, line=7)
    assert refused.value.line == 7


@pytest.mark.parametrize(
    "text",
    [
        REF,
        "rf18 5390 0754 7034",
        "Commande RF18\n5390 0754\r\n7034 merci",
        "REF:RF18-5390-0754-7034.",
        "x rf1853900754703412 y",
    ],
)
def test_a_reference_is_found_however_it_is_spaced_cased_or_broken(text: str) -> None:
    assert find_references(text).valid == [REF]


def test_a_typo_is_a_suggestion_never_a_match() -> None:
    typo = "RF18 5390 0754 7043"  # two neighbours swapped
    found = find_references(typo)
    assert found.valid == [] and found.mistyped == ["RF18539007547043"]
    assert near_miss("RF18539007547043", REF) and near_miss("RF18539007547035", REF)
    assert not near_miss("RF18539007541111", REF)


def test_several_references_are_all_found() -> None:
    other = make_reference("000000000042")
    assert find_references(f"{REF} and {other}", None).valid == [REF, other]


def _line(number: int, amount: int = 1250, **kw: object) -> StatementLine:
    return StatementLine(number=number, booking_date=date(2026, 3, 2), amount=amount, currency="EUR", **kw)  # type: ignore[arg-type]  # keyword overrides of the line's fields


def test_line_keys_are_stable_and_count_true_duplicates() -> None:
    lines = [_line(1, label="Cotisation"), _line(2, label="Cotisation"), _line(3, bank_reference="B-1")]
    statement = Statement("csv", None, None, lines)
    first = line_keys(statement, IBAN)
    assert first == line_keys(Statement("csv", None, None, list(lines)), IBAN)
    assert len(set(first)) == 3 and first[1] == first[0] + "#2" and first[2] == "bank:B-1"
    # the same day seen again in an overlapping statement keeps the same keys
    assert line_keys(Statement("csv", None, None, lines[:2]), IBAN) == first[:2]


def test_the_statement_must_be_the_groups_account_currency_and_add_up() -> None:
    good = Statement("mt940", IBAN, "EUR", [_line(1)], opening_balance=100, closing_balance=1350)
    check_statement(good, group_iban="FR76 3000 6000 0112 3456 7890 189", currency="EUR")
    for bad, words in [
        (Statement("mt940", "DE89370400440532013000", "EUR", [_line(1)]), "not the group's account"),
        (Statement("mt940", IBAN, "CHF", [_line(1)]), "not the group's currency"),
        (Statement("mt940", IBAN, "EUR", [_line(1)], opening_balance=0, closing_balance=1), "do not add up"),
        (Statement("mt940", IBAN, "EUR", []), "no lines"),
    ]:
        with pytest.raises(StatementError, match=words):
            check_statement(bad, group_iban=IBAN, currency="EUR")
