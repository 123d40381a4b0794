"""Keeps the outbox and the inbox from growing forever.

Published outbox rows are kept `outbox_days` (an audit trail and a source to replay from);
inbox rows `inbox_days`, which must exceed any redelivery delay (a message redelivered after its
inbox row is gone would be processed again)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func

from .background import BackgroundLoop
from .db import Database
from .tables import inbox_messages, outbox_messages

log = logging.getLogger(__name__)


class MessagingRetention(BackgroundLoop):
    name = "messaging-retention"

    def __init__(self, database: Database, *, outbox_days: float, inbox_days: float, interval: float = 3600.0) -> None:
        super().__init__(interval)
        self.database = database
        self.outbox_age = timedelta(days=outbox_days)
        self.inbox_age = timedelta(days=inbox_days)

    async def run_once(self) -> bool:
        await self.purge()
        return False

    async def purge(self) -> tuple[int, int]:
        """Delete what is past retention; returns (outbox rows, inbox rows) deleted."""
        async with self.database.transaction() as session:
            # A DELETE answers a CursorResult: its rowcount counts the rows without fetching them.
            outbox = cast(
                CursorResult[Any],
                await session.execute(
                    delete(outbox_messages).where(
                        outbox_messages.c.published_at.is_not(None),
                        outbox_messages.c.published_at < func.now() - self.outbox_age,
                    )
                ),
            )
            inbox = cast(
                CursorResult[Any],
                await session.execute(
                    delete(inbox_messages).where(inbox_messages.c.processed_at < func.now() - self.inbox_age)
                ),
            )
        outbox_deleted, inbox_deleted = outbox.rowcount, inbox.rowcount
        if outbox_deleted or inbox_deleted:
            log.info("retention: %d published outbox rows and %d inbox rows deleted", outbox_deleted, inbox_deleted)
        return outbox_deleted, inbox_deleted
