"""A local mail catcher for `make run`: an SMTP server (aiosmtpd) that keeps every email it is
sent as files a person can read, and delivers nothing.

Each email becomes two files in the mail directory (`var/mail/` by default):
`<n>-<kind>-<recipient>.eml`, the message as sent (open it in any mail client), and the same
name with `.txt`: its headers and plain-text part, to read with `cat` or `less`. An `index.txt`
gets one line per email (time, recipient, subject, file).
"""

from __future__ import annotations

import asyncio
import re
import socket
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

from . import clock

DEFAULT_PORT = 1025
_UNSAFE = re.compile(r"[^A-Za-z0-9@._-]+")


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's create_server does
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def readable(message: EmailMessage) -> str:
    """The headers a person looks at, then the plain-text body."""
    body = message.get_body(preferencelist=("plain",))
    text = body.get_content() if body is not None else "(no plain-text part)"
    headers = "".join(f"{name}: {message[name]}\n" for name in ("Date", "From", "To", "Subject") if message[name])
    return f"{headers}\n{text}"


@dataclass
class MailCatcher:
    """`await start()`, then point SMTP at `host:port`; `await stop()` at the end."""

    directory: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    received: int = 0
    _server: asyncio.AbstractServer | None = field(default=None, repr=False)

    async def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.received = len(list(self.directory.glob("*.eml")))
        loop = asyncio.get_running_loop()
        # hostname given: aiosmtpd would otherwise ask the resolver for the FQDN, which can stall.
        self._server = await loop.create_server(
            lambda: SMTP(self, hostname="mailcatcher.localhost", loop=loop), self.host, self.port
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        message = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(message, EmailMessage)
        self.received += 1
        recipient = ",".join(envelope.rcpt_tos)
        kind = str(message.get("X-Cagette-Kind", "email"))
        stem = _UNSAFE.sub("_", f"{self.received:04d}-{kind}-{recipient}")[:120]
        (self.directory / f"{stem}.eml").write_bytes(raw)
        (self.directory / f"{stem}.txt").write_text(readable(message), encoding="utf-8")
        with (self.directory / "index.txt").open("a", encoding="utf-8") as index:
            stamp = clock.now().strftime("%Y-%m-%d %H:%M:%S")
            index.write(f"{stamp}  {recipient}  {message.get('Subject', '')}  -> {stem}.txt\n")
        return "250 OK: kept, not delivered"
