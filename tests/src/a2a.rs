//! The official A2A Python SDK as the mesh's peer (`tests/a2a`): its
//! client driven through a scenario, and a small A2A agent built with its
//! server, both real processes started through `tests/a2a/run`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::{Child, spawn_logged};

/// `tests/a2a/run`.
pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("a2a/run")
}

/// Installs the pinned SDK once per test process.
fn setup() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| crate::run_setup(&script(), "Python 3"));
}

/// Runs the SDK client's scenario against the A2A facade at `url` over
/// `binding` (`GRPC` or `JSONRPC`); what it saw, as JSON.
pub async fn client(url: &str, binding: &str, goal: &str, slow_skill: &str) -> serde_json::Value {
    setup();
    let mut cmd = tokio::process::Command::new(script());
    cmd.args(["client", "--url", url, "--binding", binding, "--goal", goal])
        .args(["--slow-skill", slow_skill])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .expect("the A2A client scenario took over 5 minutes")
        .unwrap();
    assert!(
        out.status.success(),
        "A2A client over {binding} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "A2A client printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Starts the SDK's A2A agent on `addr`, logging to `log` (appended), and waits until
/// its card answers.
pub async fn agent(addr: SocketAddr, log: &std::path::Path) -> Child {
    setup();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut cmd = Command::new(script());
    cmd.args(["agent", "--host", &addr.ip().to_string(), "--port"])
        .arg(addr.port().to_string());
    let child = spawn_logged(&mut cmd, log);
    let url = format!("http://{addr}/.well-known/agent-card.json");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(resp) = reqwest::get(&url).await
            && resp.status().is_success()
        {
            return child;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the A2A agent at {addr} did not serve its card: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
