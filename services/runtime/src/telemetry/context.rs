//! W3C trace context: read from and written to gRPC metadata, and tied to
//! `tracing` spans.
//!
//! Every span that crosses a process boundary (a run, a step, an attempt,
//! a task, a registration call) is [`join`]ed to its parent's context. With
//! the OTLP exporter on, the span is an OpenTelemetry span and its context
//! is the one the SDK gives it (sampling included). Without it, ids are
//! still made here and carried on, so that a client's trace id reaches every
//! agent's logs either way.

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// gRPC metadata key of the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
/// gRPC metadata key of the W3C vendor trace state.
pub const TRACESTATE: &str = "tracestate";

/// Reads `traceparent`/`tracestate` from gRPC metadata.
struct Reading<'a>(&'a MetadataMap);

impl Extractor for Reading<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        [TRACEPARENT, TRACESTATE]
            .into_iter()
            .filter(|k| self.0.contains_key(*k))
            .collect()
    }
}

/// Writes `traceparent`/`tracestate` into gRPC metadata.
struct Writing<'a>(&'a mut MetadataMap);

impl Injector for Writing<'_> {
    fn set(&mut self, key: &str, value: String) {
        // The propagator writes only valid header values under its own
        // (valid, lower-case) keys; anything else is left out.
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// The two W3C fields as strings (`traceparent`, `tracestate`).
struct Fields {
    traceparent: Option<String>,
    tracestate: Option<String>,
}

impl Extractor for Fields {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => self.traceparent.as_deref(),
            TRACESTATE => self.tracestate.as_deref(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

impl Injector for Fields {
    fn set(&mut self, key: &str, value: String) {
        match key {
            TRACEPARENT => self.traceparent = Some(value),
            TRACESTATE => self.tracestate = Some(value),
            _ => {}
        }
    }
}

/// The remote parent a request's metadata names: an invalid or absent
/// `traceparent` is no parent (a new trace starts), never an error.
pub fn extract(metadata: &MetadataMap) -> SpanContext {
    remote(&TraceContextPropagator::new().extract(&Reading(metadata)))
}

/// The remote parent named by W3C fields carried in a message body.
pub fn extract_fields(traceparent: &str, tracestate: &str) -> SpanContext {
    let fields = Fields {
        traceparent: Some(traceparent.to_string()),
        tracestate: (!tracestate.is_empty()).then(|| tracestate.to_string()),
    };
    remote(&TraceContextPropagator::new().extract(&fields))
}

fn remote(cx: &Context) -> SpanContext {
    cx.span().span_context().clone()
}

/// Puts `span` in outgoing metadata as `traceparent` (and `tracestate`
/// when it has one).
pub fn inject(metadata: &mut MetadataMap, span: &SpanContext) {
    if span.is_valid() {
        let cx = Context::new().with_remote_span_context(span.clone());
        TraceContextPropagator::new().inject_context(&cx, &mut Writing(metadata));
    }
}

/// Puts W3C field values made by [`fields`] in outgoing metadata as they
/// are (no parsing again); an empty `tracestate` is left out.
pub fn inject_fields(metadata: &mut MetadataMap, traceparent: &str, tracestate: &str) {
    let mut out = Writing(metadata);
    if !traceparent.is_empty() {
        out.set(TRACEPARENT, traceparent.to_string());
    }
    if !tracestate.is_empty() {
        out.set(TRACESTATE, tracestate.to_string());
    }
}

/// `span` as W3C field values: (`traceparent`, `tracestate`); empty strings
/// for an invalid context.
pub fn fields(span: &SpanContext) -> (String, String) {
    let mut out = Fields {
        traceparent: None,
        tracestate: None,
    };
    if span.is_valid() {
        let cx = Context::new().with_remote_span_context(span.clone());
        TraceContextPropagator::new().inject_context(&cx, &mut out);
    }
    (
        out.traceparent.unwrap_or_default(),
        out.tracestate.unwrap_or_default(),
    )
}

/// Makes `parent` (a remote or local span context; invalid for none) the
/// parent of `span`, and returns the context `span` has on the wire.
///
/// With the OTLP exporter on, that is the OpenTelemetry span's own context.
/// Otherwise a context is made here: the parent's trace id (a new one for
/// no parent), a new span id, the parent's flags and state. `span`'s
/// `trace_id` and `span_id` fields, when it declares them, are recorded, so
/// that log lines within it carry both.
pub fn join(span: &Span, parent: &SpanContext) -> SpanContext {
    if parent.is_valid() {
        let cx = Context::new().with_remote_span_context(parent.clone());
        // Refused only when the exporter is off or the span is disabled;
        // the context is made below then.
        let _ = span.set_parent(cx);
    }
    let mut own = span.context().span().span_context().clone();
    if !own.is_valid() {
        let ids = RandomIdGenerator::default();
        let (trace_id, flags, state) = if parent.is_valid() {
            (
                parent.trace_id(),
                parent.trace_flags(),
                parent.trace_state().clone(),
            )
        } else {
            (ids.new_trace_id(), TraceFlags::SAMPLED, TraceState::NONE)
        };
        own = SpanContext::new(trace_id, ids.new_span_id(), flags, false, state);
    }
    record_ids(span, own.trace_id(), own.span_id());
    own
}

/// The context of the span the caller is in, with the OTLP exporter on
/// (invalid otherwise: a child joined to it starts a trace of its own).
pub fn current() -> SpanContext {
    Span::current().context().span().span_context().clone()
}

fn record_ids(span: &Span, trace_id: TraceId, span_id: SpanId) {
    if span.has_field("trace_id") {
        span.record("trace_id", tracing::field::display(trace_id));
    }
    if span.has_field("span_id") {
        span.record("span_id", tracing::field::display(span_id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn metadata_round_trip() {
        let mut md = MetadataMap::new();
        md.insert(TRACEPARENT, PARENT.parse().unwrap());
        md.insert(TRACESTATE, "vendor=x".parse().unwrap());
        let sc = extract(&md);
        assert!(sc.is_valid() && sc.is_remote() && sc.is_sampled());
        assert_eq!(
            sc.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );

        let mut out = MetadataMap::new();
        inject(&mut out, &sc);
        assert_eq!(out.get(TRACEPARENT).unwrap(), PARENT);
        assert_eq!(out.get(TRACESTATE).unwrap(), "vendor=x");
        assert_eq!(fields(&sc), (PARENT.to_string(), "vendor=x".to_string()));
        let mut copied = MetadataMap::new();
        inject_fields(&mut copied, PARENT, "vendor=x");
        assert_eq!(copied.get(TRACEPARENT).unwrap(), PARENT);
        assert_eq!(copied.get(TRACESTATE).unwrap(), "vendor=x");
    }

    #[test]
    fn bad_context_is_no_parent() {
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        ] {
            let mut md = MetadataMap::new();
            if let Ok(v) = bad.parse() {
                md.insert(TRACEPARENT, v);
            }
            assert!(!extract(&md).is_valid(), "{bad:?}");
            assert!(!extract_fields(bad, "").is_valid(), "{bad:?}");
        }
        let mut out = MetadataMap::new();
        inject(&mut out, &SpanContext::empty_context());
        assert!(out.is_empty());
        assert_eq!(
            fields(&SpanContext::empty_context()),
            (String::new(), String::new())
        );
    }

    #[test]
    fn join_without_exporter_continues_the_trace() {
        let span = tracing::info_span!("x");
        let parent = extract_fields(PARENT, "");
        let child = join(&span, &parent);
        assert_eq!(child.trace_id(), parent.trace_id());
        assert_ne!(child.span_id(), parent.span_id());
        assert!(child.is_sampled());

        let root = join(&span, &SpanContext::empty_context());
        assert!(root.is_valid());
        assert_ne!(root.trace_id(), parent.trace_id());
    }
}
