//! Logs, and traces: spans tied to the W3C trace context, exported over
//! OTLP when configured.
//!
//! [`init`] installs the global subscriber (logs written by their own
//! thread; spans batched to the collector by the SDK's); only binaries call
//! it, and keep the [`Telemetry`] it returns.

pub mod context;
pub mod otlp;

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Level, Metadata};
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer, Registry};

pub use context::{TRACEPARENT, TRACESTATE};

use crate::config::{LogFormat, TelemetryConfig};

/// Log lines queued for the writer thread. When the queue is full, new
/// lines are dropped (and counted) rather than blocking a request.
pub const LOG_QUEUE_LINES: usize = 16_384;

/// Keeps the log writer thread and the span exporter alive. Hold it for as
/// long as the process serves, then [`Telemetry::shutdown`] it: the spans
/// still queued are sent and the lines still queued written.
#[must_use = "dropping it stops the log writer and the span exporter"]
pub struct Telemetry {
    log: Option<(WorkerGuard, ErrorCounter)>,
    spans: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still queued (within the export timeout), then stops
    /// the exporter. The log writer stops when `self` is dropped.
    pub async fn shutdown(mut self) {
        if let Some(provider) = self.spans.take() {
            // The SDK's shutdown blocks until its export thread is done.
            let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(e)) = done {
                tracing::warn!(error = %e, "spans could not all be exported at shutdown");
            }
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some((worker, dropped)) = self.log.take() {
            drop(worker);
            let n = dropped.dropped_lines();
            if n > 0 {
                eprintln!("{n} log lines were dropped: the log writer fell behind");
            }
        }
    }
}

/// What becomes a span or span event in traces: agentmesh's own spans and
/// events at `info` and above, whatever the log filter says (and never the
/// transport's, which would trace the exporter's own calls).
fn traced(meta: &Metadata<'_>) -> bool {
    meta.target().starts_with("agentmesh") && *meta.level() <= Level::INFO
}

/// Installs the global tracing subscriber: log lines to stderr, written by
/// a dedicated thread so that a slow log consumer never blocks the async
/// workers, and, with `[telemetry.otlp]`, spans of `service` exported over
/// OTLP/gRPC. Call once, from `main`, inside the tokio runtime; a second call
/// installs nothing.
pub fn init(cfg: &TelemetryConfig, service: &str) -> Result<Telemetry, otlp::OtlpError> {
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if INSTALLED.swap(true, Ordering::AcqRel) {
        return Ok(Telemetry {
            log: None,
            spans: None,
        });
    }
    let spans = cfg
        .otlp
        .as_ref()
        .map(|o| otlp::provider(o, service))
        .transpose()?;
    let filter = EnvFilter::try_new(&cfg.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, worker) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("log-writer")
        .finish(std::io::stderr());
    let dropped = writer.error_counter();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let logs: Box<dyn Layer<Registry> + Send + Sync> = match cfg.log_format {
        LogFormat::Text => fmt.with_filter(filter).boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).with_filter(filter).boxed(),
    };
    let traces = spans.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(otlp::tracer(provider))
            .with_filter(filter_fn(traced))
    });
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init();
    Ok(Telemetry {
        log: Some((worker, dropped)),
        spans,
    })
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
    fn hex() {
        let mut out = String::new();
        push_hex(&mut out, &[0x00, 0xab, 0x7f]);
        assert_eq!(out, "00ab7f");
    }
}
