//! Helpers for agentmesh end-to-end tests: calling agents over gRPC and
//! collecting what a task streams back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod a2a;
pub mod dns;
pub mod mesh;
pub mod openai;
pub mod otlp;
pub mod pki;
pub mod polyglot;
pub mod postgres;
pub mod process;
pub mod replica;

use std::sync::atomic::{AtomicU64, Ordering};

use agentmesh_proto::json::{from_opt_struct, to_struct};
use agentmesh_proto::v1::agent_service_client::AgentServiceClient;
use agentmesh_proto::v1::{ExecuteTaskRequest, task_event::Event};
use serde_json::{Map, Value};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

/// What one task returned.
#[derive(Debug, Default)]
pub struct TaskOutcome {
    /// The result's output, if it completed.
    pub output: Option<Map<String, Value>>,
    /// (reason, message) if it failed.
    pub failure: Option<(String, String)>,
    /// Artifacts: (name, media type, bytes), reassembled from chunks.
    pub artifacts: Vec<(String, String, Vec<u8>)>,
}

/// Serves `agent` with default limits on a new `127.0.0.1:0` listener until
/// the test ends, and returns its address.
pub async fn spawn_agent<A: agentmesh_runtime::Agent>(agent: A) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(agentmesh_runtime::serve(
        agent,
        listener,
        agentmesh_runtime::ServerConfig::default(),
        std::future::pending(),
    ));
    addr
}

/// Connects to an agent at `addr` ("127.0.0.1:port").
pub async fn connect(addr: std::net::SocketAddr) -> AgentServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    AgentServiceClient::new(channel).max_decoding_message_size(16 * 1024 * 1024)
}

/// The card of the agent at `addr`.
pub async fn agent_card(addr: std::net::SocketAddr) -> agentmesh_proto::v1::AgentCard {
    connect(addr)
        .await
        .get_agent_card(agentmesh_proto::v1::GetAgentCardRequest {})
        .await
        .unwrap()
        .into_inner()
        .card
        .unwrap()
}

/// Runs one skill and collects its outcome.
pub async fn run_skill(
    client: &mut AgentServiceClient<Channel>,
    skill: &str,
    input: Value,
) -> TaskOutcome {
    static N: AtomicU64 = AtomicU64::new(0);
    let Value::Object(map) = input else {
        panic!("input must be an object")
    };
    let req = ExecuteTaskRequest {
        task_id: format!("task-{}", N.fetch_add(1, Ordering::SeqCst)),
        run_id: "manual".into(),
        skill_id: skill.into(),
        input: Some(to_struct(&map)),
        attempt: 1,
        ..ExecuteTaskRequest::default()
    };
    let mut stream = client.execute_task(req).await.unwrap().into_inner();
    let mut out = TaskOutcome::default();
    while let Some(ev) = stream.next().await {
        match ev.unwrap().event {
            Some(Event::Result(r)) => out.output = Some(from_opt_struct(r.output.as_ref())),
            Some(Event::Failure(f)) => out.failure = Some((f.reason, f.message)),
            Some(Event::ArtifactChunk(c)) => {
                if c.append {
                    if let Some(last) = out.artifacts.last_mut() {
                        last.2.extend(c.data);
                    }
                } else {
                    out.artifacts.push((c.name, c.media_type, c.data));
                }
            }
            _ => {}
        }
    }
    out
}

/// Runs `script --setup` (a `run` script that installs its pinned
/// dependencies), failing the test with its output if it fails; `needs`
/// says what the test command installs for it.
pub fn run_setup(script: &std::path::Path, needs: &str) {
    let out = std::process::Command::new(script)
        .arg("--setup")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} --setup failed ({}): {}\n(the test command, scripts/test, installs {needs})",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh folder under the system's temp folder, named for the test,
/// removed with everything in it when the returned value is dropped.
pub fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("agentmesh-{name}-"))
        .tempdir()
        .unwrap()
}

/// Path of a workspace binary. The first call in a test process runs
/// `cargo build --workspace --bins`, so every binary is there and current
/// (`cargo test` alone builds only the binaries of packages with integration
/// tests, and a stale one from an earlier build must never be used).
pub fn binary(name: &str) -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    // target/<profile>/deps/<test-exe> → target/<profile>/<name>
    let exe = std::env::current_exe().unwrap();
    let dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .unwrap()
        .to_path_buf();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        cmd.args(["build", "--workspace", "--bins"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        // What cargo set for this test process names this package; build
        // scripts that watch these (ring's) would see them change and
        // rebuild, here and again in the next `cargo test`.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            let package = [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
            ]
            .iter()
            .any(|p| key.starts_with(p));
            if package
                || ["OUT_DIR", "CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR"].contains(&&*key)
            {
                cmd.env_remove(&*key);
            }
        }
        if dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().unwrap();
        assert!(status.success(), "building the workspace binaries failed");
    });
    dir.join(name)
}

/// Runs the `meshctl` binary with `args` and the extra environment `env`
/// (hermetic otherwise), bounded to a minute: (exit code, stdout, stderr).
pub async fn run_meshctl(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(binary("meshctl"));
    hermetic(&mut cmd).envs(env.iter().copied());
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::process::Command::from(cmd).args(args).output(),
    )
    .await
    .expect("meshctl finishes")
    .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Removes every `AGENTMESH_*` variable from a child's environment, so the
/// test's own environment cannot change the services' configuration.
pub fn hermetic(cmd: &mut std::process::Command) -> &mut std::process::Command {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("AGENTMESH_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Spawns `cmd` (made [`hermetic`]) with no stdin and its stdout and
/// stderr appended to `log`, so that a failing test can show them.
pub fn spawn_logged(cmd: &mut std::process::Command, log: &std::path::Path) -> Child {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = hermetic(cmd)
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    Child(child)
}

/// A child process killed (SIGKILL) when dropped, so a failing test leaves
/// no orphan behind.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `addr` answers health `service` with SERVING (bounded).
pub async fn wait_serving(addr: std::net::SocketAddr, service: &str, within: std::time::Duration) {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Ok(channel) = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
        {
            let mut health = HealthClient::new(channel);
            if let Ok(resp) = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                && resp.into_inner().status == 1
            {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{addr} not SERVING within {within:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A free TCP port on `ip` (bound, then released for a child to take).
pub fn free_port(ip: [u8; 4]) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind((std::net::Ipv4Addr::from(ip), 0)).unwrap();
    listener.local_addr().unwrap()
}

/// Starts workspace binary `name` listening on `listen` with `args`, in
/// `cwd`, and waits until its `service` is SERVING.
pub async fn start_process(
    name: &str,
    listen: std::net::SocketAddr,
    args: &[String],
    cwd: &std::path::Path,
    service: &str,
) -> Child {
    start_process_env(name, listen, args, &[], cwd, service).await
}

/// [`start_process`] with extra environment variables.
pub async fn start_process_env(
    name: &str,
    listen: std::net::SocketAddr,
    args: &[String],
    env: &[(&str, &str)],
    cwd: &std::path::Path,
    service: &str,
) -> Child {
    start_process_logged(name, listen, args, env, cwd, service, None).await
}

/// [`start_process_env`] with its log lines (stderr) written to `log`
/// (discarded for `None`).
pub async fn start_process_logged(
    name: &str,
    listen: std::net::SocketAddr,
    args: &[String],
    env: &[(&str, &str)],
    cwd: &std::path::Path,
    service: &str,
    log: Option<&std::path::Path>,
) -> Child {
    std::fs::create_dir_all(cwd).unwrap();
    let stderr = match log {
        Some(path) => std::process::Stdio::from(std::fs::File::create(path).unwrap()),
        None => std::process::Stdio::null(),
    };
    let mut cmd = std::process::Command::new(binary(name));
    let child = hermetic(&mut cmd)
        .envs(env.iter().copied())
        .arg("--listen")
        .arg(listen.to_string())
        .args(args)
        .current_dir(cwd)
        .env_remove("AGENTMESH_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let child = Child(child);
    wait_serving(listen, service, std::time::Duration::from_secs(60)).await;
    child
}

/// The three agents and the orchestrator, each its own process on its own
/// loopback port.
pub struct Mesh {
    /// Kept alive (and killed on drop).
    pub children: Vec<Child>,
    /// The data agent.
    pub data: std::net::SocketAddr,
    /// The analytics agent.
    pub analytics: std::net::SocketAddr,
    /// The summary agent.
    pub summary: std::net::SocketAddr,
    /// The orchestrator.
    pub orchestrator: std::net::SocketAddr,
    /// Working folder (the data agent's database lives here).
    pub dir: std::path::PathBuf,
}

/// The three agent binaries, each its own process on its own loopback
/// port, in `dir`: (children, data, analytics, summary).
pub async fn start_agents(
    dir: &std::path::Path,
) -> (
    Vec<Child>,
    std::net::SocketAddr,
    std::net::SocketAddr,
    std::net::SocketAddr,
) {
    start_agents_env(dir, &[], &[]).await
}

/// [`start_agents`] with extra environment variables for the analytics
/// and the summary agent.
pub async fn start_agents_env(
    dir: &std::path::Path,
    analytics_env: &[(&str, &str)],
    summary_env: &[(&str, &str)],
) -> (
    Vec<Child>,
    std::net::SocketAddr,
    std::net::SocketAddr,
    std::net::SocketAddr,
) {
    use agentmesh_proto::v1::AGENT_SERVICE_NAME;
    let data = free_port([127, 0, 0, 1]);
    let analytics = free_port([127, 0, 0, 2]);
    let summary = free_port([127, 0, 0, 1]);
    let mut children = Vec::new();
    for (name, addr, env) in [
        ("data-agent", data, &[][..]),
        ("analytics-agent", analytics, analytics_env),
        ("summary-agent", summary, summary_env),
    ] {
        children.push(start_process_env(name, addr, &[], env, dir, AGENT_SERVICE_NAME).await);
    }
    (children, data, analytics, summary)
}

/// Starts the orchestrator binary on a new port, static endpoints
/// `agents`, its runs in the SQLite file `store`, in `dir`.
pub async fn start_orchestrator_on(
    store: &std::path::Path,
    agents: &[std::net::SocketAddr],
    dir: &std::path::Path,
) -> (Child, std::net::SocketAddr) {
    use agentmesh_proto::v1::ORCHESTRATOR_SERVICE_NAME;
    let addr = free_port([127, 0, 0, 1]);
    let mut args = Vec::new();
    for a in agents {
        args.extend(["--agent".to_string(), a.to_string()]);
    }
    let path = store.to_string_lossy().into_owned();
    let child = start_process_env(
        "orchestrator",
        addr,
        &args,
        &[
            ("AGENTMESH_STORE__PATH", path.as_str()),
            ("AGENTMESH_SERVER__SHUTDOWN_GRACE_MS", "300"),
        ],
        dir,
        ORCHESTRATOR_SERVICE_NAME,
    )
    .await;
    (child, addr)
}

/// Starts the mesh in `dir`; `extra_agents` are added to the
/// orchestrator's static endpoints.
pub async fn start_mesh(dir: &std::path::Path, extra_agents: &[std::net::SocketAddr]) -> Mesh {
    use agentmesh_proto::v1::ORCHESTRATOR_SERVICE_NAME;
    let (mut children, data, analytics, summary) = start_agents(dir).await;
    let orchestrator = free_port([127, 0, 0, 1]);
    let mut args = Vec::new();
    for a in [data, analytics, summary].iter().chain(extra_agents) {
        args.push("--agent".to_string());
        args.push(a.to_string());
    }
    children.push(
        start_process(
            "orchestrator",
            orchestrator,
            &args,
            dir,
            ORCHESTRATOR_SERVICE_NAME,
        )
        .await,
    );
    Mesh {
        children,
        data,
        analytics,
        summary,
        orchestrator,
        dir: dir.to_path_buf(),
    }
}
