//! Prometheus metrics: the families every agentmesh process exports, and
//! the HTTP listener that serves them (`[telemetry.metrics] listen`).
//!
//! A process has one [`Exporter`] ([`exporter`]): its families are
//! registered once, and gauges that describe live state (queue lengths,
//! registry size) are set by scrape hooks just before each scrape. `GET /metrics` answers in the Prometheus
//! text format (0.0.4), or in OpenMetrics when the scraper asks for it.
//! Names follow Prometheus conventions: the `agentmesh_` prefix, units in
//! names, `_total` counters, and bounded label sets (skills, agents,
//! endpoints, states and reasons; never a run or task id).

pub mod tasks;

use std::net::SocketAddr;
use std::sync::LazyLock;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// `[telemetry.metrics]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where `GET /metrics` is served (plaintext HTTP, its own listener).
    pub listen: SocketAddr,
}

/// Content type of the Prometheus text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of the OpenMetrics text format.
const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Hook = Box<dyn Fn() + Send + Sync>;

/// A registry of metric families and the hooks that refresh live gauges.
#[derive(Default)]
pub struct Exporter {
    registry: Registry,
    hooks: Vec<Hook>,
    registered: Vec<&'static str>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("groups", &self.registered)
            .field("hooks", &self.hooks.len())
            .finish()
    }
}

/// The process's exporter.
pub fn exporter() -> &'static Mutex<Exporter> {
    static EXPORTER: LazyLock<Mutex<Exporter>> = LazyLock::new(|| Mutex::new(Exporter::default()));
    &EXPORTER
}

impl Exporter {
    /// Registers a group of families once per process: `register` runs the
    /// first time `group` is named, and never again (services started
    /// together in one process share the exporter).
    pub fn register_once(&mut self, group: &'static str, register: impl FnOnce(&mut Registry)) {
        if !self.registered.contains(&group) {
            self.registered.push(group);
            register(&mut self.registry);
        }
    }

    /// Runs `hook` before every scrape (to set gauges from live state).
    pub fn on_scrape(&mut self, hook: impl Fn() + Send + Sync + 'static) {
        self.hooks.push(Box::new(hook));
    }

    /// The metrics now, as Prometheus text or OpenMetrics.
    pub fn render(&self, openmetrics: bool) -> Result<String, std::fmt::Error> {
        for hook in &self.hooks {
            hook();
        }
        let mut out = String::with_capacity(16 * 1024);
        if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        }
        Ok(out)
    }
}

async fn scrape(headers: HeaderMap) -> impl IntoResponse {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    match exporter().lock().render(openmetrics) {
        Ok(body) => {
            let kind = if openmetrics {
                OPENMETRICS_TEXT
            } else {
                PROMETHEUS_TEXT
            };
            (StatusCode::OK, [(header::CONTENT_TYPE, kind)], body).into_response()
        }
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics could not be encoded",
        )
            .into_response(),
    }
}

/// Serves `GET /metrics` from [`exporter`] on `listener` until `stop`.
pub async fn serve(listener: tokio::net::TcpListener, stop: CancellationToken) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "metrics listener (GET /metrics)");
    }
    let app = axum::Router::new().route("/metrics", get(scrape));
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
    if let Err(e) = served {
        warn!(error = %e, "metrics listener failed");
    }
}

/// Binds `cfg.listen` and serves the metrics there until `stop`.
pub async fn start(cfg: &MetricsConfig, stop: CancellationToken) -> Result<(), std::io::Error> {
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    tokio::spawn(serve(listener, stop));
    Ok(())
}
