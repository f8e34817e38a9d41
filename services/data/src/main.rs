//! `data-agent`: the data agent as a gRPC server.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    agentmesh_data::cli::run(agentmesh_data::cli::Args::parse()).await?;
    Ok(())
}
