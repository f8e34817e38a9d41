// Traces: the W3C trace context read from gRPC metadata (or the request's
// `trace` field), a span per task, and OTLP/gRPC export when
// --otlp-endpoint is given (the OpenTelemetry SDK's batch exporter).
// Without an endpoint spans are still made (their ids logged), only not
// exported.

import * as grpc from "@grpc/grpc-js";
import { Context, ROOT_CONTEXT, Span, SpanKind, SpanStatusCode, TextMapGetter, TextMapSetter, Tracer, trace } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-grpc";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor, ParentBasedSampler, SpanProcessor, TraceIdRatioBasedSampler, TracerProvider } from "@opentelemetry/sdk-trace";

export const SERVICE_NAME = "quality-agent";
const VERSION = "0.1.0";
const propagator = new W3CTraceContextPropagator();
let provider: TracerProvider | undefined;

export interface TracingOptions {
  /** OTLP/gRPC collector, e.g. http://otel-collector:4317; none: no export. */
  endpoint?: string;
  /** Share of new traces recorded, 0 to 1 (a parent's decision is followed). */
  sampleRatio: number;
  /** How often finished spans are sent. */
  exportIntervalMs: number;
  /** More span processors (tests record spans with one). */
  processors?: SpanProcessor[];
}

/** Installs the tracer provider. */
export function setup(opts: TracingOptions): void {
  const processors = [...(opts.processors ?? [])];
  if (opts.endpoint) {
    const insecure = opts.endpoint.startsWith("http://");
    const exporter = new OTLPTraceExporter({
      url: opts.endpoint,
      ...(insecure ? { credentials: grpc.credentials.createInsecure() } : {}),
    });
    processors.push(new BatchSpanProcessor({ exporter, scheduledDelayMillis: opts.exportIntervalMs }));
  }
  provider = new TracerProvider({
    resource: resourceFromAttributes({ "service.name": SERVICE_NAME, "service.version": VERSION }),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(opts.sampleRatio) }),
    spanProcessors: processors,
  });
  trace.setGlobalTracerProvider(provider);
}

/** Sends the spans still queued. */
export async function shutdown(): Promise<void> {
  await provider?.shutdown();
}

export function tracer(): Tracer {
  return trace.getTracer("quality_agent", VERSION);
}

const fromMetadata: TextMapGetter<grpc.Metadata> = {
  keys: (md) => Object.keys(md.getMap()),
  get: (md, key) => {
    const v = md.get(key)[0];
    return typeof v === "string" ? v : undefined;
  },
};

const fromRecord: TextMapGetter<Record<string, string>> = {
  keys: (r) => Object.keys(r),
  get: (r, key) => r[key],
};

const intoMetadata: TextMapSetter<grpc.Metadata> = {
  set: (md, key, value) => md.set(key, value),
};

/** The caller's context: `traceparent`/`tracestate` metadata, else the
 * request's `trace` field; an invalid one is no parent. */
export function parent(metadata: grpc.Metadata, req: { trace?: { traceparent?: string; tracestate?: string } | null }): Context {
  if (metadata.get("traceparent").length > 0) return propagator.extract(ROOT_CONTEXT, metadata, fromMetadata);
  const body: Record<string, string> = {};
  if (req.trace?.traceparent) body.traceparent = req.trace.traceparent;
  if (req.trace?.tracestate) body.tracestate = req.trace.tracestate;
  return propagator.extract(ROOT_CONTEXT, body, fromRecord);
}

/** A span's context as outgoing gRPC metadata. */
export function inject(span: Span): grpc.Metadata {
  const md = new grpc.Metadata();
  propagator.inject(trace.setSpan(ROOT_CONTEXT, span), md, intoMetadata);
  return md;
}

/** `trace_id` and `span_id` of `span`, for log lines. */
export function ids(span: Span): Record<string, string> {
  const sc = span.spanContext();
  return trace.isSpanContextValid(sc) ? { trace_id: sc.traceId, span_id: sc.spanId } : {};
}

/** A task's span, a child of `parentContext`. */
export function taskSpan(parentContext: Context, attributes: Record<string, string | number>): Span {
  return tracer().startSpan("task", { kind: SpanKind.SERVER, attributes }, parentContext);
}

/** Records how the work ended (`completed` or the reason, lower case; an
 * error otherwise) and ends the span. */
export function end(span: Span, outcome: string): void {
  span.setAttribute("outcome", outcome);
  if (outcome !== "completed") span.setStatus({ code: SpanStatusCode.ERROR, message: outcome });
  span.end();
}
