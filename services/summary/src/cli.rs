//! The `summary-agent` command line, shared by the binary and `meshctl`.

use agentmesh_runtime::config::{self, ConfigError};
use agentmesh_runtime::{CommonArgs, ServeError, run_agent};

use crate::llm::{LlmClient, LlmError};
use crate::{SummaryAgent, SummaryConfig};

/// Serves the agentmesh summary agent (executive summaries) over gRPC.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "summary-agent", version, about)]
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
    /// The LLM backend could not be set up.
    #[error(transparent)]
    Llm(#[from] LlmError),
    /// The server failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// Loads the config and serves until SIGTERM/SIGINT.
pub async fn run(args: Args) -> Result<(), RunError> {
    let cfg: SummaryConfig = config::load(
        &SummaryConfig::default(),
        args.common.config.as_deref(),
        std::env::vars(),
        args.common.overrides(),
    )?;
    let agent = if cfg.llm.enabled() {
        let key = std::env::var(&cfg.llm.api_key_env).ok();
        SummaryAgent::with_llm(LlmClient::new(&cfg.llm, key)?)
    } else {
        SummaryAgent::deterministic()
    };
    run_agent(agent, cfg.server, &cfg.telemetry).await?;
    Ok(())
}
