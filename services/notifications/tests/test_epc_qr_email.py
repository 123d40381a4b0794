"""The transfer instructions email carries the EPC QR code (SEPA QR / GiroCode) inline: a
banking app scanning it gets the group's name, IBAN, BIC, the amount and the RF reference."""

from __future__ import annotations

import io
from email.message import EmailMessage

from PIL import Image
from pyzbar import pyzbar

REFERENCE = "RF18 5390 0754 7034"


def decoded(png: bytes) -> str:
    [symbol] = pyzbar.decode(Image.open(io.BytesIO(png)))
    assert symbol.type == "QRCODE"
    return symbol.data.decode("utf-8")


async def order_email(start_service, mailbox, facts, method: str) -> EmailMessage:
    """The one email a member gets for an order paid by `method` (declared with REFERENCE)."""
    async with start_service(smtp_port=mailbox.port) as running:
        alice = facts.member("Alice", "fr")
        await running.publish(facts.group, alice)
        order = facts.order(alice, method)
        await running.publish(order, facts.declared(order, REFERENCE))
        [message] = await mailbox.wait_for(str(alice.email))
    return message


async def test_transfer_email_has_the_epc_qr_code_inline(start_service, mailbox, facts) -> None:
    message = await order_email(start_service, mailbox, facts, "transfer")
    [image] = [part for part in message.walk() if part.get_content_type() == "image/png"]
    assert image["Content-ID"] == "<sepa-qr@cagette>" and image.get_content_disposition() == "inline"
    assert 'src="cid:sepa-qr@cagette"' in mailbox.body(message, "html")
    # EPC069-12 v002: BCD, version, charset 1 (UTF-8), SCT, BIC, name, IBAN, amount, purpose,
    # structured remittance (the reference, without spaces)
    assert decoded(image.get_content()) == "\n".join(
        [
            "BCD",
            "002",
            "1",
            "SCT",
            "AGRIFRPP",
            "AMAP des Lilas",
            "FR7630006000011234567890189",
            "EUR12.55",
            "",
            "RF18539007547034",
        ]
    )


async def test_cheque_email_has_no_qr_code(start_service, mailbox, facts) -> None:
    message = await order_email(start_service, mailbox, facts, "cheque")
    assert not [part for part in message.walk() if part.get_content_maintype() == "image"]
    assert "cid:" not in mailbox.body(message, "html")
