//! `analytics-agent`: the analytics agent as a gRPC server.

use clap::Parser;

// mimalloc: the services allocate and free many small objects per request
// across worker threads; measured in docs/BENCHMARKS.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    agentmesh_analytics::cli::run(agentmesh_analytics::cli::Args::parse()).await?;
    Ok(())
}
