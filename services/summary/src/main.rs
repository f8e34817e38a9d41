//! `summary-agent`: the summary agent as a gRPC server.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    agentmesh_summary::cli::run(agentmesh_summary::cli::Args::parse()).await?;
    Ok(())
}
