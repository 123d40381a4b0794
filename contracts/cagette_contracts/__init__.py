"""Shared Pydantic message contracts of the Cagette payment services."""

from . import routing
from .envelope import Event, UnknownEvent, event_class, new_correlation_id, utc_now
from .events import *  # noqa: F403
from .events import __all__ as _events
from .money import MAX_MINOR_UNITS, CurrencyCode, CurrencyMismatch, Money, MoneyError, line_amount, minor_unit_exponent, total

__all__ = [
    "CurrencyCode",
    "CurrencyMismatch",
    "Event",
    "MAX_MINOR_UNITS",
    "Money",
    "MoneyError",
    "UnknownEvent",
    "event_class",
    "line_amount",
    "minor_unit_exponent",
    "new_correlation_id",
    "routing",
    "total",
    "utc_now",
    *_events,
]
