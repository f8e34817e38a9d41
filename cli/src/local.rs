//! The local mesh: the orchestrator and the agents, each a separate
//! process (this executable's hidden `serve` subcommand, so nothing else
//! has to be built), each a real gRPC server on its own loopback port.
//! Started in order, waited for until SERVING, stopped gracefully (SIGTERM,
//! then SIGKILL after a grace period); children are killed if `meshctl`
//! itself goes away.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use agentmesh_proto::v1::{AGENT_SERVICE_NAME, ORCHESTRATOR_SERVICE_NAME};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::args::MeshOpts;
use crate::client::{CliError, Exit};

/// How long a service may take to become SERVING (the data agent generates
/// its database on first start).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a service may take to stop after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// One running service.
pub struct Service {
    /// Display name, e.g. `analytics-2`.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its log file.
    pub log: PathBuf,
    child: Child,
}

impl Service {
    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// An agent in another language, shipped in the repository, that the
/// local mesh starts when its runtime is installed.
struct Polyglot {
    /// Service name.
    name: &'static str,
    /// Its start script, relative to the checkout.
    script: &'static str,
    /// The program its script needs on PATH, and what it is.
    needs: &'static [(&'static str, &'static str)],
}

const POLYGLOT: [Polyglot; 2] = [
    Polyglot {
        name: "forecast",
        script: "services/forecast-py/run",
        needs: &[("python3", "Python 3.10+")],
    },
    Polyglot {
        name: "quality",
        script: "services/quality-ts/run",
        needs: &[("node", "Node.js 20+"), ("npm", "npm")],
    },
];

/// The checkout holding the agents in other languages: `--home`, else the
/// current folder or one above it, else the checkout this binary was built
/// from.
fn checkout(given: Option<&Path>) -> Option<PathBuf> {
    let has_agents = |p: &Path| p.join(POLYGLOT[0].script).is_file();
    if let Some(home) = given {
        return Some(home.to_path_buf());
    }
    let cwd = std::env::current_dir().ok();
    cwd.iter()
        .flat_map(|d| d.ancestors())
        .find(|d| has_agents(d))
        .map(Path::to_path_buf)
        .or_else(|| {
            let built = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
            has_agents(built).then(|| built.to_path_buf())
        })
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// The start script of `agent`, or why it cannot start here.
fn script_of(agent: &Polyglot, home: Option<&Path>) -> Result<PathBuf, String> {
    let Some(home) = home else {
        return Err(format!(
            "{} not found (run meshctl inside the repository, or pass --home)",
            agent.script
        ));
    };
    let script = home.join(agent.script);
    if !script.is_file() {
        return Err(format!("{} not found", script.display()));
    }
    if let Some((program, what)) = agent.needs.iter().find(|(p, _)| !on_path(p)) {
        return Err(format!("{program} not found; install {what} to run it"));
    }
    Ok(script)
}

/// The running mesh.
pub struct LocalMesh {
    /// Services in start order (agents first, orchestrator last).
    pub services: Vec<Service>,
    a2a: Option<SocketAddr>,
    viewer: Option<SocketAddr>,
}

/// The A2A listener's port: `--base-port` + this (50070 by default).
const A2A_OFFSET: u16 = 20;
/// The run viewer's port: `--base-port` + this (50071 by default).
const VIEWER_OFFSET: u16 = 21;

fn usage(message: String) -> CliError {
    CliError::new(Exit::Failed, message)
}

/// How a service is started: this executable's `serve`, or an agent's own
/// start script (the agents in other languages).
enum Program<'a> {
    /// `meshctl serve <service>`.
    Builtin(&'a str),
    /// A script taking `--listen ADDR`.
    Script(PathBuf),
}

async fn spawn(
    dir: &Path,
    name: &str,
    program: Program<'_>,
    addr: SocketAddr,
    extra: &[String],
) -> Result<Service, CliError> {
    let mut command = match program {
        Program::Builtin(service) => {
            let exe = std::env::current_exe().map_err(|e| usage(format!("own executable: {e}")))?;
            let mut c = Command::new(exe);
            c.arg("serve").arg(service);
            c
        }
        Program::Script(path) => {
            let mut c = Command::new(path);
            // It stops when meshctl goes away, as the built-in services do.
            c.env("AGENTMESH_EXIT_WITH_PARENT", "1");
            c
        }
    };
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| usage(format!("{}: {e}", logs.display())))?;
    let log = logs.join(format!("{name}.log"));
    let file = std::fs::File::create(&log).map_err(|e| usage(format!("{}: {e}", log.display())))?;
    let err = file
        .try_clone()
        .map_err(|e| usage(format!("{}: {e}", log.display())))?;
    let child = command
        .arg("--listen")
        .arg(addr.to_string())
        .args(extra)
        .current_dir(dir)
        .env_remove("AGENTMESH_CONFIG")
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| usage(format!("starting {name}: {e}")))?;
    Ok(Service {
        name: name.to_string(),
        addr,
        log,
        child,
    })
}

/// Waits until `svc` reports `health_name` SERVING, failing early if the
/// process exits.
async fn wait_serving(svc: &mut Service, health_name: &str) -> Result<(), CliError> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = svc.child.try_wait() {
            return Err(usage(format!(
                "{} exited during start ({status}); see {}",
                svc.name,
                svc.log.display()
            )));
        }
        if let Ok(endpoint) = Channel::from_shared(format!("http://{}", svc.addr))
            && let Ok(channel) = endpoint
                .connect_timeout(Duration::from_millis(500))
                .connect()
                .await
        {
            let mut health = HealthClient::new(channel);
            let req = HealthCheckRequest {
                service: health_name.to_string(),
            };
            if let Ok(resp) = health.check(req).await
                && resp.get_ref().status == 1
            {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(usage(format!(
                "{} did not become SERVING within {START_TIMEOUT:?}; see {}",
                svc.name,
                svc.log.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl LocalMesh {
    /// Starts the agents, then the orchestrator pointed at them.
    pub async fn start(opts: &MeshOpts) -> Result<Self, CliError> {
        std::fs::create_dir_all(&opts.dir)
            .map_err(|e| usage(format!("{}: {e}", opts.dir.display())))?;
        let dir = opts
            .dir
            .canonicalize()
            .map_err(|e| usage(format!("{}: {e}", opts.dir.display())))?;
        let port = |offset: u16| {
            opts.base_port.checked_add(offset).ok_or_else(|| {
                CliError::new(
                    Exit::Usage,
                    format!("--base-port {} is too high", opts.base_port),
                )
            })
        };
        let mut plan: Vec<(String, &str, SocketAddr)> = vec![
            (
                "data".into(),
                "data",
                SocketAddr::from(([127, 0, 0, 1], port(1)?)),
            ),
            (
                "analytics".into(),
                "analytics",
                SocketAddr::from(([127, 0, 0, 1], port(2)?)),
            ),
            (
                "summary".into(),
                "summary",
                SocketAddr::from(([127, 0, 0, 1], port(3)?)),
            ),
        ];
        for r in 2..=opts.analytics_replicas.max(1) {
            plan.push((
                format!("analytics-{r}"),
                "analytics",
                SocketAddr::from(([127, 0, 0, 1], port(2 + r)?)),
            ));
        }
        let mut mesh = Self {
            services: Vec::new(),
            a2a: None,
            viewer: None,
        };
        // Start everything, then wait: the agents start in parallel.
        for (name, service, addr) in &plan {
            let svc = spawn(&dir, name, Program::Builtin(service), *addr, &[]).await?;
            mesh.services.push(svc);
        }
        // The agents in other languages are optional: one that cannot
        // start is reported and left out.
        let mut optional = Vec::new();
        if !opts.rust_only {
            let home = checkout(opts.home.as_deref());
            let next = 3 + opts.analytics_replicas.max(1);
            for (i, agent) in (0u16..).zip(POLYGLOT.iter()) {
                let addr = SocketAddr::from(([127, 0, 0, 1], port(next + i)?));
                match script_of(agent, home.as_deref()) {
                    Ok(script) => {
                        match spawn(&dir, agent.name, Program::Script(script), addr, &[]).await {
                            Ok(svc) => optional.push(svc),
                            Err(e) => eprintln!("{} agent not started: {}", agent.name, e.message),
                        }
                    }
                    Err(why) => eprintln!("{} agent not started: {why}", agent.name),
                }
            }
        }
        for svc in &mut mesh.services {
            if let Err(e) = wait_serving(svc, AGENT_SERVICE_NAME).await {
                for mut svc in optional {
                    let _ = svc.child.start_kill();
                }
                mesh.shutdown().await;
                return Err(e);
            }
        }
        for mut svc in optional {
            match wait_serving(&mut svc, AGENT_SERVICE_NAME).await {
                Ok(()) => mesh.services.push(svc),
                Err(e) => {
                    eprintln!("{} agent left out: {}", svc.name, e.message);
                    let _ = svc.child.start_kill();
                    let _ = svc.child.wait().await;
                }
            }
        }
        let mut extra = Vec::new();
        for svc in &mesh.services {
            extra.push("--agent".to_string());
            extra.push(svc.addr.to_string());
        }
        let orch_addr = SocketAddr::from(([127, 0, 0, 1], opts.base_port));
        // The A2A facade's JSON-RPC binding and agent card.
        let a2a = SocketAddr::from(([127, 0, 0, 1], port(A2A_OFFSET)?));
        extra.push("--a2a-listen".to_string());
        extra.push(a2a.to_string());
        mesh.a2a = Some(a2a);
        // The run viewer.
        let viewer = SocketAddr::from(([127, 0, 0, 1], port(VIEWER_OFFSET)?));
        extra.push("--viewer-listen".to_string());
        extra.push(viewer.to_string());
        mesh.viewer = Some(viewer);
        let orchestrator = Program::Builtin("orchestrator");
        let mut orch = match spawn(&dir, "orchestrator", orchestrator, orch_addr, &extra).await {
            Ok(o) => o,
            Err(e) => {
                mesh.shutdown().await;
                return Err(e);
            }
        };
        let ready = wait_serving(&mut orch, ORCHESTRATOR_SERVICE_NAME).await;
        mesh.services.push(orch);
        if let Err(e) = ready {
            mesh.shutdown().await;
            return Err(e);
        }
        Ok(mesh)
    }

    /// The A2A facade's HTTP address (JSON-RPC and the agent card).
    pub fn a2a(&self) -> Option<SocketAddr> {
        self.a2a
    }

    /// The run viewer's address (web pages).
    pub fn viewer(&self) -> Option<SocketAddr> {
        self.viewer
    }

    /// The orchestrator's address.
    pub fn orchestrator(&self) -> Option<SocketAddr> {
        self.services
            .iter()
            .find(|s| s.name == "orchestrator")
            .map(|s| s.addr)
    }

    /// Resolves when any service exits; returns its name and status.
    pub async fn any_exit(&mut self) -> (String, String) {
        loop {
            for svc in &mut self.services {
                if let Ok(Some(status)) = svc.child.try_wait() {
                    return (svc.name.clone(), status.to_string());
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops every service: SIGTERM (the orchestrator first), then waits up
    /// to the grace period, then SIGKILL.
    pub async fn shutdown(&mut self) {
        for svc in self.services.iter().rev() {
            if let Some(pid) = svc.pid().and_then(|p| i32::try_from(p).ok()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        for svc in &mut self.services {
            if tokio::time::timeout(STOP_GRACE, svc.child.wait())
                .await
                .is_err()
            {
                let _ = svc.child.start_kill();
                let _ = svc.child.wait().await;
            }
        }
    }
}

/// Stops this process gracefully (SIGTERM to itself) when the parent that
/// started it goes away, so a killed `meshctl up` leaves no orphans.
fn exit_with_parent() {
    let parent = nix::unistd::getppid();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if nix::unistd::getppid() != parent {
                let _ = kill(nix::unistd::getpid(), Signal::SIGTERM);
                return;
            }
        }
    });
}

/// Runs one service in this process: `meshctl serve <service> [args]`,
/// through the same entry as its own binary (a bad configuration exits 64).
pub async fn serve(service: &str, args: Vec<String>) -> Result<(), CliError> {
    exit_with_parent();
    let argv: Vec<String> = std::iter::once(service.to_string()).chain(args).collect();
    match service {
        "data" => launch::<agentmesh_data::server::DataService>(argv).await,
        "analytics" => launch::<agentmesh_analytics::server::AnalyticsService>(argv).await,
        "summary" => launch::<agentmesh_summary::server::SummaryService>(argv).await,
        "orchestrator" => launch::<agentmesh_orchestrator::OrchestratorService>(argv).await,
        other => Err(CliError::new(
            Exit::Usage,
            format!("unknown service {other:?}: data, analytics, summary or orchestrator"),
        )),
    }
}

async fn launch<S: agentmesh_runtime::launch::Service>(argv: Vec<String>) -> Result<(), CliError> {
    use agentmesh_runtime::launch;
    let cli = launch::parse::<S>(argv).map_err(|e| CliError::new(Exit::Usage, e.to_string()))?;
    launch::launch::<S>(cli).await.map_err(|e| {
        let exit = if e.exit_code() == launch::EXIT_USAGE {
            Exit::Usage
        } else {
            Exit::Failed
        };
        CliError::new(exit, e.to_string())
    })
}
