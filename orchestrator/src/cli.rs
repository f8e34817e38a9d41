//! The `orchestrator` command line, shared by the binary and `meshctl`.

use agentmesh_runtime::config::{self, ConfigError};
use agentmesh_runtime::{CommonArgs, ServeError, bind, shutdown, telemetry};
use tracing::info;

use crate::{OrchestratorConfig, OrchestratorError, serve};

/// Serves the agentmesh Orchestrator API: discovers agents through health
/// checks and delegates every step of a run to them.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "orchestrator", version, about)]
pub struct Args {
    /// Flags every server takes.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Agent address to add to discovery.endpoints (repeatable).
    #[arg(long = "agent", value_name = "HOST:PORT")]
    pub agents: Vec<String>,
}

/// Why the orchestrator stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listener could not be bound.
    #[error(transparent)]
    Bind(#[from] ServeError),
    /// The orchestrator failed.
    #[error(transparent)]
    Serve(#[from] OrchestratorError),
}

/// Loads the config and serves until SIGTERM/SIGINT.
pub async fn run(args: Args) -> Result<(), RunError> {
    let mut cfg: OrchestratorConfig = config::load(
        &OrchestratorConfig::default(),
        args.common.config.as_deref(),
        std::env::vars(),
        args.common.overrides(),
    )?;
    cfg.discovery.endpoints.extend(args.agents);
    let _log = telemetry::init(&cfg.telemetry);
    let listener = bind(&cfg.server).await?;
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "listening");
    }
    serve(cfg, listener, shutdown::signal()).await?;
    Ok(())
}
