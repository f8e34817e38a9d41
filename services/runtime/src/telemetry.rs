//! Logging and trace context.
//!
//! [`init`] installs the global subscriber; only binaries call it.

use tonic::metadata::MetadataMap;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, TelemetryConfig};

/// Metadata key of the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// Installs the global tracing subscriber (logs to stderr). Call once, from
/// `main`. A second call is ignored.
pub fn init(cfg: &TelemetryConfig) {
    let filter = EnvFilter::try_new(&cfg.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let _ = match cfg.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
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

/// A new W3C traceparent with random ids, sampled.
pub fn new_traceparent() -> String {
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    format!("00-{trace}-{span}-01")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_trace_id() {
        let tp = new_traceparent();
        assert_eq!(trace_id(&tp).map(str::len), Some(32));
        assert_eq!(trace_id("garbage"), None);
        assert_eq!(trace_id("00-xyz-abc-01"), None);
    }
}
