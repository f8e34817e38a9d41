//! `summary-agent`: the summary agent as a gRPC server.

use agentmesh_runtime::{CommonArgs, config, run_agent};
use agentmesh_summary::{SummaryAgent, SummaryConfig};
use clap::Parser;

/// Serves the agentmesh summary agent (executive summaries) over gRPC.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cfg: SummaryConfig = config::load(
        &SummaryConfig::default(),
        args.common.config.as_deref(),
        std::env::vars(),
        args.common.overrides(),
    )?;
    let agent = if cfg.llm.enabled() {
        let key = std::env::var(&cfg.llm.api_key_env).ok();
        SummaryAgent::with_llm(agentmesh_summary::llm::LlmClient::new(&cfg.llm, key)?)
    } else {
        SummaryAgent::deterministic()
    };
    run_agent(agent, cfg.server, &cfg.telemetry).await?;
    Ok(())
}
