//! The `analytics-agent` command line, shared by the binary and `meshctl`.

use agentmesh_runtime::config::{self, ConfigError};
use agentmesh_runtime::{CommonArgs, ServeError, run_agent};

use crate::{AnalyticsAgent, AnalyticsConfig};

/// Serves the agentmesh analytics agent (metrics and SVG charts) over gRPC.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "analytics-agent", version, about)]
pub struct Args {
    /// Flags every server takes.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Why the agent stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The server failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// Loads the config and serves until SIGTERM/SIGINT.
pub async fn run(args: Args) -> Result<(), RunError> {
    let cfg: AnalyticsConfig = config::load(
        &AnalyticsConfig::default(),
        args.common.config.as_deref(),
        std::env::vars(),
        args.common.overrides(),
    )?;
    run_agent(AnalyticsAgent, cfg.server, &cfg.telemetry).await?;
    Ok(())
}
