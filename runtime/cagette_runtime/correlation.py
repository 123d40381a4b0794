"""The correlation id of the action being handled, carried into logs and published events."""

from __future__ import annotations

from contextvars import ContextVar, Token

from cagette_contracts import new_correlation_id

_current: ContextVar[str | None] = ContextVar("correlation_id", default=None)


def current_correlation_id() -> str:
    """The id of the action in progress, or a new one when none is set."""
    value = _current.get()
    if value is None:
        value = new_correlation_id()
        _current.set(value)
    return value


def peek_correlation_id() -> str | None:
    return _current.get()


def set_correlation_id(value: str | None) -> Token[str | None]:
    return _current.set(value)


def reset_correlation_id(token: Token[str | None]) -> None:
    _current.reset(token)
