"""Statement files written from the formats' specifications, for the import tests.

`Entry` is one booked line; `camt053(...)` writes an ISO 20022 camt.053 document (version 02 or
08 layouts: 02 has `<Sts>BOOK</Sts>` and amounts under TxDtls/AmtDtls, 08 has `<Sts><Cd>` and
TxDtls/Amt), `mt940_german(...)` a Deutsche-Bank-style MT940 with structured :86: sub-fields
(?00 posting text, ?20-?29 purpose with SVWZ+, ?32 name, ?31 IBAN), `mt940_dutch(...)` an
ING/Rabobank-style MT940 with slash-coded :86: (/EREF/ /CNTP/ /REMI/), `csv_file(...)` a
French bank's CSV export.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from xml.sax.saxutils import escape

IBAN = "FR7630006000011234567890189"


@dataclass(frozen=True)
class Entry:
    amount: str  # decimal text, positive; `credit` gives the direction
    booked: date
    credit: bool = True
    name: str = "Alice Martin"
    remittance: str = ""  # free text
    structured_reference: str | None = None  # camt: Strd/CdtrRefInf/Ref
    bank_reference: str | None = None


def _cents(text: str) -> int:
    return int(Decimal(text) * 100)


def _balance_text(cents: int) -> tuple[str, str]:
    return f"{abs(cents) // 100}.{abs(cents) % 100:02d}", "CRDT" if cents >= 0 else "DBIT"


def camt053(
    entries: list[Entry],
    *,
    version: str = "08",
    iban: str = IBAN,
    currency: str = "EUR",
    opening: int | None = 100000,
    closing: int | None = None,
    statement_id: str = "STMT-2026-03-01",
) -> bytes:
    if closing is None and opening is not None:
        closing = opening + sum(_cents(e.amount) * (1 if e.credit else -1) for e in entries)
    ns = f"urn:iso:std:iso:20022:tech:xsd:camt.053.001.{version}"
    balances = ""
    for code, value in (("OPBD", opening), ("CLBD", closing)):
        if value is None:
            continue
        amount, indicator = _balance_text(value)
        balances += (
            f"<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp>"
            f'<Amt Ccy="{currency}">{amount}</Amt><CdtDbtInd>{indicator}</CdtDbtInd>'
            "<Dt><Dt>2026-03-01</Dt></Dt></Bal>"
        )
    body = ""
    for entry in entries:
        indicator = "CRDT" if entry.credit else "DBIT"
        party = "Dbtr" if entry.credit else "Cdtr"
        status = "<Sts>BOOK</Sts>" if version == "02" else "<Sts><Cd>BOOK</Cd></Sts>"
        tx_amount = (
            f'<AmtDtls><TxAmt><Amt Ccy="{currency}">{entry.amount}</Amt></TxAmt></AmtDtls>'
            if version == "02"
            else f'<Amt Ccy="{currency}">{entry.amount}</Amt><CdtDbtInd>{indicator}</CdtDbtInd>'
        )
        remittance = ""
        if entry.remittance:
            remittance += "".join(f"<Ustrd>{escape(part)}</Ustrd>" for part in entry.remittance.split("\n"))
        if entry.structured_reference:
            remittance += (
                "<Strd><CdtrRefInf><Tp><CdOrPrtry><Cd>SCOR</Cd></CdOrPrtry><Issr>ISO</Issr></Tp>"
                f"<Ref>{entry.structured_reference}</Ref></CdtrRefInf></Strd>"
            )
        reference = f"<AcctSvcrRef>{entry.bank_reference}</AcctSvcrRef>" if entry.bank_reference else ""
        body += (
            f'<Ntry><Amt Ccy="{currency}">{entry.amount}</Amt><CdtDbtInd>{indicator}</CdtDbtInd>{status}'
            f"<BookgDt><Dt>{entry.booked.isoformat()}</Dt></BookgDt><ValDt><Dt>{entry.booked.isoformat()}</Dt></ValDt>"
            f"{reference}<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>RCDT</Cd><SubFmlyCd>ESCT</SubFmlyCd></Fmly></Domn></BkTxCd>"
            f"<NtryDtls><TxDtls><Refs><EndToEndId>NOTPROVIDED</EndToEndId></Refs>{tx_amount}"
            f"<RltdPties><{party}><Nm>{escape(entry.name)}</Nm></{party}>"
            f"<{party}Acct><Id><IBAN>FR1420041010050500013M02606</IBAN></Id></{party}Acct></RltdPties>"
            f"{'<RmtInf>' + remittance + '</RmtInf>' if remittance else ''}</TxDtls></NtryDtls></Ntry>"
        )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Document xmlns="{ns}"><BkToCstmrStmt>'
        "<GrpHdr><MsgId>MSG-1</MsgId><CreDtTm>2026-03-02T06:00:00</CreDtTm></GrpHdr>"
        f"<Stmt><Id>{statement_id}</Id><ElctrncSeqNb>1</ElctrncSeqNb><CreDtTm>2026-03-02T06:00:00</CreDtTm>"
        f"<Acct><Id><IBAN>{iban}</IBAN></Id><Ccy>{currency}</Ccy></Acct>{balances}{body}</Stmt>"
        "</BkToCstmrStmt></Document>"
    ).encode()


def _mt940_amount(text: str) -> str:
    return text.replace(".", ",")


def _mt940_balance(tag: str, cents: int, when: date, currency: str) -> str:
    amount, indicator = _balance_text(cents)
    return f":{tag}:{'C' if indicator == 'CRDT' else 'D'}{when:%y%m%d}{currency}{amount.replace('.', ',')}"


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def mt940_german(
    entries: list[Entry],
    *,
    account: str = IBAN,
    opening: int = 100000,
    currency: str = "EUR",
    reference: str = "STARTUMS",
) -> bytes:
    """Structured :86: (GVC 166 SEPA credit, 177 SEPA debit), sub-fields of at most 27 characters."""
    closing = opening + sum(_cents(e.amount) * (1 if e.credit else -1) for e in entries)
    first = entries[0].booked if entries else date(2026, 3, 1)
    lines = [":20:" + reference, ":25:" + account, ":28C:00001/001", _mt940_balance("60F", opening, first, currency)]
    for entry in entries:
        mark = "C" if entry.credit else "D"
        bank = f"//{entry.bank_reference}" if entry.bank_reference else ""
        lines.append(f":61:{entry.booked:%y%m%d}{entry.booked:%m%d}{mark}{_mt940_amount(entry.amount)}NTRFNONREF{bank}")
        purpose = _chunks("SVWZ+" + entry.remittance.replace("\n", " "), 27)
        fields = ["166" if entry.credit else "177", "?00SEPA-GUTSCHRIFT" if entry.credit else "?00SEPA-LASTSCHRIFT"]
        fields += [f"?{20 + i}{chunk}" for i, chunk in enumerate(purpose[:10])]
        fields += ["?30COBADEFFXXX", "?31DE89370400440532013000", f"?32{entry.name[:27]}"]
        details = "".join(fields)
        lines.append(":86:" + "\n".join(_chunks(details, 65)))
    lines += [_mt940_balance("62F", closing, entries[-1].booked if entries else first, currency), "-"]
    return ("\r\n".join(lines) + "\r\n").encode("latin-1")


def mt940_dutch(entries: list[Entry], *, account: str = IBAN, opening: int = 100000, currency: str = "EUR") -> bytes:
    """ING-style: :25: IBAN + currency, :86: /EREF//CNTP//REMI/ slash codes, lines of 65."""
    closing = opening + sum(_cents(e.amount) * (1 if e.credit else -1) for e in entries)
    first = entries[0].booked if entries else date(2026, 3, 1)
    lines = [
        "{1:F01INGBNL2AXXXX0000000000}{2:I940INGBNL2AXXXN}{4:",
        ":20:P260301000000001",
        f":25:{account}{currency}",
        ":28C:00000",
        _mt940_balance("60F", opening, first, currency),
    ]
    for entry in entries:
        mark = "C" if entry.credit else "D"
        bank = f"//{entry.bank_reference}" if entry.bank_reference else ""
        lines.append(f":61:{entry.booked:%y%m%d}{mark}{_mt940_amount(entry.amount)}NTRFEREF{bank}")
        details = (
            f"/EREF/NOTPROVIDED//CNTP/NL91ABNA0417164300/ABNANL2A/{entry.name}///"
            f"REMI/USTD//{entry.remittance.replace(chr(10), ' ')}/"
        )
        lines.append(":86:" + "\n".join(_chunks(details, 65)))
    lines += [_mt940_balance("62F", closing, entries[-1].booked if entries else first, currency), "-}"]
    return ("\r\n".join(lines) + "\r\n").encode()


CSV_MAPPING = {
    "booking_date": "Date opération",
    "credit": "Crédit",
    "debit": "Débit",
    "counterparty": "Tiers",
    "label": "Libellé",
    "bank_reference": "Référence",
    "delimiter": ";",
    "decimal_separator": ",",
    "thousands_separator": " ",
    "date_format": "%d/%m/%Y",
    "encoding": "latin-1",
    "skip_lines": 2,
}


def csv_file(entries: list[Entry]) -> bytes:
    """A French bank's export: two title lines, `;`, decimal comma, credit and debit columns."""
    rows = ["Compte courant FR76 3000 6000 0112 3456 7890 189", "Export du 02/03/2026"]
    rows.append("Date opération;Libellé;Tiers;Référence;Débit;Crédit")
    for e in entries:
        amount = e.amount.replace(".", ",")
        label = e.remittance.replace("\n", " ").replace('"', '""')
        rows.append(
            f'{e.booked:%d/%m/%Y};"{label}";{e.name};{e.bank_reference or ""};'
            f"{'' if e.credit else amount};{amount if e.credit else ''}"
        )
    return ("\r\n".join(rows) + "\r\n").encode("latin-1")
