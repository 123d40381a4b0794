"""What every service accepts from outside: free text, numbers, dates and request bodies.

One place decides what a request may carry, so each service refuses the same bad input the same
way (a 422 naming the field) before it reaches the domain or the database:

- text is NFC-normalised and bounded in length per kind of field; control characters (NUL
  included), lone surrogates and bidirectional overrides are refused, newlines only where the
  field is multi-line;
- numbers are written with ASCII digits only (Python's `int()`, `Decimal()` and regex `\\d` all
  accept any Unicode digit, so `"٣"` would otherwise be 3);
- dates and datetimes lie in a window where every conversion (to UTC, to PostgreSQL) is defined;
- request bodies refuse unknown fields.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool

# --- text ------------------------------------------------------------------------------------

# Bidirectional overrides and isolates can make a label read differently from what it is.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_NEWLINES = frozenset("\n\r\t")


def check_text(value: str, *, multiline: bool = False) -> str:
    """`value` NFC-normalised, or ValueError saying which character is not accepted."""
    for char in value:
        category = unicodedata.category(char)
        if category in ("Cc", "Cs") or char in _BIDI_CONTROLS:
            if multiline and char in _NEWLINES:
                continue
            raise ValueError(
                f"contains the control character U+{ord(char):04X}"
                + ("" if multiline else " (this field is a single line)")
            )
    return unicodedata.normalize("NFC", value)


def _single_line(value: str) -> str:
    return check_text(value)


def _multi_line(value: str) -> str:
    return check_text(value, multiline=True)


# Add one of these to an `Annotated[str, Field(max_length=...)]` to make it free text.
SINGLE_LINE = AfterValidator(_single_line)
MULTI_LINE = AfterValidator(_multi_line)

# The kinds of field, each with its bound. Names: people, groups, products, catalogs.
Name = Annotated[str, Field(min_length=1, max_length=200), SINGLE_LINE]
# Short labels: a cheque number, a payee, a unit.
Label = Annotated[str, Field(max_length=200), SINGLE_LINE]
# A place (a distribution's address).
Place = Annotated[str, Field(min_length=1, max_length=300), SINGLE_LINE]
# Reasons and notes a person writes (may span lines).
Reason = Annotated[str, Field(min_length=1, max_length=1000), MULTI_LINE]
Note = Annotated[str, Field(max_length=1000), MULTI_LINE]
# Any other text in a query string (filters, references).
QueryText = Annotated[str, Field(max_length=200), SINGLE_LINE]

# --- numbers ---------------------------------------------------------------------------------

INT64_MAX = 2**63 - 1
_ASCII_DECIMAL = re.compile(r"[+-]?[0-9]{1,15}(?:\.[0-9]{1,15})?")


def _ascii_decimal(value: Any) -> Any:
    # Decimal("٣") is 3: a decimal written as text must use ASCII digits.
    if isinstance(value, str) and _ASCII_DECIMAL.fullmatch(value.strip()) is None:
        raise ValueError("must be a decimal number written with ASCII digits, like 2 or 0.375")
    if isinstance(value, float):
        raise ValueError('must be given as a decimal string (like "0.375") or an integer, never a float')
    return value


AsciiDecimal = Annotated[Decimal, BeforeValidator(_ascii_decimal)]
# A database cursor (a BIGINT key).
Cursor = Annotated[int, Field(ge=0, le=INT64_MAX)]

# --- dates -----------------------------------------------------------------------------------

# Nothing in a food-buying group happens before this, and every date up to the last one has a
# UTC conversion and fits PostgreSQL.
EARLIEST_DATE = date(2000, 1, 1)
LATEST_DATE = date(2100, 12, 31)
# A business date (when a payment was made): at most this far ahead of today.
BUSINESS_DATE_LEAD = timedelta(days=366)


def _date_in_window(value: date) -> date:
    if not EARLIEST_DATE <= value <= LATEST_DATE:
        raise ValueError(f"must be between {EARLIEST_DATE} and {LATEST_DATE}")
    return value


def _business_date(value: date) -> date:
    latest = datetime.now(UTC).date() + BUSINESS_DATE_LEAD
    if not EARLIEST_DATE <= value <= latest:
        raise ValueError(f"must be between {EARLIEST_DATE} and {latest} (at most a year ahead)")
    return value


def _utc_in_window(value: datetime) -> datetime:
    """A naive datetime means UTC; the result is aware, in UTC, inside the window."""
    if not EARLIEST_DATE <= value.date() <= LATEST_DATE:
        raise ValueError(f"must be between {EARLIEST_DATE} and {LATEST_DATE}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


BoundedDate = Annotated[date, AfterValidator(_date_in_window)]
BusinessDate = Annotated[date, AfterValidator(_business_date)]
UtcDatetime = Annotated[datetime, AfterValidator(_utc_in_window)]
# A datetime that must say its offset (a distribution's start).
AwareUtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc_in_window)]

# --- bodies ----------------------------------------------------------------------------------

# A boolean is true or false, never "no", "off" or 0.
Flag = StrictBool


class RequestBody(BaseModel):
    """The one model config of every request body: unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")


__all__ = [
    "AsciiDecimal",
    "AwareUtcDatetime",
    "BoundedDate",
    "BusinessDate",
    "Cursor",
    "EARLIEST_DATE",
    "Flag",
    "INT64_MAX",
    "LATEST_DATE",
    "Label",
    "Name",
    "Note",
    "Place",
    "QueryText",
    "Reason",
    "RequestBody",
    "UtcDatetime",
    "MULTI_LINE",
    "SINGLE_LINE",
    "check_text",
]
