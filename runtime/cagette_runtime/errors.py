"""The errors domain code raises and every entrypoint maps the same way.

- `Refused` (and its kinds): the request or message is wrong. HTTP answers a 4xx with the
  reason; a consumer parks the message with the reason (retrying would not help).
- `RetryLater`: something the action needs does not answer right now (the database, the broker,
  the ledger, the card provider); nothing was changed. HTTP answers 503 with `Retry-After`; a
  consumer sends the message to its retry queue, from which the broker brings it back after a
  delay, as many times as it takes: an outage is not the message's fault, so it never counts
  against the delivery limit.
- `NotYet`: the message came before a fact it needs (an event of another queue): retried after
  the same delays without a traceback, but counted, so a fact that never comes parks it.

Anything else is counted like `NotYet`, with a traceback.
"""

from __future__ import annotations


class RetryLater(Exception):
    """A transient failure outside the request or message: try the same again later."""

    status_code = 503
    code = "unavailable"
    # Seconds a client is told to wait (HTTP Retry-After).
    retry_after = 5

    def __init__(self, reason: str, *, retry_after: int | None = None, **details: object) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details
        if retry_after is not None:
            self.retry_after = retry_after


class NotYet(Exception):
    """The message arrived before a fact it needs: retried later, counted against the delivery limit."""


class Refused(Exception):
    """A request or message that is wrong and must change nothing."""

    status_code = 422
    code = "invalid"

    def __init__(self, reason: str, **details: object) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details


class Invalid(Refused):
    status_code = 422
    code = "invalid"


class NotFound(Refused):
    status_code = 404
    code = "not_found"


class Conflict(Refused):
    status_code = 409
    code = "conflict"


class Forbidden(Refused):
    status_code = 403
    code = "forbidden"


class Unauthenticated(Refused):
    status_code = 401
    code = "unauthenticated"
