"""Events the notifications service publishes (routing keys `notifications.*`), for operators:
one per email that was finally sent or finally failed."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import Field

from . import routing
from .envelope import Event


class _EmailOutcome(Event):
    delivery_id: UUID = Field(description="The delivery log entry of the email")
    source_event_id: UUID = Field(description="The event the email was about (or the digest's own id)")
    kind: str = Field(description="What the email is, e.g. order_confirmed, payment_received, balance_reminder")
    member_id: UUID | None = None
    recipient: str = Field(description="The address it was sent to")
    attempts: int = Field(ge=1, description="SMTP attempts made")


class EmailSent(_EmailOutcome):
    """The SMTP server accepted the email."""

    event_type: Literal["notifications.email.sent"] = routing.EMAIL_SENT
    schema_version: Literal[1] = 1
    message_id: str = Field(description="The Message-ID header of the email")


class EmailFailed(_EmailOutcome):
    """The email will not be sent: the server refused it for good (5xx) or retries ran out."""

    event_type: Literal["notifications.email.failed"] = routing.EMAIL_FAILED
    schema_version: Literal[1] = 1
    permanent: bool = Field(description="True when the server refused it (5xx); False when retries ran out")
    reason: str


__all__ = ["EmailFailed", "EmailSent"]
