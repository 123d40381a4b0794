"""The mail catcher of `make run`: a real SMTP conversation, kept as files a person can read."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import aiosmtplib

from cagette_runtime.devstack import start_mail_catcher
from cagette_runtime.mailcatcher import port_is_free


async def test_each_email_is_kept_as_eml_and_readable_text(tmp_path: Path) -> None:
    catcher = await start_mail_catcher(tmp_path / "mail")
    try:
        assert not port_is_free(catcher.host, catcher.port)
        message = EmailMessage()
        message["From"] = "Cagette <no-reply@cagette.localhost>"
        message["To"] = "alice@example.org"
        message["Subject"] = "Votre commande du 3 décembre"
        message["X-Cagette-Kind"] = "order_confirmed"
        message.set_content("Bonjour Alice,\nà payer : 14,65 €\n")
        message.add_alternative("<p>Bonjour Alice,</p>", subtype="html")
        await aiosmtplib.send(message, hostname=catcher.host, port=catcher.port)
    finally:
        await catcher.stop()

    kept = sorted(path.name for path in (tmp_path / "mail").iterdir())
    assert kept == [
        "0001-order_confirmed-alice@example.org.eml",
        "0001-order_confirmed-alice@example.org.txt",
        "index.txt",
    ]
    text = (tmp_path / "mail" / kept[1]).read_text(encoding="utf-8")
    assert "Subject: Votre commande du 3 décembre" in text
    assert "à payer : 14,65 €" in text and "<p>" not in text
    index = (tmp_path / "mail" / "index.txt").read_text(encoding="utf-8")
    assert "alice@example.org  Votre commande du 3 décembre  -> 0001-order_confirmed-alice@example.org.txt" in index
    assert port_is_free(catcher.host, catcher.port)
