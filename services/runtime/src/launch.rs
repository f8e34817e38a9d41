//! The one entry of every server binary (the agents and the orchestrator):
//! parse the flags, load and validate the configuration (defaults < TOML
//! file < `AGENTMESH_*` environment < flags), start logging, serve until
//! SIGTERM/SIGINT. A binary's `main` is one call to [`main`]; `meshctl up`
//! starts the same services in one process through [`launch`].
//!
//! Exit codes: 0 after a clean shutdown, 64 (EX_USAGE) for bad flags or a
//! bad configuration, before anything binds, with the key named; 1 when the
//! service fails.

use std::ffi::OsString;
use std::future::Future;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches};
use serde::Serialize;
use serde::de::DeserializeOwned;
use toml::Table;

use crate::config::{self, CommonArgs, ConfigError, TelemetryConfig, Validate};

/// EX_USAGE: the command was used wrongly (flags or configuration).
pub const EXIT_USAGE: u8 = 64;

/// A server binary.
pub trait Service {
    /// Its name on the command line, e.g. `data-agent`.
    const NAME: &'static str;
    /// One line for `--help`.
    const ABOUT: &'static str;
    /// Flags of its own, beside [`CommonArgs`].
    type Flags: Args + Clone + Send;
    /// Its typed configuration.
    type Config: Serialize + DeserializeOwned + Validate + Default + Send;
    /// Why it stopped with an error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Its own flags as config overrides (added to the common ones).
    fn overrides(_flags: &Self::Flags, _table: &mut Table) {}

    /// Where its logging settings are.
    fn telemetry(cfg: &Self::Config) -> &TelemetryConfig;

    /// Registers its metric families (an agent's tasks by default).
    fn register_metrics(exporter: &mut crate::metrics::Exporter) {
        exporter.register_once("agent-tasks", crate::metrics::tasks::register);
    }

    /// Serves until SIGTERM/SIGINT (see [`crate::shutdown::signal`]).
    fn serve(
        cfg: Self::Config,
        flags: Self::Flags,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// No flags beyond the common ones.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct NoFlags {}

/// A service's command line.
#[derive(Debug, Clone)]
pub struct Cli<F> {
    /// Flags every server takes.
    pub common: CommonArgs,
    /// The service's own.
    pub flags: F,
}

#[derive(clap::Parser)]
struct Parsed<F: Args> {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    flags: F,
}

/// Parses `argv` (program name first) as `S`'s command line.
pub fn parse<S: Service>(
    argv: impl IntoIterator<Item = impl Into<OsString> + Clone>,
) -> Result<Cli<S::Flags>, clap::Error> {
    let matches = Parsed::<S::Flags>::command()
        .name(S::NAME)
        .about(S::ABOUT)
        .version(env!("CARGO_PKG_VERSION"))
        .try_get_matches_from(argv)?;
    let parsed = Parsed::<S::Flags>::from_arg_matches(&matches)?;
    Ok(Cli {
        common: parsed.common,
        flags: parsed.flags,
    })
}

/// Why a service did not run to a clean shutdown.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError<E: std::error::Error + 'static> {
    /// The configuration was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The service failed.
    #[error(transparent)]
    Service(E),
    /// The span exporter could not be built.
    #[error(transparent)]
    Otlp(#[from] crate::telemetry::otlp::OtlpError),
    /// The metrics listener could not be bound.
    #[error("telemetry.metrics.listen {addr}: {source}")]
    Metrics {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl<E: std::error::Error + 'static> LaunchError<E> {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) => EXIT_USAGE,
            Self::Service(_) | Self::Metrics { .. } | Self::Otlp(_) => 1,
        }
    }
}

/// Loads `S`'s configuration from its command line and the environment.
pub fn configure<S: Service>(
    cli: &Cli<S::Flags>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<S::Config, ConfigError> {
    let mut overrides = cli.common.overrides();
    S::overrides(&cli.flags, &mut overrides);
    let cfg = config::load(
        &S::Config::default(),
        cli.common.config.as_deref(),
        env,
        overrides,
    )?;
    S::telemetry(&cfg).validate()?;
    Ok(cfg)
}

/// Configures `S`, starts logging and serves until SIGTERM/SIGINT.
pub async fn launch<S: Service>(cli: Cli<S::Flags>) -> Result<(), LaunchError<S::Error>> {
    let cfg = configure::<S>(&cli, std::env::vars())?;
    let telemetry = S::telemetry(&cfg);
    let telemetry_guard = crate::telemetry::init(telemetry, S::NAME)?;
    let stop_metrics = tokio_util::sync::CancellationToken::new();
    let _stop_metrics = stop_metrics.clone().drop_guard();
    if let Some(metrics) = &telemetry.metrics {
        S::register_metrics(&mut crate::metrics::exporter().lock());
        crate::metrics::start(metrics, stop_metrics)
            .await
            .map_err(|source| LaunchError::Metrics {
                addr: metrics.listen,
                source,
            })?;
    }
    let served = S::serve(cfg, cli.flags).await.map_err(LaunchError::Service);
    telemetry_guard.shutdown().await;
    served
}

/// A server binary's whole `main`.
pub fn main<S: Service>() -> ExitCode {
    let cli = match parse::<S>(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{}: cannot start the async runtime: {e}", S::NAME);
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(launch::<S>(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: {e}", S::NAME);
            ExitCode::from(e.exit_code())
        }
    }
}
