"""EPC QR codes (SEPA QR / GiroCode) for declared transfers: the payload is EPC069-12's, and the
image decodes (zbar) to exactly that payload."""

from __future__ import annotations

import io

from PIL import Image
from pyzbar import pyzbar

from cagette_contracts import PaymentMethod

from .conftest import Payments
from .test_bank_statements import bank_group, declared


def expected_payload(reference: str, cents: int) -> str:
    # EPC069-12 v002 fields in order: BCD, 002, charset 1 (UTF-8), SCT, BIC, name, IBAN,
    # EUR amount (no trailing zeros), purpose (empty), structured reference; LF separated.
    euros = f"{cents // 100}.{cents % 100:02d}".rstrip("0").rstrip(".")
    return "\n".join(
        [
            "BCD",
            "002",
            "1",
            "SCT",
            "BNPAFRPPXXX",
            "AMAP des Lilas",
            "FR7630006000011234567890189",
            f"EUR{euros}",
            "",
            reference.replace(" ", ""),
        ]
    )


def decoded(png: bytes) -> str:
    [symbol] = pyzbar.decode(Image.open(io.BytesIO(png)))
    assert symbol.type == "QRCODE"
    return symbol.data.decode("utf-8")


async def test_a_declared_transfer_has_instructions_and_a_qr_code_that_decodes_to_the_epc_payload(
    payments: Payments,
) -> None:
    group = await bank_group(payments)
    alice, bob = group.members
    transfer = await declared(payments, group, alice, PaymentMethod.TRANSFER, 1250)
    base = f"/groups/{group.group_id}/payments/{transfer['payment_id']}"
    response = await payments.client.get(f"{base}/transfer-instructions", headers=payments.member(group, alice))
    assert response.status_code == 200, response.text
    instructions = response.json()
    assert instructions["epc_payload"] == expected_payload(transfer["reference"], 1250)
    assert instructions["reference"] == transfer["reference"] and instructions["bic"] == "BNPAFRPPXXX"

    image = await payments.client.get(f"{base}/epc-qr", headers=payments.member(group, alice))
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert decoded(image.content) == expected_payload(transfer["reference"], 1250)
    svg = await payments.client.get(f"{base}/epc-qr", params={"image": "svg"}, headers=payments.coordinator(group))
    assert svg.status_code == 200 and svg.content.lstrip().startswith(b"<?xml")

    # someone else's payment, a cheque: refused
    other = await payments.client.get(f"{base}/epc-qr", headers=payments.member(group, bob))
    assert other.status_code == 403
    cheque = await declared(payments, group, bob, PaymentMethod.CHEQUE, 800)
    refused = await payments.client.get(
        f"/groups/{group.group_id}/payments/{cheque['payment_id']}/epc-qr", headers=payments.member(group, bob)
    )
    assert refused.status_code == 409 and "not a transfer" in refused.json()["detail"]


async def test_no_qr_code_outside_eur(payments: Payments) -> None:
    group = await bank_group(payments, currency="CHF")
    transfer = await declared(payments, group, group.members[0], PaymentMethod.TRANSFER, 1250)
    base = f"/groups/{group.group_id}/payments/{transfer['payment_id']}"
    instructions = (
        await payments.client.get(f"{base}/transfer-instructions", headers=payments.coordinator(group))
    ).json()
    assert instructions["epc_payload"] is None and instructions["iban"]
    refused = await payments.client.get(f"{base}/epc-qr", headers=payments.coordinator(group))
    assert refused.status_code == 409 and "only for transfers in EUR" in refused.json()["detail"]
