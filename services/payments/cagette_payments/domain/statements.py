"""Bank statements, as the payments service reads them (pure: no parsing library, no I/O).

The adapters (`cagette_payments.adapters.statements`) turn a camt.053, MT940 or CSV file into a
`Statement`; this module checks it against the group (account, currency, balances), gives each
line a stable identity so that re-importing a statement never counts a line twice, and finds
the RF references a line carries.

Amounts are signed integer minor units: a credit (money in) is positive, a debit negative. They
come from the file's decimal text (`minor_units`), never through a float.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal, InvalidOperation
from enum import StrEnum

from stdnum import iso11649

from .references import is_valid_reference

MAX_TEXT = 500  # a bank's free text is at most a few hundred characters (SEPA: 140)


class StatementError(ValueError):
    """The file cannot be imported: not a statement, another account, a malformed amount...
    `line` is the 1-based line (entry) of the statement when the problem is in one."""

    def __init__(self, reason: str, *, line: int | None = None) -> None:
        super().__init__(f"line {line}: {reason}" if line is not None else reason)
        self.reason = reason
        self.line = line


class Format(StrEnum):
    CAMT = "camt"
    MT940 = "mt940"
    CSV = "csv"


class Direction(StrEnum):
    CREDIT = "credit"
    DEBIT = "debit"


@dataclass(frozen=True)
class StatementLine:
    number: int  # position in the file (1-based), for error messages and the report
    booking_date: date
    amount: int  # signed minor units: credits positive
    currency: str
    counterparty: str = ""
    counterparty_iban: str | None = None
    label: str = ""  # the free text (unstructured remittance, :86: purpose, CSV label)
    creditor_reference: str | None = None  # the structured creditor reference, when the bank gives one
    bank_reference: str | None = None  # the bank's own id of the line, when there is one
    value_date: date | None = None

    @property
    def direction(self) -> Direction:
        return Direction.CREDIT if self.amount > 0 else Direction.DEBIT


@dataclass(frozen=True)
class Statement:
    format: str  # e.g. "camt.053.001.08", "mt940", "csv"
    iban: str | None
    currency: str | None
    lines: list[StatementLine]
    statement_id: str | None = None
    opening_balance: int | None = None  # signed minor units
    closing_balance: int | None = None


# -- amounts --------------------------------------------------------------------------------

_AMOUNT = re.compile(r"^[+-]?[0-9]+([.,][0-9]+)?$")


def minor_units(text: str, exponent: int, *, line: int | None = None, what: str = "amount") -> int:
    """Exact minor units of a decimal text ("12.50", "12,5", "-3", "1250.00"), never via float.
    More decimals than the currency has (unless zeros) is refused, as is anything not digits."""
    cleaned = text.strip() if isinstance(text, str) else ""
    if not _AMOUNT.match(cleaned):
        raise StatementError(f"{what} {text!r} is not a decimal number", line=line)
    try:
        value = Decimal(cleaned.replace(",", "."))
    except InvalidOperation:  # pragma: no cover - the pattern already refused it
        raise StatementError(f"{what} {text!r} is not a decimal number", line=line) from None
    scaled = value.scaleb(exponent)
    if scaled != scaled.to_integral_value():
        raise StatementError(f"{what} {text!r} has more than {exponent} decimals", line=line)
    return int(scaled)


# -- text from outside ----------------------------------------------------------------------


def clean_text(value: str | None, *, limit: int = MAX_TEXT) -> str:
    """Bank text made safe to keep and show: control characters become spaces, runs of spaces
    collapse, cut to `limit` characters."""
    if not value:
        return ""
    chars = [" " if unicodedata.category(c).startswith("C") else c for c in value]
    return re.sub(r"\s+", " ", "".join(chars)).strip()[:limit]


# -- checks against the group ---------------------------------------------------------------


def compact_iban(iban: str | None) -> str | None:
    return re.sub(r"\s+", "", iban).upper() if iban else None


def check_statement(statement: Statement, *, group_iban: str | None, currency: str) -> None:
    """The statement is of the group's account, in its currency, and its balances add up."""
    if not statement.lines:
        raise StatementError("the statement has no lines")
    expected = compact_iban(group_iban)
    if expected is None:
        raise StatementError("the group has no bank account (IBAN) to import statements for")
    found = compact_iban(statement.iban)
    if found is not None and found != expected:
        raise StatementError(f"the statement is for account {found}, not the group's account {expected}")
    if statement.currency is not None and statement.currency != currency:
        raise StatementError(f"the statement is in {statement.currency}, not the group's currency {currency}")
    for line in statement.lines:
        if line.currency != currency:
            raise StatementError(
                f"the amount is in {line.currency}, not the group's currency {currency}", line=line.number
            )
        if line.amount == 0:
            raise StatementError("the amount is zero", line=line.number)
    if statement.opening_balance is not None and statement.closing_balance is not None:
        moved = sum(line.amount for line in statement.lines)
        if statement.opening_balance + moved != statement.closing_balance:
            raise StatementError(
                f"the balances do not add up: opening {statement.opening_balance} + lines {moved} "
                f"!= closing {statement.closing_balance} (minor units); is the file complete?"
            )


# -- line identity --------------------------------------------------------------------------


def _normalised(text: str | None) -> str:
    return re.sub(r"\s+", " ", (text or "").strip().casefold())


def line_keys(statement: Statement, account: str) -> list[str]:
    """One stable key per line, the same however often the statement (or an overlapping one) is
    imported: the bank's reference when it gives one, else a fingerprint of account, booking
    date, amount, counterparty and label, with a counter for true duplicates (two identical
    lines on one day are two lines)."""
    keys: list[str] = []
    seen: Counter[str] = Counter()
    for line in statement.lines:
        if line.bank_reference:
            base = f"bank:{line.bank_reference.strip()}"
        else:
            material = "|".join(
                (
                    account,
                    line.booking_date.isoformat(),
                    str(line.amount),
                    line.currency,
                    _normalised(line.counterparty),
                    _normalised(line.label),
                    _normalised(line.creditor_reference),
                )
            )
            base = "fp:" + hashlib.sha256(material.encode()).hexdigest()[:40]
        seen[base] += 1
        keys.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return keys


# -- references in a line -------------------------------------------------------------------

_RF_START = re.compile(r"RF[0-9]{2}")
_OUR_SHAPE = re.compile(r"RF[0-9]{14}")  # "RF" + 2 check digits + our 12-digit body
_SEPARATORS = re.compile(r"[\s\-_./]+")


@dataclass(frozen=True)
class FoundReferences:
    valid: list[str] = field(default_factory=list)  # compact, check digits right
    mistyped: list[str] = field(default_factory=list)  # shaped like ours, check digits wrong


def find_references(*texts: str | None) -> FoundReferences:
    """The RF references written in the texts, however spaced, cased or broken over lines:
    every valid one (ISO 11649 check digits), and those shaped like ours whose check digits are
    wrong (a typo: a suggestion for a coordinator, never a match)."""
    valid: list[str] = []
    mistyped: list[str] = []
    for text in texts:
        if not text:
            continue
        compact = _SEPARATORS.sub("", text.upper())
        for start in _RF_START.finditer(compact):
            tail = compact[start.start() : start.start() + 25]
            ours = _OUR_SHAPE.match(tail)
            if ours:
                if not is_valid_reference(ours.group()):
                    mistyped.append(ours.group())
                    continue
                candidates = [ours.group()]
            else:
                # Another issuer's reference may be shorter, longer or carry letters: the longest
                # valid candidate starting here.
                candidates = [
                    tail[:length]
                    for length in range(len(tail), 4, -1)
                    if tail[:length].isalnum() and is_valid_reference(tail[:length])
                ][:1]
            for candidate in candidates:
                if candidate not in valid:
                    valid.append(candidate)
    return FoundReferences(valid, [m for m in mistyped if m not in valid])


def near_miss(typed: str, known: str) -> bool:
    """`typed` is `known` with one character changed, or two neighbours swapped (the typos the
    check digits catch)."""
    if len(typed) != len(known) or typed == known:
        return False
    differences = [i for i, (a, b) in enumerate(zip(typed, known, strict=True)) if a != b]
    if len(differences) == 1:
        return True
    return (
        len(differences) == 2
        and differences[1] == differences[0] + 1
        and typed[differences[0]] == known[differences[1]]
        and typed[differences[1]] == known[differences[0]]
    )


def printed(reference: str) -> str:
    return iso11649.format(reference)


# -- what a credit line does ----------------------------------------------------------------


class Outcome(StrEnum):
    MATCHED = "matched"  # confirmed a declared payment for its amount
    AMOUNT_CORRECTED = "amount_corrected"  # confirmed a declared payment for the amount received
    TOP_UP = "top_up"  # a member's standing reference: credited to their account
    TO_REVIEW = "to_review"  # nothing (or several things) matched: a coordinator decides
    ASSIGNED = "assigned"  # a coordinator assigned it to a member (and maybe a payment)
    IGNORED = "ignored"  # a coordinator ignored it
    DEBIT = "debit"  # money out: listed, not matched


SETTLED_OUTCOMES = frozenset({Outcome.MATCHED, Outcome.AMOUNT_CORRECTED, Outcome.TOP_UP, Outcome.ASSIGNED})


def without_texts(line: StatementLine) -> StatementLine:
    """The line with its free text cut to what is kept (for storage)."""
    return replace(
        line,
        counterparty=clean_text(line.counterparty, limit=200),
        label=clean_text(line.label),
        creditor_reference=clean_text(line.creditor_reference, limit=35) or None,
        bank_reference=clean_text(line.bank_reference, limit=100) or None,
        counterparty_iban=compact_iban(clean_text(line.counterparty_iban, limit=34)) or None,
    )
