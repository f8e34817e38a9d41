//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// meshctl: the agentmesh command-line client, local mesh launcher and demo.
///
/// Exit codes: 0 success; 1 failure (the run failed, or the server
/// refused); 2 partial result (best-effort run with gaps); 64 bad usage or
/// an invalid request (e.g. a goal that cannot be understood); 69 the
/// orchestrator (or, for `conformance`, the agent) cannot be reached; 75
/// at capacity, try again later; 77 no credential, a refused one, or not
/// allowed; 130
/// canceled with Ctrl-C. `conformance` exits 1 when a check fails.
#[derive(Debug, Parser)]
#[command(name = "meshctl", version, about, long_about = None)]
pub struct Cli {
    /// Orchestrator address (host:port).
    #[arg(
        long,
        global = true,
        env = "AGENTMESH_ORCHESTRATOR",
        default_value = "127.0.0.1:50050"
    )]
    pub orchestrator: String,
    /// Bearer token presented on every call, for an orchestrator (or agent)
    /// with authentication on (`server.auth`).
    #[arg(
        long,
        global = true,
        env = "AGENTMESH_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// Machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// TLS towards the orchestrator (or the agent, for `conformance`).
    #[command(flatten)]
    pub tls: TlsArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// TLS options. Any of them (or an `https://` address) turns TLS on.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// Connect with TLS, trusting the system's roots unless --tls-ca is given.
    #[arg(long, global = true)]
    pub tls: bool,
    /// CA the server's certificate must chain to (PEM).
    #[arg(long, global = true, env = "AGENTMESH_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate, for servers that require mutual TLS (PEM).
    #[arg(
        long,
        global = true,
        env = "AGENTMESH_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(
        long,
        global = true,
        env = "AGENTMESH_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Name the server's certificate is checked against, when it is not
    /// the host in the address.
    #[arg(long, global = true, value_name = "NAME")]
    pub tls_domain: Option<String>,
}

/// Fan-in policy of a run.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FanIn {
    /// The run fails when a step fails.
    AllRequired,
    /// The run completes with the failed parts marked missing.
    BestEffort,
}

/// Options of a run.
#[derive(Debug, Clone, clap::Args)]
pub struct RunOpts {
    /// Folder the report is written to.
    #[arg(long, default_value = "agentmesh-report")]
    pub out: PathBuf,
    /// What a failed step does to the run.
    #[arg(long, value_enum, default_value = "all-required")]
    pub fan_in: FanIn,
    /// End-to-end deadline of the run, in seconds.
    #[arg(long)]
    pub deadline: Option<u64>,
}

/// Where and how the local mesh runs.
#[derive(Debug, Clone, clap::Args)]
pub struct MeshOpts {
    /// Working folder of the local mesh (data, logs).
    #[arg(long, default_value = "agentmesh-local")]
    pub dir: PathBuf,
    /// Orchestrator port; the data, analytics and summary agents take the
    /// next three, extra analytics replicas the ones after, then the
    /// forecast (Python) and quality (TypeScript) agents; the A2A listener
    /// (JSON-RPC and the agent card) takes this + 20.
    #[arg(long, default_value_t = 50050)]
    pub base_port: u16,
    /// Analytics agent replicas.
    #[arg(long, default_value_t = 1)]
    pub analytics_replicas: u16,
    /// Start only the Rust agents, not the forecast (Python) and quality
    /// (TypeScript) agents.
    #[arg(long)]
    pub rust_only: bool,
    /// The repository checkout holding `services/forecast-py` and
    /// `services/quality-ts` (default: the current folder or one above it,
    /// else the checkout meshctl was built from).
    #[arg(long, env = "AGENTMESH_HOME")]
    pub home: Option<PathBuf>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a goal: live progress, then the report written to --out.
    Run {
        /// The goal in plain language.
        goal: String,
        /// Run options.
        #[command(flatten)]
        opts: RunOpts,
    },
    /// Show the plan for a goal and who would serve each step.
    Plan {
        /// The goal in plain language.
        goal: String,
    },
    /// List the agents the orchestrator knows.
    Agents,
    /// List recent runs.
    Runs {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Only runs waiting for a person (a question or an approval), with
        /// what they wait for.
        #[arg(long)]
        waiting: bool,
    },
    /// Answer a step's question: the answer as a JSON object (or @FILE),
    /// checked against the question's schema; `--text` for a question
    /// whose answer is {"text": ...}.
    Answer {
        /// Run id.
        run: String,
        /// The waiting step.
        step: String,
        /// The answer: a JSON object, or @FILE holding one.
        #[arg(required_unless_present = "text", conflicts_with = "text")]
        answer: Option<String>,
        /// Answer {"text": TEXT}.
        #[arg(long)]
        text: Option<String>,
    },
    /// Approve a step waiting at an approval gate: the run goes on.
    Approve {
        /// Run id.
        run: String,
        /// The gate step.
        step: String,
        /// Why, for the record.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Reject a step waiting at an approval gate: the run ends REJECTED.
    Reject {
        /// Run id.
        run: String,
        /// The gate step.
        step: String,
        /// Why, for the record (shown as the run's end).
        #[arg(long)]
        reason: String,
    },
    /// Show one run.
    Get {
        /// Run id.
        run: String,
    },
    /// Follow a run's events, reconnecting after a dropped connection.
    Watch {
        /// Run id.
        run: String,
        /// Continue after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Folder the report is written to when the run finishes.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Cancel a run.
    Cancel {
        /// Run id.
        run: String,
    },
    /// Check an agent (in any gRPC language) against the AgentService
    /// contract: health, reflection, its card, task streams, errors,
    /// cancel, idempotency and deadlines. One line per check; exit 1 if any
    /// fails.
    Conformance {
        /// The agent's address (host:port).
        agent: String,
        /// A valid input for a skill, as SKILL=JSON or SKILL=@FILE
        /// (repeatable). Without one, the first example on the card that is
        /// a JSON object the input schema accepts is used, then `{}`.
        #[arg(long = "input", value_name = "SKILL=JSON|@FILE")]
        inputs: Vec<String>,
        /// Seconds each task may take (at least 1).
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
        task_timeout: u64,
    },
    /// Start the orchestrator and the three agents as separate local
    /// processes; stop them with Ctrl-C.
    Up {
        /// Mesh options.
        #[command(flatten)]
        mesh: MeshOpts,
    },
    /// `up`, run the Q2 report goal, write the report, shut down.
    Demo {
        /// Mesh options.
        #[command(flatten)]
        mesh: MeshOpts,
        /// Folder the report is written to.
        #[arg(long, default_value = "agentmesh-report")]
        out: PathBuf,
    },
    /// Run one service in this process (used by `up`).
    #[command(hide = true)]
    Serve {
        /// data, analytics, summary or orchestrator.
        service: String,
        /// The service's own arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}
