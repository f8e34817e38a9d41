//! The orchestrator's typed configuration (defaults < TOML < env < flags,
//! loaded once in `main` with `agentmesh_runtime::config::load`).

use std::net::SocketAddr;
use std::time::Duration;

use agentmesh_runtime::config::{ConfigError, Validate, invalid, positive};
use agentmesh_runtime::{ServerConfig, TelemetryConfig};
use serde::{Deserialize, Serialize};
use serde_with::{DurationMilliSeconds, serde_as};

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
    /// Per-principal limits, when the API is authenticated.
    pub access: AccessConfig,
    /// The Agent2Agent (A2A) facade: the mesh as an A2A agent.
    pub a2a: A2aConfig,
    /// The run viewer (web pages).
    pub viewer: ViewerConfig,
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
            access: AccessConfig::default(),
            a2a: A2aConfig::default(),
            viewer: ViewerConfig::default(),
        }
    }
}

/// `[viewer]`: the run viewer, web pages on their own HTTP listener
/// (HTTPS with `server.tls`; the same credentials as the API with
/// `server.auth`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ViewerConfig {
    /// Address of the viewer's listener. Unset: no viewer.
    pub listen: Option<SocketAddr>,
}

/// `[a2a]`: the mesh as an A2A v1.0 agent. The gRPC binding
/// (`lf.a2a.v1.A2AService`) is always served on the orchestrator's gRPC
/// port; the JSON-RPC binding and the agent card need an HTTP listener.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct A2aConfig {
    /// Address of the HTTP listener for the JSON-RPC binding (`POST /`)
    /// and the agent card (`GET /.well-known/agent-card.json`). Unset: no
    /// HTTP listener (the gRPC binding is still served).
    pub listen: Option<SocketAddr>,
    /// The JSON-RPC URL published in the card, as clients reach it (a
    /// Service or Ingress address). Unset: `http://<a2a.listen>/`.
    pub public_url: Option<String>,
    /// The gRPC URL published in the card. Unset: `http://<server.listen>`
    /// (`https://` with `server.tls`).
    pub grpc_url: Option<String>,
    /// The agent's name in the card. Unset: "agentmesh".
    pub name: Option<String>,
}

/// `[[discovery.a2a]]`: an A2A agent used as a sub-agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct A2aPeerConfig {
    /// Base URL of the agent: its card is at
    /// `<url>/.well-known/agent-card.json`.
    pub url: String,
    /// A file holding a bearer token to present to the agent (for cards
    /// that declare an HTTP bearer scheme). Unset: none.
    pub token_file: Option<std::path::PathBuf>,
    /// Most tasks this orchestrator sends it at once (A2A cards do not
    /// say); 0: no limit.
    pub max_concurrency: u32,
}

impl Default for A2aPeerConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            token_file: None,
            max_concurrency: 16,
        }
    }
}

/// `[access]`: what one authenticated principal may use. Each limit
/// answers RESOURCE_EXHAUSTED (metadata `limit`) with google.rpc.RetryInfo.
#[serde_as]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AccessConfig {
    /// Most runs one principal may have executing at once; 0: no limit
    /// beyond `execution.max_active_runs`.
    pub max_active_runs_per_principal: usize,
    /// Runs one principal may start per second, sustained; 0: no limit.
    pub submits_per_second: u32,
    /// Runs one principal may start at once above that rate; 0: as many
    /// as `submits_per_second`.
    pub submit_burst: u32,
    /// The retry delay sent when a principal has too many runs executing.
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(rename = "retry_after_ms")]
    pub retry_after: Duration,
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
            max_active_runs_per_principal: 0,
            submits_per_second: 0,
            submit_burst: 0,
            retry_after: Duration::from_millis(1_000),
        }
    }
}

/// Endpoint sources and health watching.
#[serde_as]
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
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(rename = "dns_refresh_ms")]
    pub dns_refresh: Duration,
    /// Interval of the health `Check` fallback, and of retries after an
    /// endpoint becomes unreachable.
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(rename = "health_check_ms")]
    pub health_check: Duration,
    /// Timeout of connecting to an endpoint and of `Check`/`GetAgentCard`.
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(rename = "connect_timeout_ms")]
    pub connect_timeout: Duration,
    /// Lease granted to a self-registered agent that asks for none.
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(rename = "lease_default_ms")]
    pub lease_default: Duration,
    /// Shortest lease granted.
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(rename = "lease_min_ms")]
    pub lease_min: Duration,
    /// Longest lease granted.
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(rename = "lease_max_ms")]
    pub lease_max: Duration,
    /// Most self-registered endpoints at once.
    pub max_registrations: usize,
    /// TLS towards the agents (every endpoint, however discovered). Unset:
    /// plaintext.
    pub tls: Option<agentmesh_runtime::tls::ClientTls>,
    /// A file holding the bearer token the orchestrator presents to
    /// agents (those with `server.auth` accept it when its principal is in
    /// their `task_callers`), such as a mounted Secret. Unset: none (mutual
    /// TLS may identify the orchestrator instead).
    pub token_file: Option<std::path::PathBuf>,
    /// A2A agents used as sub-agents (`[[discovery.a2a]] url = "..."`).
    pub a2a: Vec<A2aPeerConfig>,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            dns: Vec::new(),
            dns_server: None,
            dns_refresh: Duration::from_millis(5_000),
            health_check: Duration::from_millis(2_000),
            connect_timeout: Duration::from_millis(2_000),
            lease_default: Duration::from_millis(15_000),
            lease_min: Duration::from_millis(500),
            lease_max: Duration::from_millis(300_000),
            max_registrations: 1_024,
            tls: None,
            token_file: None,
            a2a: Vec::new(),
        }
    }
}

/// Replica choice and ejection.
#[serde_as]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// Consecutive failures that eject an endpoint.
    pub eject_after_failures: u32,
    /// How long an ejected endpoint gets no work.
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(rename = "eject_cooldown_ms")]
    pub eject_cooldown: Duration,
    /// Outcomes remembered for the recent error rate.
    pub error_window: usize,
    /// How long a step waits for a replica of its skill to appear when none
    /// is healthy before it fails with NO_AGENT_FOR_SKILL. (When replicas
    /// are there but busy, the step waits its turn in the skill's queue
    /// instead, up to the run's deadline.)
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(rename = "no_replica_wait_ms")]
    pub no_replica_wait: Duration,
    /// Most steps waiting for one skill's replicas at once. A step that
    /// finds the queue full fails with RESOURCE_EXHAUSTED, and a new run
    /// that needs the skill is refused at admission.
    pub max_queued_steps: usize,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            eject_after_failures: 3,
            eject_cooldown: Duration::from_millis(10_000),
            error_window: 20,
            no_replica_wait: Duration::from_millis(5_000),
            max_queued_steps: 10_000,
        }
    }
}

/// Step and run limits.
#[serde_as]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutionConfig {
    /// Deadline of one attempt of a step when the plan sets none.
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(rename = "step_deadline_ms")]
    pub step_deadline: Duration,
    /// End-to-end deadline of a run when the client sets none.
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(rename = "run_deadline_ms")]
    pub run_deadline: Duration,
    /// Longest run deadline a client may ask for.
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(rename = "max_run_deadline_ms")]
    pub max_run_deadline: Duration,
    /// Attempts per step (first try included) when the plan sets none.
    pub max_attempts: u32,
    /// Most attempts a plan may ask for.
    pub max_attempts_limit: u32,
    /// First retry delay; doubles per attempt, with jitter.
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(rename = "backoff_base_ms")]
    pub backoff_base: Duration,
    /// Longest retry delay.
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(rename = "backoff_max_ms")]
    pub backoff_max: Duration,
    /// Heartbeat interval asked of agents.
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(rename = "heartbeat_ms")]
    pub heartbeat: Duration,
    /// An agent silent for this many heartbeat intervals has lost its lease.
    pub heartbeat_lease_factor: u32,
    /// Most steps in one plan.
    pub max_steps: usize,
    /// Runs executing at once; more are refused with RESOURCE_EXHAUSTED.
    pub max_active_runs: usize,
    /// The wait a refused client is told (google.rpc.RetryInfo) when
    /// admission is full.
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(rename = "admission_retry_after_ms")]
    pub admission_retry_after: Duration,
    /// Progress events kept per run; more are dropped (state changes,
    /// results and failures are always kept).
    pub max_progress_events: u64,
    /// Chunk size of report artifacts streamed to clients.
    pub report_chunk_bytes: usize,
    /// Most artifact bytes one step may return.
    pub max_artifact_bytes: usize,
    /// How long a step waits for a person (an agent's question, or an
    /// approval gate without its own timeout) before it fails with
    /// INPUT_TIMEOUT.
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(rename = "answer_timeout_ms")]
    pub answer_timeout: Duration,
    /// Whether a run's deadline runs on while one of its steps waits for a
    /// person. By default it pauses: a run's deadline bounds the mesh's
    /// work, and the wait has its own (`answer_timeout_ms`).
    pub deadline_runs_while_waiting: bool,
}

impl Default for ExecutionConfig {
    fn default() -> Self {
        Self {
            step_deadline: Duration::from_millis(60_000),
            run_deadline: Duration::from_millis(300_000),
            max_run_deadline: Duration::from_millis(3_600_000),
            max_attempts: 3,
            max_attempts_limit: 10,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(5_000),
            heartbeat: Duration::from_millis(1_000),
            heartbeat_lease_factor: 3,
            max_steps: 64,
            // 10,000 slow runs in flight measured 25 KiB each (the capacity
            // bench, docs/BENCHMARKS.md): 4,096 is about 100 MiB.
            max_active_runs: 4_096,
            admission_retry_after: Duration::from_millis(1_000),
            max_progress_events: 2_000,
            report_chunk_bytes: 64 * 1024,
            max_artifact_bytes: 64 * 1024 * 1024,
            answer_timeout: Duration::from_secs(24 * 3600),
            deadline_runs_while_waiting: false,
        }
    }
}

impl ExecutionConfig {
    /// Silence after which an attempt is abandoned.
    pub fn heartbeat_lease(&self) -> Duration {
        self.heartbeat.saturating_mul(self.heartbeat_lease_factor)
    }
}

/// Where runs are kept, and for how long.
#[serde_as]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Runs kept for GetRun/WatchRun; beyond it the oldest finished runs go.
    pub retained_runs: usize,
    /// Encoded bytes of finished runs' events kept in memory; beyond it the
    /// oldest finished runs go (from memory: a file keeps them up to
    /// `retained_runs`). A Q2 report run is about 330 KB encoded and holds
    /// about three times that in memory.
    pub retained_bytes: u64,
    /// SQLite file that keeps runs across restarts (created if missing;
    /// one orchestrator per file). Runs that were executing when the
    /// process stopped are resumed when it starts again. Unset: runs live
    /// in memory only.
    pub path: Option<std::path::PathBuf>,
    /// This orchestrator's name in the runs it resumes
    /// (RunResumed.orchestrator), e.g. the pod name. Unset: `$HOSTNAME`,
    /// else the host name.
    pub instance: Option<String>,
    /// PostgreSQL database shared by several orchestrator replicas
    /// (`postgres://user:password@host:5432/db?sslmode=require`). Each
    /// replica drives the runs it accepted under a lease and takes over
    /// the runs of a replica whose lease expired; any replica answers for
    /// any run. Exclusive with `path`.
    pub url: Option<String>,
    /// PEM CA bundle that signs the database's certificate (`sslmode`
    /// require and up); unset: the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// How long a replica's store lease lasts without renewal; it renews
    /// and looks for runs to take over every quarter of it. A replica that
    /// cannot renew in time stops writing and gives up its runs.
    #[serde(rename = "lease_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub lease: Duration,
    /// A run followed on a replica that does not drive it is read again
    /// at least this often (besides every notification of new events).
    #[serde(rename = "poll_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub poll: Duration,
    /// Database connections per replica (reads and inserts; the writer
    /// and the listener have their own).
    pub pool_size: usize,
    /// Encoded bytes of finished runs' events the database keeps; beyond
    /// it (or `retained_runs`) the oldest finished runs are deleted.
    pub retained_stored_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            retained_runs: 1_000,
            retained_bytes: 32 * 1024 * 1024,
            path: None,
            instance: None,
            url: None,
            ca_file: None,
            lease: Duration::from_secs(10),
            poll: Duration::from_secs(1),
            pool_size: 8,
            retained_stored_bytes: 1 << 30,
        }
    }
}

/// Goal planning.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PlanningConfig {
    /// Playbook files, or folders of `*.toml` playbooks, loaded at start.
    pub playbooks: Vec<std::path::PathBuf>,
    /// Which planner plans goals.
    pub mode: PlannerMode,
    /// The LLM planner's endpoint (`[planning.llm]`): any OpenAI-compatible
    /// chat-completions API.
    pub llm: agentmesh_llm::LlmConfig,
    /// Answers asked of the model per goal: the first, then re-prompts
    /// with the validation errors of the one before.
    pub llm_tries: u32,
}

impl Default for PlanningConfig {
    fn default() -> Self {
        Self {
            playbooks: Vec::new(),
            mode: PlannerMode::Rules,
            llm: agentmesh_llm::LlmConfig {
                max_tokens: 1_200,
                temperature: 0.0,
                ..agentmesh_llm::LlmConfig::default()
            },
            llm_tries: 3,
        }
    }
}

/// `planning.mode`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PlannerMode {
    /// The rules planner (and playbooks) only.
    #[default]
    Rules,
    /// The LLM planner only: a goal it cannot plan is refused with the
    /// validation errors.
    Llm,
    /// The LLM planner, then the rules planner when it gives no valid plan.
    LlmThenRules,
    /// The rules planner, then the LLM planner for goals it cannot read.
    RulesThenLlm,
}

impl PlannerMode {
    /// The mode as its config value (a metric label).
    pub fn label(self) -> &'static str {
        match self {
            Self::Rules => "rules",
            Self::Llm => "llm",
            Self::LlmThenRules => "llm_then_rules",
            Self::RulesThenLlm => "rules_then_llm",
        }
    }
}

/// Checked once, at load: a value that makes no sense stops the process
/// (exit 64) with its key named, before anything binds. Code that uses a
/// value trusts it; nothing is clamped at the point of use.
impl Validate for OrchestratorConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        let p = &self.planning;
        if p.mode != PlannerMode::Rules && !p.llm.enabled() {
            return Err(invalid(
                "planning.llm.base_url",
                "planning.llm.base_url and planning.llm.model must be set when planning.mode is not rules",
            ));
        }
        if p.llm_tries == 0 {
            return Err(invalid("planning.llm_tries", "must be at least 1"));
        }
        positive("planning.llm.timeout_ms", p.llm.timeout)?;
        positive("planning.llm.connect_timeout_ms", p.llm.connect_timeout)?;
        let d = &self.discovery;
        positive("discovery.dns_refresh_ms", d.dns_refresh)?;
        positive("discovery.health_check_ms", d.health_check)?;
        positive("discovery.connect_timeout_ms", d.connect_timeout)?;
        positive("discovery.lease_min_ms", d.lease_min)?;
        for (i, peer) in d.a2a.iter().enumerate() {
            let ok = peer.url.starts_with("http://") || peer.url.starts_with("https://");
            if !ok {
                return Err(invalid(
                    &format!("discovery.a2a[{i}].url"),
                    "must be an http:// or https:// URL",
                ));
            }
        }
        if let Some(url) = self
            .a2a
            .public_url
            .as_deref()
            .or(self.a2a.grpc_url.as_deref())
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid(
                "a2a.public_url",
                "must be an http:// or https:// URL",
            ));
        }
        if d.lease_max < d.lease_min {
            return Err(invalid(
                "discovery.lease_max_ms",
                "must be at least discovery.lease_min_ms",
            ));
        }
        if !(d.lease_min..=d.lease_max).contains(&d.lease_default) {
            return Err(invalid(
                "discovery.lease_default_ms",
                "must lie between discovery.lease_min_ms and discovery.lease_max_ms",
            ));
        }
        let r = &self.routing;
        positive("routing.eject_after_failures", r.eject_after_failures)?;
        positive("routing.error_window", r.error_window)?;
        positive("routing.max_queued_steps", r.max_queued_steps)?;
        let e = &self.execution;
        positive("execution.step_deadline_ms", e.step_deadline)?;
        positive("execution.run_deadline_ms", e.run_deadline)?;
        if e.max_run_deadline < e.run_deadline {
            return Err(invalid(
                "execution.max_run_deadline_ms",
                "must be at least execution.run_deadline_ms",
            ));
        }
        positive("execution.max_attempts", e.max_attempts)?;
        if e.max_attempts_limit < e.max_attempts {
            return Err(invalid(
                "execution.max_attempts_limit",
                "must be at least execution.max_attempts",
            ));
        }
        if e.backoff_max < e.backoff_base {
            return Err(invalid(
                "execution.backoff_max_ms",
                "must be at least execution.backoff_base_ms",
            ));
        }
        positive("execution.heartbeat_ms", e.heartbeat)?;
        positive("execution.answer_timeout_ms", e.answer_timeout)?;
        // A lease of one interval is lost to the first late heartbeat.
        if e.heartbeat_lease_factor < 2 {
            return Err(invalid(
                "execution.heartbeat_lease_factor",
                "must be at least 2: the heartbeat lease must outlast one late heartbeat",
            ));
        }
        positive("execution.max_steps", e.max_steps)?;
        positive("execution.max_active_runs", e.max_active_runs)?;
        positive(
            "execution.admission_retry_after_ms",
            e.admission_retry_after,
        )?;
        positive("execution.report_chunk_bytes", e.report_chunk_bytes)?;
        if e.report_chunk_bytes > self.server.max_message_bytes / 2 {
            return Err(invalid(
                "execution.report_chunk_bytes",
                "must be at most half of server.max_message_bytes",
            ));
        }
        positive("execution.max_artifact_bytes", e.max_artifact_bytes)?;
        positive("store.retained_runs", self.store.retained_runs)?;
        positive("store.retained_bytes", self.store.retained_bytes)?;
        let st = &self.store;
        if st.url.is_some() && st.path.is_some() {
            return Err(invalid(
                "store.url",
                "set store.url (a shared PostgreSQL store) or store.path (an SQLite file), not both",
            ));
        }
        if let Some(url) = &st.url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "store.url",
                "must be a PostgreSQL URL: postgres://user:password@host:5432/database",
            ));
        }
        if st.lease < Duration::from_millis(400) {
            return Err(invalid("store.lease_ms", "must be at least 400"));
        }
        positive("store.poll_ms", st.poll)?;
        positive("store.pool_size", st.pool_size)?;
        positive("store.retained_stored_bytes", st.retained_stored_bytes)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(key: &str, value: &str) -> String {
        let env = vec![(
            format!("AGENTMESH_{}", key.replace('.', "__").to_uppercase()),
            value.to_string(),
        )];
        let loaded = agentmesh_runtime::config::load(
            &OrchestratorConfig::default(),
            None,
            env,
            toml::Table::new(),
        );
        match loaded {
            Err(ConfigError::Invalid { key: k, message }) => {
                assert_eq!(k, key);
                message
            }
            other => panic!("{key}={value}: {other:?}"),
        }
    }

    #[test]
    fn the_defaults_are_valid() {
        assert!(OrchestratorConfig::default().validate().is_ok());
    }

    #[test]
    fn nonsense_is_refused_with_its_key() {
        refused("execution.heartbeat_ms", "0");
        assert!(refused("execution.heartbeat_lease_factor", "1").contains("late heartbeat"));
        refused("execution.max_attempts", "0");
        refused("execution.backoff_max_ms", "10");
        refused("execution.max_run_deadline_ms", "1000");
        refused("discovery.lease_default_ms", "100");
        refused("routing.eject_after_failures", "0");
        refused("store.retained_runs", "0");
        refused("store.url", "mysql://x");
        refused("store.lease_ms", "100");
    }

    #[test]
    fn durations_stay_milliseconds_on_disk() {
        let table = toml::Table::try_from(OrchestratorConfig::default()).unwrap();
        assert_eq!(table["execution"]["heartbeat_ms"].as_integer(), Some(1_000));
        assert_eq!(
            table["discovery"]["lease_max_ms"].as_integer(),
            Some(300_000)
        );
    }
}
