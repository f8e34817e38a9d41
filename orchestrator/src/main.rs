//! `orchestrator`: the agentmesh orchestrator as a gRPC server.

use agentmesh_orchestrator::{OrchestratorConfig, serve};
use agentmesh_runtime::{CommonArgs, bind, config, shutdown, telemetry};
use clap::Parser;
use tracing::info;

/// Serves the agentmesh Orchestrator API: discovers agents through health
/// checks and delegates every step of a run to them.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Agent address to add to discovery.endpoints (repeatable).
    #[arg(long = "agent", value_name = "HOST:PORT")]
    agents: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut cfg: OrchestratorConfig = config::load(
        &OrchestratorConfig::default(),
        args.common.config.as_deref(),
        std::env::vars(),
        args.common.overrides(),
    )?;
    cfg.discovery.endpoints.extend(args.agents);
    telemetry::init(&cfg.telemetry);
    let listener = bind(&cfg.server).await?;
    info!(addr = %listener.local_addr()?, "listening");
    serve(cfg, listener, shutdown::signal()).await?;
    Ok(())
}
