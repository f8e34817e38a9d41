//! Each agent binary started with no arguments is a working agent on its
//! default port: health SERVING, a card, and its skills answer. The real
//! binaries run as separate processes. And a binary's logs survive its
//! shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use agentmesh_e2e::{
    Child, agent_card, binary, connect, free_port, hermetic, run_skill, temp_dir, wait_serving,
};
use agentmesh_proto::v1::{AGENT_SERVICE_NAME, ORCHESTRATOR_SERVICE_NAME};
use serde_json::json;

#[tokio::test]
async fn agent_binaries_work_with_no_arguments_on_their_default_ports() {
    let tmp = temp_dir("binaries");
    let cwd = tmp.path().to_path_buf();
    let mut children = Vec::new();
    for (name, port, skill) in [
        ("data-agent", 50051, "sales.extract"),
        ("analytics-agent", 50052, "analytics.metrics"),
        ("summary-agent", 50053, "summary.write"),
    ] {
        let mut cmd = Command::new(binary(name));
        let child = hermetic(&mut cmd)
            .current_dir(&cwd)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        children.push(Child(child));
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        wait_serving(addr, AGENT_SERVICE_NAME, Duration::from_secs(60)).await;
        let card = agent_card(addr).await;
        assert!(
            card.skills.iter().any(|s| s.id == skill),
            "{name} offers {skill}"
        );
    }
    // And the skills answer: the whole chain over the three processes.
    let mut data = connect(([127, 0, 0, 1], 50051).into()).await;
    let mut analytics = connect(([127, 0, 0, 1], 50052).into()).await;
    let mut summary = connect(([127, 0, 0, 1], 50053).into()).await;
    let ds = run_skill(
        &mut data,
        "sales.extract",
        json!({"period": "Q2", "compare": ["previous_period", "year_ago"]}),
    )
    .await
    .output
    .unwrap();
    let m = run_skill(&mut analytics, "analytics.metrics", json!({"dataset": ds}))
        .await
        .output
        .unwrap();
    let c = run_skill(&mut analytics, "analytics.charts", json!({"metrics": m})).await;
    assert_eq!(c.artifacts.len(), 4);
    let s = run_skill(&mut summary, "summary.write", json!({"metrics": m}))
        .await
        .output
        .unwrap();
    assert_eq!(s["faithfulness"]["passed"], json!(true));
    assert!(
        cwd.join("data/sales.db").exists(),
        "the embedded database was created on first start"
    );
    drop(children);
}

/// Logs are written by their own thread; on SIGTERM the binary drains,
/// and every line up to the last one still reaches stderr.
#[tokio::test]
async fn a_binary_logs_to_stderr_up_to_its_last_line_after_sigterm() {
    let addr = free_port([127, 0, 0, 1]);
    let mut cmd = Command::new(binary("orchestrator"));
    let child = hermetic(&mut cmd)
        .env("AGENTMESH_SERVER__LISTEN", addr.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Child(child);
    wait_serving(addr, ORCHESTRATOR_SERVICE_NAME, Duration::from_secs(60)).await;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.0.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut stderr).unwrap();
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(stderr.contains("listening"), "{stderr}");
    assert!(
        stderr
            .trim_end()
            .lines()
            .next_back()
            .is_some_and(|l| l.contains("shutdown complete in_flight=0")),
        "the last line is written before the process exits:\n{stderr}"
    );
}

/// A value that makes no sense stops the binary before it binds: exit 64
/// (EX_USAGE) and the key named on stderr, whichever layer set it.
#[test]
fn bad_configuration_exits_64_with_the_key_named() {
    let tmp = temp_dir("bad-config");
    let file = tmp.path().join("orchestrator.toml");
    std::fs::write(&file, "[execution]\nheartbeat_lease_factor = 1\n").unwrap();
    let file = file.display().to_string();
    /// Binary, arguments, environment, the key its error must name.
    type Case<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case<'_>; 5] = [
        (
            "orchestrator",
            &[],
            &[("AGENTMESH_EXECUTION__HEARTBEAT_MS", "0")],
            "execution.heartbeat_ms",
        ),
        (
            "orchestrator",
            &["--config", &file],
            &[],
            "execution.heartbeat_lease_factor",
        ),
        (
            "data-agent",
            &[],
            &[("AGENTMESH_SERVER__MAX_CONCURRENT_TASKS", "0")],
            "server.max_concurrent_tasks",
        ),
        (
            "summary-agent",
            &[],
            &[("AGENTMESH_LLM__TIMEOUT_MS", "0")],
            "llm.timeout_ms",
        ),
        (
            "analytics-agent",
            &[],
            &[("AGENTMESH_SERVER__HEARTBEET_MS", "100")],
            "heartbeet_ms",
        ),
    ];
    for (name, args, env, key) in cases {
        let mut cmd = Command::new(binary(name));
        hermetic(&mut cmd)
            .args(args)
            .current_dir(tmp.path())
            .env("AGENTMESH_SERVER__LISTEN", "127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        // A binary that accepted the value would serve on: bounded wait.
        let mut child = Child(cmd.spawn().unwrap());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.0.try_wait().unwrap() {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{name} {env:?} accepted the configuration"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(64), "{name} {env:?}: {stderr}");
        assert!(
            stderr.contains(key),
            "{name}: {key} not named in {stderr:?}"
        );
    }
}
