"""The task's span continues the caller's trace (metadata first, then the
request's `trace` field), recorded by the OpenTelemetry SDK."""

from __future__ import annotations

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from agentmesh_forecast import skill, tracing
from agentmesh_forecast.protos import pb

from test_server import request

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"

_exporter = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def recorded():
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_exporter))
    trace.set_tracer_provider(provider)
    yield


def finished(task_id: str):
    return [s for s in _exporter.get_finished_spans() if s.attributes.get("task_id") == task_id]


def wait_for(task_id: str):
    import time

    for _ in range(200):
        spans = finished(task_id)
        if spans:
            return spans
        time.sleep(0.02)
    raise AssertionError(f"no span for {task_id}")


def test_a_task_span_continues_the_metadata_trace(agent):
    md = (("traceparent", f"00-{TRACE}-{PARENT}-01"),)
    events = list(agent.ExecuteTask(request("tr1", skill.example_input()), metadata=md))
    assert events[-1].status.state == pb.TASK_STATE_COMPLETED
    [span] = wait_for("tr1")
    assert span.name == "task" and span.kind == SpanKind.SERVER
    assert format(span.context.trace_id, "032x") == TRACE
    assert format(span.parent.span_id, "016x") == PARENT and span.parent.is_remote
    assert span.attributes["run_id"] == "run-1"
    assert span.attributes["attempt"] == 1
    assert span.attributes["outcome"] == "completed"


def test_the_body_trace_is_used_without_metadata_and_failures_are_errors(agent):
    body = pb.TraceContext(traceparent=f"00-{TRACE}-{PARENT}-01")
    with pytest.raises(grpc.RpcError):
        list(agent.ExecuteTask(request("tr2", {"surprise": 1}, trace=body)))
    [span] = wait_for("tr2")
    assert format(span.context.trace_id, "032x") == TRACE
    assert span.attributes["outcome"] == "invalid_input"
    assert span.status.status_code == StatusCode.ERROR


def test_a_malformed_traceparent_starts_a_new_trace(agent):
    md = (("traceparent", "garbage"),)
    list(agent.ExecuteTask(request("tr3", skill.example_input()), metadata=md))
    [span] = wait_for("tr3")
    assert span.parent is None
    assert format(span.context.trace_id, "032x") != TRACE


def test_outgoing_metadata_carries_the_current_span():
    with trace.get_tracer("t").start_as_current_span("x") as span:
        md = dict(tracing.inject())
        ids = tracing.ids()
    tid = format(span.get_span_context().trace_id, "032x")
    assert md["traceparent"].split("-")[1] == tid == ids["trace_id"]
