"""JSON logs on stdout, each line carrying the service name, the correlation id and, inside a
trace, its trace and span ids (to jump from a log line to its trace)."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

from .correlation import peek_correlation_id
from .tracing import log_ids


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
        JsonFormatter(
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
