"""JSON logs on stdout, each line carrying the service name, the correlation id and, inside a
trace, its trace and span ids; never a bearer token, an IBAN or a full email address (masked on
the way out, tracebacks included)."""

from __future__ import annotations

import logging
import re
import sys

from pythonjsonlogger.json import JsonFormatter

from .correlation import peek_correlation_id
from .tracing import log_ids

_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
# Country code (not RF: creditor references are no secret), check digits, then 11 to 30
# letters or digits, possibly in groups of four.
_IBAN = re.compile(r"\b(?!RF)([A-Z]{2}[0-9]{2})(?:[ ]?[A-Z0-9]){11,30}\b")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
_SECRET_KEYS = re.compile(r"\b((?:sk|rk|pk|whsec)_(?:test_|live_)?)[A-Za-z0-9]+")


def mask_secrets(text: str) -> str:
    """`text` with tokens, provider keys, IBANs and email addresses masked."""
    text = _BEARER.sub(r"\1[token]", text)
    text = _JWT.sub("[token]", text)
    text = _SECRET_KEYS.sub(r"\1[key]", text)
    text = _IBAN.sub(r"\1…", text)
    return _EMAIL.sub(r"\1…@\2", text)


class MaskingJsonFormatter(JsonFormatter):
    """The JSON line as formatted, masked as a whole: message, arguments, extra fields and
    tracebacks alike."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_secrets(super().format(record))


class _ContextFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.correlation_id = peek_correlation_id()
        record.trace_id, record.span_id = log_ids()
        record.__dict__.pop("color_message", None)  # uvicorn's ANSI duplicate of the message
        return True


def configure_logging(service: str, level: str = "INFO", broker_level: str = "DEBUG") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        MaskingJsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(service)s %(correlation_id)s %(trace_id)s %(span_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    handler.addFilter(_ContextFilter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "faststream", "faststream.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("faststream.access").setLevel(broker_level.upper())
    logging.getLogger("uvicorn.access").setLevel("WARNING")
