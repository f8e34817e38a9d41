//! The agents in other languages shipped in the repository, started as real
//! processes through their own start scripts (`services/*/run`), as a user
//! starts them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use agentmesh_proto::v1::AGENT_SERVICE_NAME;

use crate::{Child, spawn_logged, wait_serving};

/// An agent in another language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polyglot {
    /// `services/forecast-py`: `forecast.revenue`, Python.
    Forecast,
    /// `services/quality-ts`: `quality.check`, TypeScript.
    Quality,
}

impl Polyglot {
    /// The agent's folder.
    pub fn dir(self) -> PathBuf {
        let name = match self {
            Self::Forecast => "forecast-py",
            Self::Quality => "quality-ts",
        };
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../services")
            .join(name)
    }

    /// Its start script.
    pub fn script(self) -> PathBuf {
        self.dir().join("run")
    }

    /// Runs `run --setup` (install the pinned dependencies, generate or
    /// compile) once per test process, so that parallel tests do not
    /// install into the same folder at once.
    fn setup(self) {
        static FORECAST: OnceLock<()> = OnceLock::new();
        static QUALITY: OnceLock<()> = OnceLock::new();
        let once = match self {
            Self::Forecast => &FORECAST,
            Self::Quality => &QUALITY,
        };
        once.get_or_init(|| crate::run_setup(&self.script(), "Python 3 and Node.js"));
    }
}

/// Starts `agent` on `listen` with `args` and waits until it is SERVING.
/// Its log goes to `log` (appended), so a failing test can show it.
pub async fn start(
    agent: Polyglot,
    listen: SocketAddr,
    args: &[String],
    log: &std::path::Path,
) -> Child {
    agent.setup();
    let mut cmd = Command::new(agent.script());
    cmd.arg("--listen").arg(listen.to_string()).args(args);
    let child = spawn_logged(&mut cmd, log);
    wait_serving(listen, AGENT_SERVICE_NAME, Duration::from_secs(120)).await;
    child
}
