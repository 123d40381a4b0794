"""The shared input types: free text, ASCII numbers, bounded dates, strict request bodies."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated

import pytest
from pydantic import BaseModel, Field, ValidationError

from cagette_contracts.inputs import (
    SINGLE_LINE,
    AsciiDecimal,
    BusinessDate,
    Cursor,
    Flag,
    Label,
    Note,
    RequestBody,
    UtcDatetime,
)


class Form(RequestBody):
    label: Label = ""
    note: Note = ""
    short: Annotated[str, Field(max_length=5), SINGLE_LINE] = ""
    quantity: AsciiDecimal = Decimal(1)
    paid_on: BusinessDate | None = None
    at: UtcDatetime | None = None
    cursor: Cursor = 0
    reminders: Flag = True


def refusal(**fields: object) -> tuple[tuple[str | int, ...], str]:
    with pytest.raises(ValidationError) as caught:
        Form(**fields)  # type: ignore[arg-type]  # arbitrary fields are the input under test
    error = caught.value.errors()[0]
    return error["loc"], error["msg"]


@pytest.mark.parametrize("bad", ["a\x00b", "tab\there", "line\nbreak", "\x1b[31m", "\ud800", "evil\u202etxt"])
def test_single_line_text_refuses_control_characters_naming_the_field(bad: str) -> None:
    loc, msg = refusal(label=bad)
    assert loc == ("label",) and ("control character" in msg or "unicode" in msg)


def test_multi_line_text_keeps_newlines_but_not_nul() -> None:
    assert Form(note="first\r\nsecond\tindented").note == "first\r\nsecond\tindented"
    assert refusal(note="a\x00")[0] == ("note",)


def test_text_is_nfc_normalised_and_bounded() -> None:
    assert Form(label="Cre\u0300me").label == "Crème"
    assert len(Form(label="Cre\u0300me").label) == 5
    assert refusal(short="abcdef")[0] == ("short",)
    assert refusal(label="x" * 201)[0] == ("label",)


@pytest.mark.parametrize("bad", ["١٢", "٣", "1e3", "NaN", "Infinity", " ", "1" * 40, 0.5])
def test_decimals_are_ascii_digits_only(bad: object) -> None:
    assert refusal(quantity=bad)[0] == ("quantity",)


def test_plain_decimals_pass() -> None:
    assert Form(quantity="0.375").quantity == Decimal("0.375")
    assert Form(quantity=2).quantity == 2


def test_cursors_fit_a_bigint() -> None:
    assert Form(cursor=2**63 - 1).cursor == 2**63 - 1
    assert refusal(cursor=2**70)[0] == ("cursor",)
    assert refusal(cursor=-1)[0] == ("cursor",)


def test_business_dates_lie_in_a_sane_window() -> None:
    assert Form(paid_on=date.today()).paid_on == date.today()
    assert refusal(paid_on="9999-12-31")[0] == ("paid_on",)
    assert refusal(paid_on="1900-01-01")[0] == ("paid_on",)
    assert refusal(paid_on=str(date.today() + timedelta(days=400)))[0] == ("paid_on",)


def test_datetimes_are_converted_to_utc_and_never_overflow() -> None:
    assert Form(at="2026-03-01T10:00:00").at == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert Form(at="2026-03-01T10:00:00+01:00").at == datetime(2026, 3, 1, 9, tzinfo=UTC)
    assert refusal(at="9999-12-31T23:59:59-01:00")[0] == ("at",)
    assert refusal(at="0001-01-01T00:00:00+01:00")[0] == ("at",)


@pytest.mark.parametrize("bad", ["no", "false", 0, "off", "0"])
def test_flags_are_true_or_false_only(bad: object) -> None:
    assert refusal(reminders=bad)[0] == ("reminders",)


def test_unknown_fields_are_refused() -> None:
    loc, _ = refusal(surprise=1)
    assert loc == ("surprise",)


def test_request_bodies_share_one_config() -> None:
    class Other(RequestBody):
        name: Label

    assert Other.model_config["extra"] == "forbid"
    assert not issubclass(Other, Form) and issubclass(Other, BaseModel)
