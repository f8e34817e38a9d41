//! The analytics agent as a server binary (and as `meshctl up` starts it).

use agentmesh_runtime::config::{ConfigError, TelemetryConfig, Validate};
use agentmesh_runtime::launch::{NoFlags, Service};
use agentmesh_runtime::{ServeError, run_agent};

use crate::{AnalyticsAgent, AnalyticsConfig};

/// The `analytics-agent` binary.
pub struct AnalyticsService;

impl Validate for AnalyticsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()
    }
}

// doc:begin service
impl Service for AnalyticsService {
    const NAME: &'static str = "analytics-agent";
    const ABOUT: &'static str =
        "Serves the agentmesh analytics agent (metrics and SVG charts) over gRPC.";
    type Flags = NoFlags;
    type Config = AnalyticsConfig;
    type Error = ServeError;

    fn telemetry(cfg: &AnalyticsConfig) -> &TelemetryConfig {
        &cfg.telemetry
    }
    // doc:end service

    async fn serve(cfg: AnalyticsConfig, _flags: NoFlags) -> Result<(), ServeError> {
        run_agent(AnalyticsAgent, cfg.server).await
    }
}
