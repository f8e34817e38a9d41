//! The data agent as a server binary (and as `meshctl up` starts it).

use std::path::PathBuf;

use agentmesh_runtime::config::{self, ConfigError, TelemetryConfig, Validate};
use agentmesh_runtime::launch::Service;
use agentmesh_runtime::{ServeError, run_agent};
use toml::Table;

use crate::{DataAgent, DataAgentConfig, StartError};

/// The `data-agent` binary.
pub struct DataService;

/// The data agent's own flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DataFlags {
    /// Folder that holds every data file (overrides data.root).
    #[arg(long)]
    pub data_root: Option<PathBuf>,
}

/// Why the agent stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DataServeError {
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

impl Validate for DataAgentConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        if !(self.data.scale.is_finite() && self.data.scale > 0.0) {
            return Err(config::invalid("data.scale", "must be a positive number"));
        }
        Ok(())
    }
}

impl Service for DataService {
    const NAME: &'static str = "data-agent";
    const ABOUT: &'static str = "Serves the agentmesh data agent (sales extraction) over gRPC.";
    type Flags = DataFlags;
    type Config = DataAgentConfig;
    type Error = DataServeError;

    fn overrides(flags: &DataFlags, table: &mut Table) {
        if let Some(root) = &flags.data_root {
            config::set(table, &["data", "root"], root.display().to_string().into());
        }
    }

    fn telemetry(cfg: &DataAgentConfig) -> &TelemetryConfig {
        &cfg.telemetry
    }

    async fn serve(cfg: DataAgentConfig, _flags: DataFlags) -> Result<(), DataServeError> {
        let data = cfg.data.clone();
        let agent = tokio::task::spawn_blocking(move || DataAgent::open(&data)).await??;
        run_agent(agent, cfg.server).await?;
        Ok(())
    }
}
