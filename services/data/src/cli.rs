//! The `data-agent` command line, shared by the binary and `meshctl`.

use std::path::PathBuf;

use agentmesh_runtime::config::{self, ConfigError};
use agentmesh_runtime::{CommonArgs, ServeError, run_agent};

use crate::{DataAgent, DataAgentConfig, StartError};

/// Serves the agentmesh data agent (sales extraction) over gRPC.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "data-agent", version, about)]
pub struct Args {
    /// Flags every server takes.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Folder that holds every data file (overrides data.root).
    #[arg(long)]
    pub data_root: Option<PathBuf>,
}

/// Why the agent stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The sales source could not be opened.
    #[error("opening the sales source: {0}")]
    Start(#[from] StartError),
    /// Opening was interrupted.
    #[error("opening the sales source: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// The server failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// Loads the config (defaults < file < `AGENTMESH_*` env < flags) and
/// serves until SIGTERM/SIGINT.
pub async fn run(args: Args) -> Result<(), RunError> {
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
    let _log = agentmesh_runtime::telemetry::init(&cfg.telemetry);
    let data = cfg.data.clone();
    let agent = tokio::task::spawn_blocking(move || DataAgent::open(&data)).await??;
    run_agent(agent, cfg.server, &cfg.telemetry).await?;
    Ok(())
}
