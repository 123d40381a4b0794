"""OpenTelemetry traces: one member action is one trace, from the HTTP request through every
consumer it causes.

- HTTP: FastAPI's instrumentation (server spans; /health, /ready, /metrics left out);
- messaging: FastStream's RabbitTelemetryMiddleware (publish and process spans; it carries the
  W3C `traceparent` in the message headers);
- database: SQLAlchemy's instrumentation on the service's engine;
- the outbox: an event is published after its transaction commits, outside the request, so
  `outbox.add` writes the `traceparent` of the action in progress into the row's headers and
  the relay publishes within it (`continued_from`): the publish span, and so the consumers, join
  the action's trace.

Exporting follows the standard variables: spans go to OTLP/HTTP when
OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (OTEL_TRACES_EXPORTER
may say `console` or `none`); with none of them set nothing is exported, and trace ids still
reach the JSON logs. OTEL_SERVICE_NAME overrides the `cagette-<service>` resource name.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

from fastapi import FastAPI
from faststream.rabbit.opentelemetry import RabbitTelemetryMiddleware
from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from sqlalchemy.ext.asyncio import AsyncEngine

TRACEPARENT = "traceparent"
_propagator = TraceContextTextMapPropagator()
_SQLALCHEMY_SCOPE = "opentelemetry.instrumentation.sqlalchemy"
# Trace carriers of the events a batch is processing, by correlation id (see `batch_causes`).
_batch_causes: ContextVar[Mapping[str, Mapping[str, str]] | None] = ContextVar("cagette_batch_causes", default=None)


class _WithoutIdleQueries(SpanExporter):
    """Drops database spans that belong to no action (the relay's and the sweepers' polls),
    which would otherwise be one useless trace each every poll interval."""

    def __init__(self, exporter: SpanExporter) -> None:
        self.exporter = exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        kept = [
            span
            for span in spans
            if span.parent is not None
            or span.instrumentation_scope is None
            or span.instrumentation_scope.name != _SQLALCHEMY_SCOPE
        ]
        return self.exporter.export(kept) if kept else SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)


def _configured_exporter() -> SpanExporter | None:
    choice = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if choice == "none":
        return None
    if choice == "console":
        return ConsoleSpanExporter()
    if endpoint or choice == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()  # reads the OTEL_EXPORTER_OTLP_* variables itself
    return None


def tracer_provider(service_name: str) -> TracerProvider:
    """The service's provider (its own, so services sharing a process keep their names); the
    sampler follows OTEL_TRACES_SAMPLER, the batching OTEL_BSP_*."""
    disabled = os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    name = os.environ.get("OTEL_SERVICE_NAME") or f"cagette-{service_name}"
    provider = TracerProvider(resource=Resource.create({"service.name": name}), shutdown_on_exit=False)
    exporter = None if disabled else _configured_exporter()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(_WithoutIdleQueries(exporter)))
    return provider


def broker_middleware(provider: TracerProvider) -> RabbitTelemetryMiddleware:
    return RabbitTelemetryMiddleware(tracer_provider=provider)


def instrument_engine(engine: AsyncEngine, provider: TracerProvider) -> None:
    meter = metrics.NoOpMeter(_SQLALCHEMY_SCOPE)  # connection-usage metrics: Prometheus has ours
    EngineTracer(
        trace.get_tracer(_SQLALCHEMY_SCOPE, tracer_provider=provider),
        engine.sync_engine,
        meter.create_up_down_counter("db.client.connections.usage"),
    )


def instrument_app(app: FastAPI, provider: TracerProvider) -> None:
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, excluded_urls="/health,/ready,/metrics")


def current_trace_carrier(correlation_id: str | None = None) -> dict[str, str]:
    """The W3C trace context of the action in progress (empty when there is none), for an
    outbox row's headers. In a batch, the context of the event with `correlation_id`."""
    causes = _batch_causes.get()
    if causes is not None and correlation_id is not None and correlation_id in causes:
        return dict(causes[correlation_id])
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier


@contextmanager
def batch_causes(carriers: Mapping[str, Mapping[str, str]]) -> Iterator[None]:
    """While a batch of events is processed in one transaction, events written to the outbox
    take the trace context of their cause (the consumed event with the same correlation id)."""
    token = _batch_causes.set(carriers)
    try:
        yield
    finally:
        _batch_causes.reset(token)


@contextmanager
def continued_from(headers: Mapping[str, object]) -> Iterator[None]:
    """Run within the trace whose W3C context `headers` carry (an outbox row's, a delivery's)."""
    carrier = {key: str(value) for key, value in headers.items() if key in (TRACEPARENT, "tracestate")}
    if not carrier:
        yield
        return
    token = otel_context.attach(_propagator.extract(carrier))
    try:
        yield
    finally:
        otel_context.detach(token)


def log_ids() -> tuple[str | None, str | None]:
    """(trace_id, span_id) of the current span in hex, for the JSON logs; None outside a trace."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None, None
    return format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")
