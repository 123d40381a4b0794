"""EPC QR codes ("SEPA QR", GiroCode; EPC069-12 version 002) for a transfer: the beneficiary's
name, IBAN and BIC, the amount and the RF reference as the structured remittance, so a banking
app fills the whole transfer in. Written once here: the payments API serves them and the
notifications service puts them in the transfer instructions email.

Only for EUR and an IBAN of the SEPA zone (the standard is for SEPA credit transfers); elsewhere
the plain instructions stay. Images come from segno.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from decimal import Decimal

import segno
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException

from cagette_contracts import Money

NAME_LIMIT = 70  # EPC069-12: beneficiary name at most 70 characters


@dataclass(frozen=True)
class Transfer:
    beneficiary: str
    iban: str
    bic: str | None
    amount: Money
    reference: str  # RF creditor reference, any spacing


def _iban(text: str) -> IBAN | None:
    try:
        return IBAN(text)
    except SchwiftyException:
        return None


def applies(transfer: Transfer) -> bool:
    """An EPC QR code is for EUR transfers to a SEPA-zone IBAN."""
    iban = _iban(transfer.iban)
    return (
        transfer.amount.currency == "EUR"
        and iban is not None
        and bool(iban.in_sepa_zone)
        and transfer.amount.amount > 0
    )


def payload(transfer: Transfer) -> str:
    """The text inside the code, field by field as EPC069-12 version 002 lists them (LF between
    fields): service tag, version, character set (1: UTF-8), identification, BIC (optional in
    the EEA), name, IBAN, amount ("EUR12.5"), purpose (none), structured remittance (the RF
    reference), and no unstructured text (one or the other)."""
    iban = _iban(transfer.iban)
    if iban is None or not applies(transfer):
        raise ValueError("an EPC QR code is only for a transfer in EUR to a SEPA IBAN")
    units = Decimal(transfer.amount.amount).scaleb(-2)  # exact: never a float
    amount = f"{units:.2f}".rstrip("0").rstrip(".")
    if not Decimal("0.01") <= units <= Decimal("999999999.99"):
        raise ValueError(f"an EPC QR amount is 0.01 to 999999999.99 EUR, not {amount}")
    reference = "".join(transfer.reference.split()).upper()
    if len(reference) > 35:
        raise ValueError("a creditor reference is at most 35 characters")
    bic = "".join((transfer.bic or "").split()).upper()
    if bic and len(bic) not in (8, 11):
        raise ValueError(f"a BIC has 8 or 11 characters, not {bic!r}")
    name = " ".join(transfer.beneficiary.split())[:NAME_LIMIT]
    return "\n".join(("BCD", "002", "1", "SCT", bic, name, iban.compact, f"EUR{amount}", "", reference))


def _image(text: str, kind: str, scale: int) -> bytes:
    # EPC069-12: error correction level M, at most version 13 (331 bytes of payload).
    data = text.encode("utf-8")
    if len(data) > 331:
        raise ValueError(f"an EPC QR payload is at most 331 bytes, not {len(data)}")
    out = io.BytesIO()
    segno.make_qr(data, error="m", boost_error=False).save(out, kind=kind, scale=scale, border=4)
    return out.getvalue()


def png_of_payload(text: str, *, scale: int = 5) -> bytes:
    """The PNG of an already built payload (the notifications service stores the payload)."""
    return _image(text, "png", scale)


def png(transfer: Transfer, *, scale: int = 5) -> bytes:
    return _image(payload(transfer), "png", scale)


def svg(transfer: Transfer, *, scale: int = 5) -> bytes:
    return _image(payload(transfer), "svg", scale)
