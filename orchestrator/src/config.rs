//! The orchestrator's typed configuration (defaults < TOML < env < flags,
//! loaded once in `main` with `agentmesh_runtime::config::load`).

use std::net::SocketAddr;
use std::time::Duration;

use agentmesh_runtime::{ServerConfig, TelemetryConfig};
use serde::{Deserialize, Serialize};

/// Default orchestrator port.
pub const DEFAULT_PORT: u16 = 50050;

/// Everything the orchestrator reads at start.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OrchestratorConfig {
    /// gRPC server settings (limits, shutdown) shared with the agents.
    pub server: ServerConfig,
    /// Logging.
    pub telemetry: TelemetryConfig,
    /// Where agents come from and how they are watched.
    pub discovery: DiscoveryConfig,
    /// How replicas are chosen and ejected.
    pub routing: RoutingConfig,
    /// Deadlines, attempts and backoff of steps and runs.
    pub execution: ExecutionConfig,
    /// How many runs are kept.
    pub store: StoreConfig,
    /// Goal planning.
    pub planning: PlanningConfig,
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig::on_port(DEFAULT_PORT),
            telemetry: TelemetryConfig::default(),
            discovery: DiscoveryConfig::default(),
            routing: RoutingConfig::default(),
            execution: ExecutionConfig::default(),
            store: StoreConfig::default(),
            planning: PlanningConfig::default(),
        }
    }
}

/// Endpoint sources and health watching.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// Fixed agent addresses, `host:port`.
    pub endpoints: Vec<String>,
    /// DNS names re-resolved on a timer; every address is one replica (a
    /// Kubernetes headless Service), `name:port`.
    pub dns: Vec<String>,
    /// DNS server to ask (`ip:port`); unset means the system resolver
    /// (`/etc/resolv.conf`).
    pub dns_server: Option<SocketAddr>,
    /// How often DNS names are resolved again.
    pub dns_refresh_ms: u64,
    /// Interval of the health `Check` fallback, and of retries after an
    /// endpoint becomes unreachable.
    pub health_check_ms: u64,
    /// Timeout of connecting to an endpoint and of `Check`/`GetAgentCard`.
    pub connect_timeout_ms: u64,
    /// Lease granted to a self-registered agent that asks for none.
    pub lease_default_ms: u64,
    /// Shortest lease granted.
    pub lease_min_ms: u64,
    /// Longest lease granted.
    pub lease_max_ms: u64,
    /// Most self-registered endpoints at once.
    pub max_registrations: usize,
    /// TLS towards the agents (every endpoint, however discovered). Unset:
    /// plaintext.
    pub tls: Option<agentmesh_runtime::tls::ClientTls>,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            dns: Vec::new(),
            dns_server: None,
            dns_refresh_ms: 5_000,
            health_check_ms: 2_000,
            connect_timeout_ms: 2_000,
            lease_default_ms: 15_000,
            lease_min_ms: 500,
            lease_max_ms: 300_000,
            max_registrations: 1_024,
            tls: None,
        }
    }
}

/// Replica choice and ejection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// Consecutive failures that eject an endpoint.
    pub eject_after_failures: u32,
    /// How long an ejected endpoint gets no work.
    pub eject_cooldown_ms: u64,
    /// Outcomes remembered for the recent error rate.
    pub error_window: usize,
    /// How long a step waits for a replica with a free slot before it fails
    /// with NO_AGENT_FOR_SKILL.
    pub no_replica_wait_ms: u64,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            eject_after_failures: 3,
            eject_cooldown_ms: 10_000,
            error_window: 20,
            no_replica_wait_ms: 5_000,
        }
    }
}

/// Step and run limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutionConfig {
    /// Deadline of one attempt of a step when the plan sets none.
    pub step_deadline_ms: u64,
    /// End-to-end deadline of a run when the client sets none.
    pub run_deadline_ms: u64,
    /// Longest run deadline a client may ask for.
    pub max_run_deadline_ms: u64,
    /// Attempts per step (first try included) when the plan sets none.
    pub max_attempts: u32,
    /// Most attempts a plan may ask for.
    pub max_attempts_limit: u32,
    /// First retry delay; doubles per attempt, with jitter.
    pub backoff_base_ms: u64,
    /// Longest retry delay.
    pub backoff_max_ms: u64,
    /// Heartbeat interval asked of agents.
    pub heartbeat_ms: u64,
    /// An agent silent for this many heartbeat intervals has lost its lease.
    pub heartbeat_lease_factor: u32,
    /// Most steps in one plan.
    pub max_steps: usize,
    /// Runs executing at once; more are refused with RESOURCE_EXHAUSTED.
    pub max_active_runs: usize,
    /// Progress events kept per run; more are dropped (state changes,
    /// results and failures are always kept).
    pub max_progress_events: u64,
    /// Chunk size of report artifacts streamed to clients.
    pub report_chunk_bytes: usize,
    /// Most artifact bytes one step may return.
    pub max_artifact_bytes: usize,
}

impl Default for ExecutionConfig {
    fn default() -> Self {
        Self {
            step_deadline_ms: 60_000,
            run_deadline_ms: 300_000,
            max_run_deadline_ms: 3_600_000,
            max_attempts: 3,
            max_attempts_limit: 10,
            backoff_base_ms: 100,
            backoff_max_ms: 5_000,
            heartbeat_ms: 1_000,
            heartbeat_lease_factor: 3,
            max_steps: 64,
            max_active_runs: 256,
            max_progress_events: 2_000,
            report_chunk_bytes: 64 * 1024,
            max_artifact_bytes: 64 * 1024 * 1024,
        }
    }
}

impl ExecutionConfig {
    /// Silence after which an attempt is abandoned.
    pub fn heartbeat_lease(&self) -> Duration {
        Duration::from_millis(
            self.heartbeat_ms
                .saturating_mul(u64::from(self.heartbeat_lease_factor.max(1))),
        )
    }
}

/// Run retention.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Runs kept for GetRun/WatchRun; beyond it the oldest finished runs go.
    pub retained_runs: usize,
    /// SQLite file that keeps runs across restarts (created if missing;
    /// one orchestrator per file). Unset: runs live in memory only.
    pub path: Option<std::path::PathBuf>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            retained_runs: 1_000,
            path: None,
        }
    }
}

/// Goal planning.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PlanningConfig {
    /// Playbook files, or folders of `*.toml` playbooks, loaded at start.
    pub playbooks: Vec<std::path::PathBuf>,
}
