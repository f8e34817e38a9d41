//! Typed configuration, layered: defaults < TOML file < `AGENTMESH_*`
//! environment < command-line flags.
//!
//! The binary reads the environment and the flags once in `main` and hands
//! them to [`load`]; library code never reads the environment itself.
//!
//! Environment variables map to keys by lower-casing and splitting on `__`:
//! `AGENTMESH_SERVER__LISTEN=0.0.0.0:50051` sets `server.listen`. Values are
//! read as TOML scalars when they parse as one (`42`, `true`, `["a"]`), as
//! strings otherwise.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_with::{DurationMilliSeconds, serde_as};
use toml::{Table, Value};

/// Prefix of environment variables read by [`load`].
pub const ENV_PREFIX: &str = "AGENTMESH_";

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML file could not be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML file is not valid TOML.
    #[error("config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: Box<toml::de::Error>,
    },
    /// The merged configuration does not fit the typed config (an unknown
    /// key, a value of the wrong type).
    #[error("invalid configuration: {0}")]
    Type(Box<toml::de::Error>),
    /// A value of the right type that makes no sense (a zero interval, a
    /// lease shorter than the heartbeat it covers).
    #[error("invalid configuration: {key}: {message}")]
    Invalid {
        /// The key, dotted as in the file: `execution.heartbeat_ms`.
        key: String,
        /// What is wrong with it, and what would do.
        message: String,
    },
    /// The defaults could not be represented (a bug).
    #[error("defaults cannot be represented as TOML: {0}")]
    Defaults(#[from] toml::ser::Error),
}

/// A configuration that can tell whether its values make sense. Checked
/// once, right after loading; code that uses a value trusts it.
pub trait Validate {
    /// `Err` names the first key whose value is refused.
    fn validate(&self) -> Result<(), ConfigError>;
}

/// A refused key.
pub fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

/// Refuses `value` at `key` when it is zero.
pub fn positive<T: Default + PartialEq>(key: &str, value: T) -> Result<(), ConfigError> {
    if value == T::default() {
        return Err(invalid(key, "must be greater than zero"));
    }
    Ok(())
}

/// Settings every agentmesh gRPC server shares.
#[serde_as]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on. Loopback by default; `0.0.0.0:PORT` in
    /// containers so that Kubernetes probes reach the pod IP.
    pub listen: SocketAddr,
    /// Time limit for producing a response (headers) of any RPC.
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(rename = "request_timeout_ms")]
    pub request_timeout: Duration,
    /// Concurrent requests per connection; more wait.
    pub concurrency_per_connection: usize,
    /// HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// Largest message decoded or encoded, in bytes.
    pub max_message_bytes: usize,
    /// Tasks run at once (the card's max_concurrency).
    pub max_concurrent_tasks: usize,
    /// Longest a task may run when the caller sets no deadline.
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(rename = "max_task_ms")]
    pub max_task: Duration,
    /// Heartbeat interval when the caller sets none.
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(rename = "heartbeat_ms")]
    pub heartbeat: Duration,
    /// Artifact chunk size in bytes.
    pub artifact_chunk_bytes: usize,
    /// Completed tasks remembered for idempotent repeats.
    pub idempotency_entries: usize,
    /// Encoded bytes of the completed tasks' events remembered for
    /// idempotent repeats (outputs and artifacts included); beyond it the
    /// oldest are forgotten (a repeat then runs the task again).
    pub idempotency_bytes: u64,
    /// How long a completed task is remembered for idempotent repeats.
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(rename = "idempotency_ttl_ms")]
    pub idempotency_ttl: Duration,
    /// After SIGTERM: how long in-flight work may run before it is cancelled.
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(rename = "shutdown_grace_ms")]
    pub shutdown_grace: Duration,
    /// HTTP/2 keepalive ping interval.
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(rename = "keepalive_ms")]
    pub keepalive: Duration,
    /// Fault injection for resilience drills: every task waits this long
    /// (heartbeating, cancellable) before the agent starts it. 0 = off.
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(rename = "fault_delay_ms")]
    pub fault_delay: Duration,
    /// Fault injection for drills: task attempts numbered up to this fail
    /// at once with a retryable AGENT_FAILED, so that the orchestrator's
    /// retries can be watched (1: every first attempt fails). 0 = off.
    pub fault_fail_attempts: u32,
    /// Register with an orchestrator (self-registration with a lease).
    pub registration: Option<crate::registration::RegistrationConfig>,
    /// TLS (and, with `client_ca`, mutual TLS) on `listen`. Unset:
    /// plaintext.
    pub tls: Option<crate::tls::ServerTls>,
    /// A second, plaintext listener serving only `grpc.health.v1.Health`
    /// (the same statuses), for probes that cannot speak TLS, such as the
    /// kubelet's gRPC probes. Unset: none.
    pub health_listen: Option<SocketAddr>,
    /// Authentication of callers (bearer tokens, JWTs, client
    /// certificates). Unset: calls are not authenticated.
    pub auth: Option<crate::auth::AuthConfig>,
}

impl ServerConfig {
    /// Defaults with the given listen port on loopback.
    pub fn on_port(port: u16) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            ..Self::default()
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            request_timeout: Duration::from_millis(30_000),
            concurrency_per_connection: 256,
            max_concurrent_streams: 512,
            max_message_bytes: 4 * 1024 * 1024,
            max_concurrent_tasks: 16,
            max_task: Duration::from_millis(600_000),
            heartbeat: Duration::from_millis(2_000),
            artifact_chunk_bytes: 64 * 1024,
            idempotency_entries: 512,
            idempotency_bytes: 16 * 1024 * 1024,
            idempotency_ttl: Duration::from_millis(600_000),
            shutdown_grace: Duration::from_millis(20_000),
            keepalive: Duration::from_millis(30_000),
            fault_delay: Duration::from_millis(0),
            fault_fail_attempts: 0,
            registration: None,
            tls: None,
            health_listen: None,
            auth: None,
        }
    }
}

impl Validate for ServerConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        positive("server.request_timeout_ms", self.request_timeout)?;
        positive(
            "server.concurrency_per_connection",
            self.concurrency_per_connection,
        )?;
        positive("server.max_concurrent_streams", self.max_concurrent_streams)?;
        positive("server.max_message_bytes", self.max_message_bytes)?;
        positive("server.max_concurrent_tasks", self.max_concurrent_tasks)?;
        positive("server.max_task_ms", self.max_task)?;
        positive("server.heartbeat_ms", self.heartbeat)?;
        positive("server.artifact_chunk_bytes", self.artifact_chunk_bytes)?;
        positive("server.keepalive_ms", self.keepalive)?;
        // A chunk rides in one message with its envelope.
        if self.artifact_chunk_bytes > self.max_message_bytes / 2 {
            return Err(invalid(
                "server.artifact_chunk_bytes",
                format!(
                    "{} does not fit in a message with room to spare; at most half of server.max_message_bytes ({})",
                    self.artifact_chunk_bytes, self.max_message_bytes
                ),
            ));
        }
        if let Some((key, problem)) = self.auth.as_ref().and_then(|a| a.problem()) {
            return Err(invalid(key, problem));
        }
        if let Some(reg) = &self.registration {
            // Renewed at a third of the lease: shorter would renew faster
            // than any heartbeat the orchestrator asks of tasks.
            if reg.lease < Duration::from_millis(300) {
                return Err(invalid(
                    "server.registration.lease_ms",
                    "must be at least 300 ms (the lease is renewed at a third of it)",
                ));
            }
        }
        Ok(())
    }
}

/// Logs, metrics and traces.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// A tracing filter, e.g. `info` or `agentmesh_runtime=debug,info`.
    pub log_filter: String,
    /// Prometheus metrics on their own HTTP listener. Unset: none.
    pub metrics: Option<crate::metrics::MetricsConfig>,
    /// Spans exported over OTLP/gRPC. Unset: none (trace context is still
    /// carried on, and logged).
    pub otlp: Option<crate::telemetry::otlp::OtlpConfig>,
}

impl Validate for TelemetryConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.otlp.as_ref().map_or(Ok(()), |o| o.validate())
    }
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Text,
            log_filter: "info".into(),
            metrics: None,
            otlp: None,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags every server binary takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CommonArgs {
    /// TOML config file.
    #[arg(long, short = 'c', env = "AGENTMESH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on (overrides server.listen).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Log format (overrides telemetry.log_format).
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter (overrides telemetry.log_filter), e.g. `debug`.
    #[arg(long)]
    pub log_filter: Option<String>,
}

impl CommonArgs {
    /// The flags as config overrides.
    pub fn overrides(&self) -> Table {
        let mut table = Table::new();
        if let Some(listen) = self.listen {
            set(
                &mut table,
                &["server", "listen"],
                Value::String(listen.to_string()),
            );
        }
        if let Some(format) = self.log_format {
            let name = match format {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            };
            set(
                &mut table,
                &["telemetry", "log_format"],
                Value::String(name.into()),
            );
        }
        if let Some(filter) = &self.log_filter {
            set(
                &mut table,
                &["telemetry", "log_filter"],
                Value::String(filter.clone()),
            );
        }
        table
    }
}

/// Sets `path` in `table` to `value`, creating tables on the way.
pub fn set(table: &mut Table, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = table;
    for key in parents {
        let entry = cur
            .entry((*key).to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        let Value::Table(next) = entry else {
            return;
        };
        cur = next;
    }
    cur.insert((*last).to_string(), value);
}

/// Loads `T`: `defaults`, then the file, then `env`, then `overrides`.
///
/// The result is validated ([`Validate`]) before it is returned.
pub fn load<T: Serialize + DeserializeOwned + Validate>(
    defaults: &T,
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: Table,
) -> Result<T, ConfigError> {
    let mut merged = Table::try_from(defaults)?;
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let table: Table = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        merge(&mut merged, table);
    }
    merge(&mut merged, env_table(env));
    merge(&mut merged, overrides);
    let cfg: T = Value::Table(merged)
        .try_into()
        .map_err(|e| ConfigError::Type(Box::new(e)))?;
    cfg.validate()?;
    Ok(cfg)
}

fn env_table(env: impl IntoIterator<Item = (String, String)>) -> Table {
    let mut table = Table::new();
    for (key, raw) in env {
        let Some(rest) = key.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        // AGENTMESH_CONFIG names the file, it is not a key.
        if rest == "CONFIG" || rest.is_empty() {
            continue;
        }
        let lower = rest.to_ascii_lowercase();
        let path: Vec<&str> = lower.split("__").collect();
        set(&mut table, &path, scalar(&raw));
    }
    table
}

fn scalar(raw: &str) -> Value {
    toml::from_str::<Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_string()))
}

fn merge(base: &mut Table, over: Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq, Default)]
    #[serde(default, deny_unknown_fields)]
    struct Example {
        server: ServerConfig,
        telemetry: TelemetryConfig,
    }

    impl Validate for Example {
        fn validate(&self) -> Result<(), ConfigError> {
            self.server.validate()
        }
    }

    fn refused(key: &str, value: &str) -> ConfigError {
        let env = vec![(
            format!("AGENTMESH_{}", key.replace('.', "__").to_uppercase()),
            value.to_string(),
        )];
        load(&Example::default(), None, env, Table::new()).unwrap_err()
    }

    #[test]
    fn nonsense_values_are_refused_with_their_key() {
        for (key, value) in [
            ("server.heartbeat_ms", "0"),
            ("server.max_concurrent_tasks", "0"),
            ("server.request_timeout_ms", "0"),
            ("server.artifact_chunk_bytes", "4194304"),
        ] {
            let err = refused(key, value);
            assert!(
                matches!(&err, ConfigError::Invalid { key: k, .. } if k == key),
                "{key}={value}: {err}"
            );
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[server]\nlisten = \"127.0.0.1:7000\"\nmax_concurrent_tasks = 3\n[telemetry]\nlog_filter = \"debug\"\n",
        )
        .unwrap();
        let defaults = Example::default();
        let env = vec![
            (
                "AGENTMESH_SERVER__MAX_CONCURRENT_TASKS".to_string(),
                "5".to_string(),
            ),
            (
                "AGENTMESH_TELEMETRY__LOG_FORMAT".to_string(),
                "json".to_string(),
            ),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let args = CommonArgs {
            listen: Some("127.0.0.1:9000".parse().unwrap()),
            ..CommonArgs::default()
        };
        let cfg: Example = load(&defaults, Some(&file), env, args.overrides()).unwrap();
        assert_eq!(cfg.server.listen.port(), 9000, "flag beats file");
        assert_eq!(cfg.server.max_concurrent_tasks, 5, "env beats file");
        assert_eq!(cfg.telemetry.log_filter, "debug", "file beats default");
        assert_eq!(cfg.telemetry.log_format, LogFormat::Json);
        assert_eq!(
            cfg.server.heartbeat,
            Duration::from_secs(2),
            "default stays"
        );
    }

    #[test]
    fn unknown_keys_and_bad_types_are_errors() {
        let defaults = Example::default();
        let env = vec![("AGENTMESH_SERVER__LISTN".to_string(), "x".to_string())];
        let err = load(&defaults, None, env, Table::new()).unwrap_err();
        assert!(err.to_string().contains("listn"), "{err}");
        let env = vec![(
            "AGENTMESH_SERVER__HEARTBEAT_MS".to_string(),
            "soon".to_string(),
        )];
        assert!(load(&defaults, None, env, Table::new()).is_err());
        let missing = load(
            &defaults,
            Some(Path::new("/nonexistent/x.toml")),
            vec![],
            Table::new(),
        );
        assert!(matches!(missing, Err(ConfigError::Read { .. })));
    }
}
