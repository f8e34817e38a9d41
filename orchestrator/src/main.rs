//! `orchestrator`: the agentmesh orchestrator as a gRPC server.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    agentmesh_orchestrator::cli::run(agentmesh_orchestrator::cli::Args::parse()).await?;
    Ok(())
}
