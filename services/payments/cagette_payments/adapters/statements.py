"""Statement files in, `Statement` out: camt.053 / camt.052 (pycamt), MT940 (mt-940) and CSV
with a group's saved column mapping (the standard library's csv).

Every problem is a `StatementError` naming it and, when it is in one, the line; nothing here
touches the database. Amounts are taken from the file's decimal text: pycamt returns entry
amounts as text but signs balances through a float, so balances are read from the XML itself;
mt-940 reads amounts as `Decimal`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

import mt940
from lxml import etree
from pycamt.parser import Camt053ParseError, Camt053Parser
from stdnum import iban

from cagette_contracts.money import MoneyError, minor_unit_exponent, validate_currency

from ..domain.statements import Format, Statement, StatementError, StatementLine, minor_units

# camt.053 (statement) and camt.052 (intraday report) in the versions banks send.
_CAMT_NAMESPACE = re.compile(r"^\{urn:iso:std:iso:20022:tech:xsd:(camt\.05[23])\.001\.(\d\d)\}Document$")
CAMT_VERSIONS = range(2, 9)  # .001.02 to .001.08
_MAX_LINES = 20_000


def detect_format(data: bytes) -> Format:
    head = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"<"):
        return Format.CAMT
    if re.search(rb"(^|\n):20:", head) or head.startswith(b"{1:"):
        return Format.MT940
    return Format.CSV


def parse_statement(data: bytes, fmt: Format, *, currency: str, mapping: CsvMapping | None = None) -> Statement:
    """The statement in `data`, read as `fmt` (the group's currency gives the minor unit)."""
    exponent = minor_unit_exponent(currency)
    match fmt:
        case Format.CAMT:
            statement = parse_camt(data, exponent)
        case Format.MT940:
            statement = parse_mt940(data, exponent)
        case Format.CSV:
            if mapping is None:
                raise StatementError(
                    "the file is not a camt.053/052 or MT940 statement, and the group has no CSV column mapping "
                    "to read it as a CSV export (save one first: PUT bank-settings)"
                )
            statement = parse_csv(data, mapping, currency=currency, exponent=exponent)
    if len(statement.lines) > _MAX_LINES:
        raise StatementError(f"the statement has {len(statement.lines)} lines, more than {_MAX_LINES}")
    return statement


# -- camt.053 / camt.052 --------------------------------------------------------------------


def _date(text: str | None, line: int | None, what: str = "booking date") -> date:
    try:
        return date.fromisoformat((text or "")[:10])
    except ValueError:
        raise StatementError(f"the {what} {text!r} is not a date", line=line) from None


def _currency(code: str | None, line: int | None) -> str:
    try:
        return validate_currency(code)
    except MoneyError:
        raise StatementError(f"the currency {code!r} is not an ISO 4217 code", line=line) from None


def parse_camt(data: bytes, exponent: int) -> Statement:
    try:
        parser = Camt053Parser(data)
    except etree.XMLSyntaxError as exc:
        raise StatementError(
            f"the file is not well-formed XML ({exc.msg}): is it truncated?", line=exc.lineno
        ) from None
    found = _CAMT_NAMESPACE.match(parser.tree.tag)
    if found is None:
        raise StatementError(
            f"the XML document is not an ISO 20022 camt.053 or camt.052 statement (root {parser.tree.tag!r})"
        )
    message, version = found.group(1), int(found.group(2))
    if version not in CAMT_VERSIONS:
        raise StatementError(f"{message}.001.{version:02d} is not a supported version (02 to 08)")
    try:
        infos = parser.get_statement_info()
        entries = parser.get_transactions()
    except Camt053ParseError:
        raise StatementError(f"the {message} document has no statement (Stmt) or report (Rpt)") from None
    except AttributeError:  # pycamt reads a mandatory element that is missing
        raise StatementError(f"the {message} document lacks a mandatory element") from None
    ibans = {info["IBAN"] for info in infos}
    if len(ibans) != 1:
        raise StatementError(f"the file holds statements of several accounts ({', '.join(map(str, ibans))})")
    account_currencies = {info["Currency"] for info in infos} - {None}
    opening, closing = _camt_balances(parser, exponent)
    lines: list[StatementLine] = []
    for number, entry in enumerate(entries, start=1):
        if entry.get("Status") not in (None, "BOOK"):
            continue  # pending or information only: not (yet) money on the account
        lines.append(_camt_line(number, entry, exponent))
    return Statement(
        format=f"{message}.001.{version:02d}",
        iban=ibans.pop(),
        currency=account_currencies.pop() if len(account_currencies) == 1 else None,
        lines=lines,
        statement_id=_camt_statement_id(parser),
        opening_balance=opening,
        closing_balance=closing,
    )


def _camt_line(number: int, entry: dict[str, Any], exponent: int) -> StatementLine:
    indicator = entry.get("CreditDebitIndicator")
    if indicator not in ("CRDT", "DBIT"):
        raise StatementError(f"the credit/debit indicator {indicator!r} is neither CRDT nor DBIT", line=number)
    if entry.get("Amount") is None:
        raise StatementError("the entry has no amount", line=number)
    amount = minor_units(entry["Amount"], exponent, line=number)
    if amount < 0:
        raise StatementError(f"the amount {entry['Amount']!r} is negative: the indicator gives the sign", line=number)
    credit = indicator == "CRDT"
    structured = entry.get("RemittanceInformation")
    free = entry.get("RemittanceInformationFull") or ""
    creditor_reference = structured if structured and structured not in free else None
    label = " ".join(
        text
        for text in (free, entry.get("AdditionalRemittanceInformation"), entry.get("AdditionalEntryInformation"))
        if text
    )
    return StatementLine(
        number=number,
        booking_date=_date(entry.get("BookingDate") or entry.get("ValueDate"), number),
        value_date=_date(entry["ValueDate"], number, "value date") if entry.get("ValueDate") else None,
        amount=amount if credit else -amount,
        currency=_currency(entry.get("Currency"), number),
        counterparty=(entry.get("DebtorName") if credit else entry.get("CreditorName")) or "",
        counterparty_iban=entry.get("DebtorIBAN") if credit else entry.get("CreditorIBAN"),
        label=label,
        creditor_reference=creditor_reference,
        bank_reference=entry.get("TransactionID"),
    )


def _camt_statement_id(parser: Camt053Parser) -> str | None:
    for path in (".//Stmt/Id", ".//Rpt/Id"):
        found = parser.tree.find(path, parser.namespaces)
        if found is not None and found.text:
            return str(found.text)
    return None


def _camt_balances(parser: Camt053Parser, exponent: int) -> tuple[int | None, int | None]:
    """Opening balance of the first statement and closing balance of the last, signed, from the
    XML's text (booked balances: OPBD, or PRCD for banks that send the previous closing)."""
    statements = parser.tree.findall(".//Stmt", parser.namespaces) or parser.tree.findall(".//Rpt", parser.namespaces)
    opening: int | None = None
    closing: int | None = None
    for index, statement in enumerate(statements):
        for balance in statement.findall("Bal", parser.namespaces):
            code = balance.findtext("Tp/CdOrPrtry/Cd", namespaces=parser.namespaces)
            text = balance.findtext("Amt", namespaces=parser.namespaces)
            if code not in ("OPBD", "PRCD", "CLBD") or text is None:
                continue
            value = minor_units(text, exponent, what=f"the {code} balance")
            if balance.findtext("CdtDbtInd", namespaces=parser.namespaces) == "DBIT":
                value = -value
            if code in ("OPBD", "PRCD") and index == 0 and (opening is None or code == "OPBD"):
                opening = value
            elif code == "CLBD" and index == len(statements) - 1:
                closing = value
    return opening, closing


# -- MT940 ----------------------------------------------------------------------------------

_MT940_OPTIONS = mt940.Options(
    applicant_iban=True,  # ?31 is the counterparty's account, not part of the name
    merge_keeps_values=True,
    reversal_sign=True,  # RC (reversal of a credit) takes money out
    case_insensitive_marks=True,
    unbounded_details=True,
    strip_bom=True,
)
# Slash-coded :86: (Dutch banks, SEPA in MT940 "structured" form): /EREF/.../NAME/.../REMI/...
_SLASH_CODES = re.compile(r"/(EREF|MARF|CSID|CNTP|REMI|NAME|ORDP|BENM|PREF|IBAN|BIC|ADDR|RTRN|PURP|ISDT)/")


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # SWIFT files from banks are often ISO 8859-1


def parse_mt940(data: bytes, exponent: int) -> Statement:
    text = _text(data)
    if ":61:" not in text and ":60F:" not in text:
        raise StatementError("the file is not an MT940 statement (no :60F: balance, no :61: line)")
    try:
        # A file-like source: mt-940 would read a str naming an existing file as a path.
        blocks = mt940.parse_statements(io.StringIO(text), options=_MT940_OPTIONS)
    except (RuntimeError, ValueError, KeyError, IndexError) as exc:
        raise StatementError(f"the MT940 statement cannot be read: {exc}") from None
    blocks = [block for block in blocks if block.data.get("account_identification") or len(block)]
    if not blocks:
        raise StatementError("the file is not an MT940 statement (no :25: account)")
    accounts = {str(block.data.get("account_identification") or "").strip() for block in blocks}
    if len(accounts) != 1:
        raise StatementError(f"the file holds statements of several accounts ({', '.join(sorted(accounts))})")
    account = accounts.pop()
    lines: list[StatementLine] = []
    currencies: set[str] = set()
    for block in blocks:
        for transaction in block:
            lines.append(_mt940_line(len(lines) + 1, transaction.data, exponent))
        for key in ("final_opening_balance", "final_closing_balance"):
            balance = block.data.get(key)
            if balance is not None and balance.amount.currency:
                currencies.add(balance.amount.currency)
    opening = blocks[0].data.get("final_opening_balance")
    closing = blocks[-1].data.get("final_closing_balance")
    return Statement(
        format="mt940",
        iban=_mt940_iban(account),
        currency=currencies.pop() if len(currencies) == 1 else None,
        lines=lines,
        statement_id=str(blocks[0].data.get("transaction_reference") or "") or None,
        opening_balance=_mt940_amount(opening.amount, exponent) if opening is not None else None,
        closing_balance=_mt940_amount(closing.amount, exponent) if closing is not None else None,
    )


def _mt940_iban(account: str) -> str:
    """:25: is "IBAN", "IBAN" + currency (Dutch banks), "BIC/IBAN" or "bank code/account" (German
    banks): the IBAN when there is one."""
    for part in account.split("/"):
        candidate = part.strip().replace(" ", "").upper()
        for text in (candidate, candidate[:-3]):
            if iban.is_valid(text):
                return text
    return account


def _mt940_amount(amount: Any, exponent: int, line: int | None = None) -> int:
    # mt-940's Amount holds a Decimal read from the text: format it back without a float.
    return minor_units(format(amount.amount, "f"), exponent, line=line)


def _mt940_line(number: int, data: dict[str, Any], exponent: int) -> StatementLine:
    amount = data.get("amount")
    if amount is None:
        raise StatementError("the :61: line has no amount", line=number)
    if not amount.currency:
        raise StatementError("the :61: line has no currency (no :60F: balance before it)", line=number)
    booked = data.get("entry_date") or data.get("date")
    if not isinstance(booked, date):
        raise StatementError("the :61: line has no valid date", line=number)
    details = data.get("transaction_details") or ""
    counterparty = " ".join(str(data.get(key) or "") for key in ("applicant_name",)).strip()
    label_parts = [str(data.get(key) or "") for key in ("purpose", "additional_purpose", "posting_text")]
    counterparty_iban = data.get("applicant_iban") or data.get("gvc_applicant_iban")
    if details:
        details = details.replace("\r", "").replace("\n", "")  # continuation lines are a wrapped field
        coded = _slash_coded(details)
        if coded:
            party = coded.get("CNTP", "").split("/")  # IBAN/BIC/name/city
            counterparty = counterparty or coded.get("NAME") or (party[2] if len(party) > 2 else "")
            counterparty_iban = counterparty_iban or coded.get("IBAN") or party[0] or None
            details = re.sub(r"^(USTD|STRD/CUR)/*", "", coded.get("REMI", "")) or details
        label_parts.append(details)
    extra = data.get("extra_details")
    if extra:
        label_parts.append(str(extra))
    bank_reference = str(data.get("bank_reference") or "").strip()
    return StatementLine(
        number=number,
        booking_date=booked,
        value_date=data.get("date") if isinstance(data.get("date"), date) else None,
        amount=_mt940_amount(amount, exponent, number),
        currency=_currency(amount.currency, number),
        counterparty=counterparty,
        counterparty_iban=str(counterparty_iban) if counterparty_iban else None,
        label=" ".join(part for part in label_parts if part),
        creditor_reference=None,
        bank_reference=bank_reference if bank_reference and bank_reference.upper() != "NONREF" else None,
    )


def _slash_coded(details: str) -> dict[str, str]:
    flat = details.replace("\r", "").replace("\n", "")
    parts = _SLASH_CODES.split(flat)
    return {parts[i]: parts[i + 1].strip("/ ") for i in range(1, len(parts) - 1, 2)}


# -- CSV with a saved mapping ---------------------------------------------------------------


@dataclass(frozen=True)
class CsvMapping:
    """Which column holds what, by header name, and how the bank writes numbers and dates."""

    booking_date: str
    amount: str | None = None  # one signed amount column ...
    credit: str | None = None  # ... or a credit and a debit column
    debit: str | None = None
    currency: str | None = None  # none: the group's currency
    counterparty: str | None = None
    label: str | None = None
    bank_reference: str | None = None
    delimiter: Literal[",", ";", "\t", "|"] = ";"
    decimal_separator: Literal[",", "."] = ","
    thousands_separator: Literal["", " ", ".", ",", "'"] = ""
    date_format: str = "%d/%m/%Y"
    encoding: Literal["utf-8", "latin-1", "cp1252"] = "utf-8"
    skip_lines: int = 0  # lines before the header (a bank's title, account...)

    def used_columns(self) -> list[str]:
        names = [self.booking_date, self.amount, self.credit, self.debit]
        names += [self.currency, self.counterparty, self.label, self.bank_reference]
        return [name for name in names if name]


def check_mapping(mapping: CsvMapping) -> None:
    if (mapping.amount is None) == (mapping.credit is None and mapping.debit is None):
        raise StatementError("a CSV mapping names either an amount column, or credit and debit columns")
    if mapping.amount is None and (mapping.credit is None or mapping.debit is None):
        raise StatementError("a CSV mapping with credit and debit columns needs both")
    if mapping.thousands_separator == mapping.decimal_separator:
        raise StatementError("the thousands separator cannot be the decimal separator")
    try:
        datetime(2026, 1, 31).strftime(mapping.date_format)
        if "%d" not in mapping.date_format or "%m" not in mapping.date_format:
            raise ValueError
    except ValueError:
        raise StatementError(f"the date format {mapping.date_format!r} needs %d, %m and a year") from None


def _rows(text: str, mapping: CsvMapping) -> Iterator[tuple[int, dict[str, str]]]:
    source = io.StringIO(text, newline="")
    for _ in range(mapping.skip_lines):
        source.readline()
    reader = csv.reader(source, delimiter=mapping.delimiter, strict=True)
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise StatementError("the CSV file is empty", line=mapping.skip_lines + 1) from None
    except csv.Error as exc:
        raise StatementError(f"the CSV header cannot be read: {exc}", line=mapping.skip_lines + 1) from None
    missing = [name for name in mapping.used_columns() if name not in header]
    if missing:
        raise StatementError(
            "the CSV does not fit the group's mapping: no column "
            + ", ".join(repr(name) for name in missing)
            + f" (columns: {', '.join(repr(name) for name in header)})",
            line=mapping.skip_lines + 1,
        )
    try:
        for row in reader:
            number = mapping.skip_lines + reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise StatementError(f"the row has {len(row)} columns, the header {len(header)}", line=number)
            yield number, dict(zip(header, (cell.strip() for cell in row), strict=True))
    except csv.Error as exc:
        raise StatementError(f"the CSV row cannot be read: {exc}", line=mapping.skip_lines + reader.line_num) from None


def _csv_amount(text: str, mapping: CsvMapping, exponent: int, line: int) -> int:
    cleaned = text.replace("\u00a0", "").replace("\u202f", "")
    if mapping.thousands_separator:
        cleaned = cleaned.replace(mapping.thousands_separator, "")
    if mapping.decimal_separator == "," and "." in cleaned:
        raise StatementError(f"the amount {text!r} does not use the mapping's decimal comma", line=line)
    if mapping.decimal_separator == "." and "," in cleaned:
        raise StatementError(f"the amount {text!r} does not use the mapping's decimal point", line=line)
    return minor_units(cleaned, exponent, line=line)


def parse_csv(data: bytes, mapping: CsvMapping, *, currency: str, exponent: int) -> Statement:
    check_mapping(mapping)
    try:
        text = data.decode("utf-8-sig" if mapping.encoding == "utf-8" else mapping.encoding)
    except UnicodeDecodeError as exc:
        raise StatementError(f"the file is not {mapping.encoding} text ({exc.reason} at byte {exc.start})") from None
    if "\x00" in text:
        raise StatementError("the file is not a CSV text (it holds NUL bytes)")
    lines: list[StatementLine] = []
    for number, row in _rows(text, mapping):
        try:
            booked = datetime.strptime(row[mapping.booking_date], mapping.date_format).date()
        except ValueError:
            raise StatementError(
                f"the date {row[mapping.booking_date]!r} is not in the format {mapping.date_format}", line=number
            ) from None
        if mapping.amount is not None:
            amount = _csv_amount(row[mapping.amount], mapping, exponent, number)
        else:
            assert mapping.credit is not None and mapping.debit is not None
            credit, debit = row[mapping.credit], row[mapping.debit]
            if bool(credit) == bool(debit):
                raise StatementError("a row needs exactly one of the credit and debit amounts", line=number)
            amount = (
                _csv_amount(credit, mapping, exponent, number)
                if credit
                else -abs(_csv_amount(debit, mapping, exponent, number))
            )
        lines.append(
            StatementLine(
                number=number,
                booking_date=booked,
                amount=amount,
                currency=_currency(row[mapping.currency], number) if mapping.currency else currency,
                counterparty=row.get(mapping.counterparty or "", ""),
                label=row.get(mapping.label or "", ""),
                bank_reference=row.get(mapping.bank_reference or "") or None,
            )
        )
    return Statement(format="csv", iban=None, currency=None, lines=lines)
