//! Span export over OTLP/gRPC (`[telemetry.otlp]`), off by default.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};
use serde::{Deserialize, Serialize};
use serde_with::{DurationMilliSeconds, serde_as};

use crate::config::{ConfigError, invalid, positive};

/// `[telemetry.otlp]`: where spans go and how many.
#[serde_as]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// The collector's OTLP/gRPC endpoint, e.g. `http://otel-collector:4317`.
    pub endpoint: String,
    /// Share of new traces recorded, 0 to 1. A trace that arrives with a
    /// parent (a client's, the orchestrator's) follows the parent's
    /// decision.
    #[serde(default = "default_ratio")]
    pub sample_ratio: f64,
    /// How often finished spans are sent.
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(default = "default_interval", rename = "export_interval_ms")]
    pub export_interval: Duration,
    /// Time limit of one export call.
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(default = "default_timeout", rename = "export_timeout_ms")]
    pub export_timeout: Duration,
    /// Finished spans waiting to be sent; beyond it new spans are dropped
    /// (the collector is down or slow), never blocking a request.
    #[serde(default = "default_queue")]
    pub max_queued_spans: usize,
}

fn default_ratio() -> f64 {
    1.0
}

fn default_interval() -> Duration {
    Duration::from_millis(5_000)
}

fn default_timeout() -> Duration {
    Duration::from_millis(10_000)
}

fn default_queue() -> usize {
    4_096
}

/// Largest batch sent in one export call.
const MAX_BATCH_SPANS: usize = 512;

impl OtlpConfig {
    /// Refuses values that make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let scheme_ok = ["http://", "https://"]
            .iter()
            .any(|s| self.endpoint.starts_with(s));
        if !scheme_ok || self.endpoint.parse::<tonic::transport::Uri>().is_err() {
            return Err(invalid(
                "telemetry.otlp.endpoint",
                "must be an http:// or https:// URL, e.g. http://otel-collector:4317",
            ));
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(invalid(
                "telemetry.otlp.sample_ratio",
                "must be between 0 and 1",
            ));
        }
        positive("telemetry.otlp.export_interval_ms", self.export_interval)?;
        positive("telemetry.otlp.export_timeout_ms", self.export_timeout)?;
        positive("telemetry.otlp.max_queued_spans", self.max_queued_spans)
    }
}

/// Why the exporter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("telemetry.otlp: {0}")]
pub struct OtlpError(#[from] opentelemetry_otlp::ExporterBuildError);

/// Builds the tracer provider that batches spans of `service` to the
/// collector. Must run inside the tokio runtime (the exporter's channel
/// lives there).
pub fn provider(cfg: &OtlpConfig, service: &str) -> Result<SdkTracerProvider, OtlpError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(cfg.endpoint.clone())
        .with_timeout(cfg.export_timeout)
        .build()?;
    let batch = BatchConfigBuilder::default()
        .with_scheduled_delay(cfg.export_interval)
        .with_max_queue_size(cfg.max_queued_spans)
        .with_max_export_batch_size(MAX_BATCH_SPANS.min(cfg.max_queued_spans))
        .build();
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(batch)
        .build();
    let resource = Resource::builder()
        .with_service_name(service.to_string())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            cfg.sample_ratio,
        ))))
        .with_resource(resource)
        .build())
}

/// The tracer spans are made with.
pub fn tracer(provider: &SdkTracerProvider) -> SdkTracer {
    provider.tracer("agentmesh")
}
