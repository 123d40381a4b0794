"""Refusals that domain code raises and every entrypoint maps the same way.

HTTP turns them into a 4xx with the reason; a message consumer parks the message with the
reason (retrying would not help). Anything else is treated as transient.
"""

from __future__ import annotations


class RetryLater(Exception):
    """An expected transient condition (e.g. a fact this message needs has not arrived yet):
    the consumer retries the message without logging a traceback."""


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


class Unavailable(Refused):
    """Something this request needs does not answer right now (retrying later may work)."""

    status_code = 503
    code = "unavailable"
