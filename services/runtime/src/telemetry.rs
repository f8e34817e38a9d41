//! Logging and trace context.
//!
//! [`init`] installs the global subscriber (written by its own thread);
//! only binaries call it, and keep the guard it returns.

use std::sync::atomic::{AtomicBool, Ordering};

use tonic::metadata::MetadataMap;
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, TelemetryConfig};

/// Metadata key of the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
/// gRPC metadata key of the W3C vendor trace state.
pub const TRACESTATE: &str = "tracestate";

/// Log lines queued for the writer thread. When the queue is full, new
/// lines are dropped (and counted) rather than blocking a request.
pub const LOG_QUEUE_LINES: usize = 16_384;

/// Keeps the log writer thread alive; dropping it writes out the lines still
/// queued and reports how many were dropped. Hold it for as long as the
/// process serves.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard(Option<(WorkerGuard, ErrorCounter)>);

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some((worker, dropped)) = self.0.take() {
            drop(worker);
            let n = dropped.dropped_lines();
            if n > 0 {
                eprintln!("{n} log lines were dropped: the log writer fell behind");
            }
        }
    }
}

/// Installs the global tracing subscriber. Lines are written to stderr by a
/// dedicated thread, so a slow log consumer never blocks the async workers
/// that serve requests. Call once, from `main`, and keep the guard; a second
/// call installs nothing and returns an empty guard.
pub fn init(cfg: &TelemetryConfig) -> LogGuard {
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if INSTALLED.swap(true, Ordering::AcqRel) {
        return LogGuard(None);
    }
    let filter = EnvFilter::try_new(&cfg.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, worker) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("log-writer")
        .finish(std::io::stderr());
    let dropped = writer.error_counter();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let _ = match cfg.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    LogGuard(Some((worker, dropped)))
}

/// The trace id of a W3C `traceparent` value (`00-<trace>-<span>-<flags>`),
/// if it is well-formed.
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (_version, trace, _span, _flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit())).then_some(trace)
}

/// The `traceparent` of incoming metadata, if any.
pub fn traceparent(metadata: &MetadataMap) -> Option<String> {
    metadata
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Puts a trace context in outgoing metadata as W3C Trace Context over
/// gRPC carries it: `traceparent`, and `tracestate` when there is one. A
/// value that is not a valid header is left out.
pub fn propagate(metadata: &mut MetadataMap, traceparent: &str, tracestate: &str) {
    if let Ok(v) = traceparent.parse() {
        metadata.insert(TRACEPARENT, v);
    }
    if !tracestate.is_empty()
        && let Ok(v) = tracestate.parse()
    {
        metadata.insert(TRACESTATE, v);
    }
}

/// A new W3C traceparent with random ids, sampled.
pub fn new_traceparent() -> String {
    // W3C Trace Context: version 00, a 16-byte trace id and an 8-byte span
    // id, flags 01 (sampled). Random v4 UUIDs have fixed version and variant
    // bits, so neither id is ever all zeros. One allocation.
    let trace = uuid::Uuid::new_v4().as_u128();
    let (_, span) = uuid::Uuid::new_v4().as_u64_pair();
    let mut out = String::with_capacity(55);
    out.push_str("00-");
    push_hex(&mut out, &trace.to_be_bytes());
    out.push('-');
    push_hex(&mut out, &span.to_be_bytes());
    out.push_str("-01");
    out
}

/// Appends `bytes` to `out` as lowercase hex.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_trace_id() {
        let tp = new_traceparent();
        assert_eq!(tp.len(), 55);
        assert!(tp.starts_with("00-") && tp.ends_with("-01"), "{tp}");
        assert_eq!(tp.matches('-').count(), 3, "{tp}");
        assert_ne!(tp, new_traceparent(), "ids are random");
        assert_eq!(trace_id(&tp).map(str::len), Some(32));
        assert_eq!(trace_id("garbage"), None);
        assert_eq!(trace_id("00-xyz-abc-01"), None);
    }
}
