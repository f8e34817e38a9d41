//! The summary agent as a server binary (and as `meshctl up` starts it).

use agentmesh_runtime::config::{self, ConfigError, TelemetryConfig, Validate};
use agentmesh_runtime::launch::{NoFlags, Service};
use agentmesh_runtime::{ServeError, run_agent};

use crate::llm::{LlmClient, LlmError};
use crate::{SummaryAgent, SummaryConfig};

/// The `summary-agent` binary.
pub struct SummaryService;

/// Why the agent stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum SummaryServeError {
    /// The LLM backend could not be set up.
    #[error(transparent)]
    Llm(#[from] LlmError),
    /// The server failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

impl Validate for SummaryConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        config::positive("llm.timeout_ms", self.llm.timeout)?;
        config::positive("llm.connect_timeout_ms", self.llm.connect_timeout)
    }
}

impl Service for SummaryService {
    const NAME: &'static str = "summary-agent";
    const ABOUT: &'static str =
        "Serves the agentmesh summary agent (executive summaries) over gRPC.";
    type Flags = NoFlags;
    type Config = SummaryConfig;
    type Error = SummaryServeError;

    fn telemetry(cfg: &SummaryConfig) -> &TelemetryConfig {
        &cfg.telemetry
    }

    async fn serve(cfg: SummaryConfig, _flags: NoFlags) -> Result<(), SummaryServeError> {
        let agent = if cfg.llm.enabled() {
            // The key is read here, once, like the rest of the configuration.
            let key = std::env::var(&cfg.llm.api_key_env).ok();
            SummaryAgent::with_llm(LlmClient::new(&cfg.llm, key)?)
        } else {
            SummaryAgent::deterministic()
        };
        run_agent(agent.asking_audience(cfg.ask_audience), cfg.server).await?;
        Ok(())
    }
}
