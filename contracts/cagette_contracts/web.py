"""Events the web service (sign-in and accounts) publishes (routing keys `web.*`).

Each carries a single-use link the notifications service emails to the person: the link's
secret travels in the event because notifications must put it in the email; the web service
keeps only a hash of it, and the link stops working once used or expired."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import EmailStr, Field

from . import routing
from .common import Language
from .envelope import Event, UtcDatetime


class _AccountLink(Event):
    account_id: UUID = Field(description="The person's user id (the `sub` of their tokens)")
    email: EmailStr
    name: str
    language: Language = Language.FR
    link: str = Field(description="Single-use link to set a password")
    expires_at: UtcDatetime


class InvitationCreated(_AccountLink):
    """A coordinator added someone who has no password yet: invite them to set one.
    `group_id` is the group they were added to."""

    event_type: Literal["web.invitation.created"] = routing.INVITATION_CREATED
    schema_version: Literal[1] = 1
    group_name: str = ""


class PasswordResetRequested(_AccountLink):
    """Someone asked to reset the password of this account. `group_id` is one of the person's
    groups (the nil UUID for an account in no group, e.g. a platform administrator)."""

    event_type: Literal["web.password_reset.requested"] = routing.PASSWORD_RESET_REQUESTED
    schema_version: Literal[1] = 1


__all__ = ["InvitationCreated", "PasswordResetRequested"]
