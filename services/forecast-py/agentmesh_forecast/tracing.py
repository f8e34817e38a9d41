"""Traces: the W3C trace context read from gRPC metadata (or the request's
`trace` field), a span per task, and OTLP/gRPC export when
`--otlp-endpoint` is given (the OpenTelemetry SDK's batch exporter).

Without an endpoint spans are still made (and their ids logged), only not
exported.
"""

from __future__ import annotations

from typing import Any, Iterable

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from . import __version__

SERVICE_NAME = "forecast-agent"

_propagator = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None


def setup(endpoint: str | None, sample_ratio: float, export_interval_ms: int = 5000) -> None:
    """Installs the tracer provider; spans go to `endpoint` when given."""
    global _provider
    _provider = TracerProvider(
        resource=Resource.create({"service.name": SERVICE_NAME, "service.version": __version__}),
        sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
    )
    if endpoint:
        # Imported only when used: the exporter pulls in its gRPC client.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=endpoint, insecure=endpoint.startswith("http://"))
        _provider.add_span_processor(
            BatchSpanProcessor(exporter, schedule_delay_millis=export_interval_ms)
        )
    trace.set_tracer_provider(_provider)


def shutdown() -> None:
    """Sends the spans still queued."""
    if _provider is not None:
        _provider.shutdown()


def tracer() -> trace.Tracer:
    return trace.get_tracer("agentmesh_forecast", __version__)


def parent(metadata: Iterable[tuple[str, Any]], request: Any) -> Context:
    """The caller's context: `traceparent`/`tracestate` metadata, else the
    request's `trace` field; an invalid one is no parent."""
    carrier = {k: v for k, v in metadata if k in ("traceparent", "tracestate") and isinstance(v, str)}
    if "traceparent" not in carrier and request.HasField("trace") and request.trace.traceparent:
        carrier = {"traceparent": request.trace.traceparent}
        if request.trace.tracestate:
            carrier["tracestate"] = request.trace.tracestate
    return _propagator.extract(carrier)


def inject() -> list[tuple[str, str]]:
    """The current span's context as outgoing gRPC metadata."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return list(carrier.items())


def ids() -> dict[str, str]:
    """`trace_id` and `span_id` of the current span, for log lines."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return {}
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}


def end(span: trace.Span, outcome: str) -> None:
    """Records how the task ended (`completed` or the reason, lower case;
    an error otherwise) and ends the span."""
    span.set_attribute("outcome", outcome)
    if outcome != "completed":
        span.set_status(trace.Status(trace.StatusCode.ERROR, outcome))
    span.end()
