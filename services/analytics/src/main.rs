//! `analytics-agent`: the analytics agent as a gRPC server.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    agentmesh_analytics::cli::run(agentmesh_analytics::cli::Args::parse()).await?;
    Ok(())
}
