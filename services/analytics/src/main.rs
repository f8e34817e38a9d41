//! `analytics-agent`: the analytics agent as a gRPC server.

use agentmesh_analytics::{AnalyticsAgent, AnalyticsConfig};
use agentmesh_runtime::{CommonArgs, config, run_agent};
use clap::Parser;

/// Serves the agentmesh analytics agent (metrics and SVG charts) over gRPC.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cfg: AnalyticsConfig = config::load(
        &AnalyticsConfig::default(),
        args.common.config.as_deref(),
        std::env::vars(),
        args.common.overrides(),
    )?;
    run_agent(AnalyticsAgent, cfg.server, &cfg.telemetry).await?;
    Ok(())
}
