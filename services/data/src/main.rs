//! `data-agent`: the data agent as a gRPC server.

use agentmesh_data::{DataAgent, DataAgentConfig};
use agentmesh_runtime::{CommonArgs, config, run_agent};
use anyhow::Context;
use clap::Parser;

/// Serves the agentmesh data agent (sales extraction) over gRPC.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Folder that holds every data file (overrides data.root).
    #[arg(long)]
    data_root: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut overrides = args.common.overrides();
    if let Some(root) = &args.data_root {
        config::set(
            &mut overrides,
            &["data", "root"],
            root.display().to_string().into(),
        );
    }
    let cfg: DataAgentConfig = config::load(
        &DataAgentConfig::default(),
        args.common.config.as_deref(),
        std::env::vars(),
        overrides,
    )?;
    agentmesh_runtime::telemetry::init(&cfg.telemetry);
    let data = cfg.data.clone();
    let agent = tokio::task::spawn_blocking(move || DataAgent::open(&data))
        .await?
        .context("opening the sales source")?;
    run_agent(agent, cfg.server, &cfg.telemetry).await?;
    Ok(())
}
