//! The run viewer in a real browser: two real meshes (every agent and the
//! orchestrator their own process, the viewer on its own listener), then
//! the browser tests of `tests/viewer` (Playwright for Python driving the
//! system's headless Chromium over the DevTools protocol) against them:
//! the Q2 goal started from the page and watched to done live with its
//! report, an approval gate approved from the page, an agent's question
//! answered through the form made from its schema, the waiting filter and
//! the cancel button, a reload mid-run without a gap, the agents page.
//! Screenshots go to $CI_ARTIFACTS_DIR/viewer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use agentmesh_e2e::{Child, free_port, start_agents_env, start_process_env, temp_dir};
use agentmesh_proto::v1::ORCHESTRATOR_SERVICE_NAME;

fn viewer_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("viewer")
}

/// The orchestrator with its viewer on a free port, over `agents`;
/// `env` adds configuration. Returns the viewer's URL.
async fn orchestrator(agents: &[SocketAddr], env: &[(&str, &str)], dir: &Path) -> (Child, String) {
    let addr = free_port([127, 0, 0, 1]);
    let viewer = free_port([127, 0, 0, 1]);
    let mut args = vec!["--viewer-listen".to_string(), viewer.to_string()];
    for a in agents {
        args.extend(["--agent".to_string(), a.to_string()]);
    }
    let mut env = env.to_vec();
    env.push(("AGENTMESH_SERVER__SHUTDOWN_GRACE_MS", "300"));
    let child = start_process_env(
        "orchestrator",
        addr,
        &args,
        &env,
        dir,
        ORCHESTRATOR_SERVICE_NAME,
    )
    .await;
    // The viewer's listener is bound before the gRPC server says SERVING.
    (child, format!("http://{viewer}"))
}

#[tokio::test]
async fn the_run_viewer_in_a_real_browser() {
    let tmp = temp_dir("viewer");
    let dir = tmp.path();

    // Mesh one: the analytics agent fails each task's first attempt (the
    // orchestrator waits 1.5 s before the next), so steps retry, slowly
    // enough to watch; the approved-summary playbook has an approval gate.
    let (mut children, data, analytics, summary) =
        start_agents_env(dir, &[("AGENTMESH_SERVER__FAULT_FAIL_ATTEMPTS", "1")], &[]).await;
    let playbook = viewer_dir().join("approved-summary.toml");
    let playbooks = format!("[{:?}]", playbook.to_string_lossy());
    let (orch, viewer) = orchestrator(
        &[data, analytics, summary],
        &[
            ("AGENTMESH_PLANNING__PLAYBOOKS", playbooks.as_str()),
            ("AGENTMESH_EXECUTION__BACKOFF_BASE_MS", "1500"),
            ("AGENTMESH_EXECUTION__BACKOFF_MAX_MS", "1500"),
        ],
        dir,
    )
    .await;
    children.push(orch);

    // Mesh two: the summary agent asks which audience to write for.
    let asking_dir = dir.join("asking");
    std::fs::create_dir_all(&asking_dir).unwrap();
    let (more, data2, analytics2, summary2) =
        start_agents_env(&asking_dir, &[], &[("AGENTMESH_ASK_AUDIENCE", "true")]).await;
    children.extend(more);
    let (orch2, asking) = orchestrator(&[data2, analytics2, summary2], &[], &asking_dir).await;
    children.push(orch2);

    agentmesh_e2e::run_setup(&viewer_dir().join("run"), "Python 3 and Chromium");
    let mut cmd = tokio::process::Command::new(viewer_dir().join("run"));
    cmd.args(["--test", "-p", "no:cacheprovider", "-rA"])
        .env("AGENTMESH_VIEWER_URL", &viewer)
        .env("AGENTMESH_VIEWER_ASKING_URL", &asking)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(600), cmd.output())
        .await
        .expect("the browser tests took over 10 minutes")
        .unwrap();
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "browser tests failed:\n{report}");
    // Every test ran (none skipped, none deselected).
    assert!(report.contains("7 passed"), "{report}");
    drop(children);
}
