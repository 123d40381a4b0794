"""SMTP adapter (aiosmtplib): builds the MIME message and sends it; says whether a failure is
worth retrying."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

import aiosmtplib

from cagette_runtime import clock, epc_qr

from .delivery import Claimed
from .domain import EPC_QR_CID
from .settings import NotificationSettings


@dataclass(frozen=True)
class SendFailure(Exception):
    reason: str
    permanent: bool

    def __str__(self) -> str:
        return self.reason


def sender_domain(sender: str) -> str:
    address = parseaddr(sender)[1]
    return address.rpartition("@")[2] or "cagette.localhost"


def build_message(claimed: Claimed, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = claimed.recipient
    message["Subject"] = claimed.subject
    message["Message-ID"] = claimed.message_id
    message["Date"] = format_datetime(clock.now())
    message["X-Cagette-Kind"] = claimed.kind
    message["X-Cagette-Event-Id"] = str(claimed.source_event_id)
    message.set_content(claimed.text_body)
    message.add_alternative(claimed.html_body, subtype="html")
    if claimed.epc_payload:
        # The QR code inline in the HTML part (multipart/related), shown where the template
        # puts <img src="cid:...">; text-only readers keep the written instructions.
        html = message.get_body(preferencelist=("html",))
        assert html is not None
        html.add_related(
            epc_qr.png_of_payload(claimed.epc_payload),
            maintype="image",
            subtype="png",
            cid=f"<{EPC_QR_CID}>",
            disposition="inline",
            filename="sepa-qr.png",
        )
    return message


def classify(exc: BaseException) -> SendFailure:
    """5xx answers are permanent (the server will never take this email); everything else
    (4xx, connection refused or lost, timeouts, TLS trouble, bad credentials) may pass."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [refusal.code for refusal in exc.recipients]
        reason = "; ".join(f"{r.code} {r.message} ({r.recipient})" for r in exc.recipients)
        return SendFailure(f"recipient refused: {reason}", permanent=bool(codes) and all(c >= 500 for c in codes))
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        # The service's credentials are wrong, not this email: retry once they are fixed.
        return SendFailure(f"authentication failed: {exc.code} {exc.message}", permanent=False)
    if isinstance(exc, aiosmtplib.SMTPResponseException) and not isinstance(exc, aiosmtplib.SMTPConnectError):
        return SendFailure(f"{type(exc).__name__}: {exc.code} {exc.message}", permanent=500 <= exc.code < 600)
    return SendFailure(f"{type(exc).__name__}: {exc}", permanent=False)


class SmtpClient:
    def __init__(self, settings: NotificationSettings) -> None:
        self.settings = settings

    async def send(self, claimed: Claimed) -> None:
        """Send one email; raises SendFailure saying whether to retry."""
        s = self.settings
        message = build_message(claimed, s.smtp_sender)
        try:
            _, response = await aiosmtplib.send(
                message,
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_username or None,
                password=s.smtp_password or None,
                start_tls=True if s.smtp_starttls else False,
                use_tls=s.smtp_tls,
                validate_certs=s.smtp_validate_certs,
                timeout=s.smtp_timeout,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise classify(exc) from exc
