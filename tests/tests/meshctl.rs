//! meshctl as a user runs it: real binaries, separate processes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agentmesh_e2e::mesh::{goal, newest_run, orchestrator};
use agentmesh_e2e::{
    Child, binary, free_port, hermetic, start_process, start_process_env, temp_dir, wait_serving,
};
use agentmesh_proto::v1::{
    AGENT_SERVICE_NAME, ORCHESTRATOR_SERVICE_NAME, WatchRunRequest, run_event::Event,
};
use agentmesh_sales::faithfulness;
use serde_json::Value;
use tokio_stream::StreamExt;

const GOAL: &str =
    "Generate a Q2 sales performance report with visualizations and an executive summary";

/// A fresh folder for one test, removed when the returned value is dropped.
fn temp(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = temp_dir(&format!("meshctl-{name}"));
    let path = dir.path().to_path_buf();
    (dir, path)
}

/// A meshctl command with none of this process's `AGENTMESH_*` settings.
fn meshctl_cmd() -> Command {
    let mut cmd = Command::new(binary("meshctl"));
    hermetic(&mut cmd);
    cmd
}

/// `meshctl up` with its services under `dir/mesh` on ports from `base`;
/// its stdout (the table of services) is piped.
fn meshctl_up(dir: &Path, base: u16, stderr: Stdio) -> Child {
    let up = meshctl_cmd()
        .args(["up", "--dir"])
        .arg(dir.join("mesh"))
        .args(["--base-port", &base.to_string()])
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    Child(up)
}

/// How many `.svg` files are in `dir`.
fn svg_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "svg")
        })
        .count()
}

/// Runs meshctl to the end: (exit code, stdout, stderr).
fn meshctl(args: &[&str]) -> (i32, String, String) {
    let out = meshctl_cmd().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn json_of(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// Six consecutive free ports on loopback (the orchestrator, three Rust
/// agents, the Python and TypeScript agents), the first returned.
fn free_block() -> u16 {
    loop {
        let base = free_port([127, 0, 0, 1]).port();
        if base > 65_000 {
            continue;
        }
        // The services' ports, the A2A listener's (base + 20) and the
        // viewer's (base + 21).
        let all: Vec<_> = (0..6)
            .chain([20, 21])
            .map(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)))
            .collect();
        if all.iter().all(Result::is_ok) {
            return base;
        }
    }
}

/// Waits (bounded) for a child to exit.
fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            return s;
        }
        assert!(
            t0.elapsed() < within,
            "the process did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

fn section<'a>(report: &'a Value, title: &str) -> Option<&'a Value> {
    report["report"]["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["title"] == title)
}

/// Renders `html` with headless Chromium into `png` (kept as a CI artifact)
/// and returns how many separate bands of coloured content it shows.
fn screenshot(html: &Path, png: &Path) -> (usize, f64) {
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect(
            "headless Chromium is needed (Debian package `chromium`; scripts/test installs it)",
        );
    let profile = temp_dir("chromium");
    let status = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1280,5200",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "chromium failed");
    let decoder = png::Decoder::new(std::fs::File::open(png).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let (w, h) = (info.width as usize, info.height as usize);
    let channels = info.line_size / w;
    let mut non_white = 0usize;
    let mut coloured_rows = Vec::with_capacity(h);
    for y in 0..h {
        let row = &buf[y * info.line_size..(y + 1) * info.line_size];
        let mut coloured = 0;
        for x in 0..w {
            let p = &row[x * channels..x * channels + 3];
            let (max, min) = (p.iter().max().unwrap(), p.iter().min().unwrap());
            if *min < 235 {
                non_white += 1;
            }
            if max - min > 60 {
                coloured += 1;
            }
        }
        coloured_rows.push(coloured >= 20);
    }
    // Bands of rows with saturated colour (the charts' bars and lines),
    // separated by at least 40 rows without.
    let mut bands = 0;
    let mut gap = usize::MAX;
    for c in coloured_rows {
        if c {
            if gap >= 40 {
                bands += 1;
            }
            gap = 0;
        } else {
            gap = gap.saturating_add(1);
        }
    }
    (bands, non_white as f64 / (w * h) as f64)
}

#[tokio::test]
async fn meshctl_up_then_goals_as_a_user_runs_them() {
    let (_tmp, dir) = temp("up");
    let base = free_block();
    let addr = format!("127.0.0.1:{base}");
    let mut up = meshctl_up(&dir, base, Stdio::null());
    wait_serving(
        SocketAddr::from(([127, 0, 0, 1], base)),
        ORCHESTRATOR_SERVICE_NAME,
        Duration::from_secs(120),
    )
    .await;
    // `up` prints where each service listens once all are SERVING.
    let mut lines = BufReader::new(up.0.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        printed.push_str(&line);
        printed.push('\n');
        if line.starts_with("press Ctrl-C") {
            break;
        }
    }
    // The Rust agents, and the Python and TypeScript ones (their runtimes
    // are installed here), each its own process.
    for svc in [
        "data",
        "analytics",
        "summary",
        "forecast",
        "quality",
        "orchestrator",
    ] {
        assert!(printed.contains(svc), "{printed}");
    }
    assert!(
        printed.contains("discovered 5 agents through health checks"),
        "{printed}"
    );
    // The run viewer's address, where its pages answer.
    let viewer = format!("http://127.0.0.1:{}/", base + 21);
    assert!(
        printed.contains(&format!(
            "run viewer (runs, plans live, reports, approvals): {viewer}"
        )),
        "{printed}"
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    let page = reqwest::get(format!("{viewer}agents")).await.unwrap();
    assert_eq!(page.status(), reqwest::StatusCode::OK);
    assert!(page.text().await.unwrap().contains("<h1>Agents</h1>"));
    // The A2A facade's address, where its card answers.
    let a2a = format!("http://127.0.0.1:{}/", base + 20);
    assert!(printed.contains("A2A (JSON-RPC"), "{printed}");
    assert!(printed.contains(&a2a), "{printed}");

    let (code, out, _) = meshctl(&["--orchestrator", &addr, "agents", "--json"]);
    assert_eq!(code, 0);
    let agents = json_of(&out);
    assert_eq!(
        agents
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["health"] == "SERVING")
            .count(),
        5
    );
    let (code, out, _) = meshctl(&["--orchestrator", &addr, "agents"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("ADDRESS") && out.contains("5 of 5 serving"),
        "{out}"
    );

    let (code, out, _) = meshctl(&["--orchestrator", &addr, "plan", GOAL, "--json"]);
    assert_eq!(code, 0);
    let plan = json_of(&out);
    assert_eq!(plan["intent"]["period"]["label"], "Q2 2025");
    assert_eq!(plan["steps"].as_array().unwrap().len(), 4);
    let (code, out, _) = meshctl(&["--orchestrator", &addr, "plan", GOAL]);
    assert_eq!(code, 0);
    assert!(
        out.contains("AGENT @ REPLICA") && out.contains("analytics.charts"),
        "{out}"
    );

    // The reference goal.
    let r1 = dir.join("r1");
    let (code, out, err) = meshctl(&[
        "--orchestrator",
        &addr,
        "run",
        "--json",
        "--out",
        r1.to_str().unwrap(),
        GOAL,
    ]);
    assert_eq!(code, 0, "{err}");
    let report = json_of(&out);
    assert_eq!(report["state"], "COMPLETED");
    for title in ["Executive summary", "Key metrics", "Charts", "Data"] {
        let s = section(&report, title).unwrap_or_else(|| panic!("no {title} section"));
        assert_eq!(s["missing"], false);
    }
    assert_eq!(report["report"]["provenance"].as_array().unwrap().len(), 4);
    let svgs = svg_files(&r1);
    assert!(svgs >= 4, "{svgs} charts");
    for f in ["report.html", "report.md", "report.json", "dataset.csv"] {
        assert!(r1.join(f).exists(), "{f}");
    }
    // Summary numbers match the metrics.
    let metrics = &report["steps"]["metrics"];
    let text = report["steps"]["summary"]["markdown"].as_str().unwrap();
    let check = faithfulness::check(text, metrics, &faithfulness::labels(metrics));
    assert!(check.passed() && check.checked.len() >= 3, "{check:?}");
    // The human output prints the summary and the path.
    let r1b = dir.join("r1b");
    let (code, out, _) = meshctl(&[
        "--orchestrator",
        &addr,
        "run",
        "--out",
        r1b.to_str().unwrap(),
        GOAL,
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains("Q2 2025 revenue")
            && out.contains(&format!("report: {}", r1b.join("report.html").display())),
        "{out}"
    );

    // The report as a browser shows it: not blank, every chart visible.
    // Kept as a CI artifact (.ci/run sets CI_ARTIFACTS_DIR).
    let shots = std::env::var_os("CI_ARTIFACTS_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ci-artifacts"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&shots).unwrap();
    let png = shots.join("report.png");
    let (bands, ink) = screenshot(&r1.join("report.html"), &png);
    println!("screenshot of report.html: {}", png.display());
    assert!(ink > 0.02, "the page looks blank ({ink:.3} non-white)");
    assert!(
        bands >= 4,
        "expected the 4 charts, saw {bands} coloured bands"
    );

    // Other goals.
    let run = |goal: &str, name: &str| {
        let out_dir = dir.join(name);
        let (code, out, err) = meshctl(&[
            "--orchestrator",
            &addr,
            "run",
            "--json",
            "--out",
            out_dir.to_str().unwrap(),
            goal,
        ]);
        (
            code,
            if code == 0 || code == 2 {
                json_of(&out)
            } else {
                Value::Null
            },
            err,
            out_dir,
        )
    };
    let (code, r, err, _) = run("Q4 2024 sales report", "q4");
    assert_eq!(code, 0, "{err}");
    assert_eq!(r["report"]["title"], "Sales performance — Q4 2024");
    let (code, r, err, _) = run("executive summary for Europe, Q1 2025", "europe");
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        r["steps"]["dataset"]["filters"]["region"],
        serde_json::json!(["Europe"])
    );
    let titles: Vec<&str> = r["report"]["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Executive summary"]);
    let (code, r, err, out_dir) = run("just a chart of revenue by region for H1", "chart");
    assert_eq!(code, 0, "{err}");
    let titles: Vec<&str> = r["report"]["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Charts"]);
    assert!(out_dir.join("chart-revenue_by_region.svg").exists());
    let svgs = svg_files(&out_dir);
    assert_eq!(svgs, 1);
    let (code, r, err, _) = run("summarize Q1 2025", "summary-only");
    assert_eq!(code, 0, "{err}");
    assert_eq!(r["report"]["sections"].as_array().unwrap().len(), 1);
    // A goal that cannot be satisfied: a clear error and a non-zero exit.
    let (code, _, err, _) = run("Q5 sales report", "bad");
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("GOAL_NOT_UNDERSTOOD") && err.contains("Q5 is not a quarter"),
        "{err}"
    );
    assert!(!err.contains("Status {"), "no debug dump: {err}");
    // Bad usage.
    let (code, _, _) = meshctl(&["--orchestrator", &addr, "run"]);
    assert_eq!(code, 64);

    let (code, out, _) = meshctl(&["--orchestrator", &addr, "runs", "--json"]);
    assert_eq!(code, 0);
    let runs = json_of(&out);
    assert!(runs.as_array().unwrap().len() >= 6);
    let id = runs[0]["run_id"].as_str().unwrap().to_string();
    let (code, out, _) = meshctl(&["--orchestrator", &addr, "get", &id, "--json"]);
    assert_eq!(code, 0);
    assert_eq!(json_of(&out)["run"]["run_id"], id.as_str());

    // Ctrl-C stops everything, with no process left behind.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(up.0.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = wait_exit(&mut up, Duration::from_secs(30));
    assert_eq!(status.code(), Some(0));
    for p in base..base + 6 {
        assert!(!port_open(p), "port {p} still open");
    }
}

#[tokio::test]
async fn an_analytics_replica_killed_mid_run_is_rerouted() {
    let (_tmp, dir) = temp("kill");
    let data = free_port([127, 0, 0, 1]);
    let slow = free_port([127, 0, 0, 1]);
    let fast = free_port([127, 0, 0, 2]);
    let summary = free_port([127, 0, 0, 1]);
    let orch = free_port([127, 0, 0, 1]);
    let _data = start_process("data-agent", data, &[], &dir, AGENT_SERVICE_NAME).await;
    // This replica takes 20 s per task (fault injection): it will be
    // working on the metrics step when it is killed.
    let mut slow_child = start_process_env(
        "analytics-agent",
        slow,
        &[],
        &[("AGENTMESH_SERVER__FAULT_DELAY_MS", "20000")],
        &dir,
        AGENT_SERVICE_NAME,
    )
    .await;
    let _fast = start_process("analytics-agent", fast, &[], &dir, AGENT_SERVICE_NAME).await;
    let _summary = start_process("summary-agent", summary, &[], &dir, AGENT_SERVICE_NAME).await;
    let args: Vec<String> = [data, slow, fast, summary]
        .iter()
        .flat_map(|a| ["--agent".to_string(), a.to_string()])
        .collect();
    let _orch = start_process("orchestrator", orch, &args, &dir, ORCHESTRATOR_SERVICE_NAME).await;
    let mut client = orchestrator(orch).await;
    agentmesh_e2e::mesh::wait_serving_agents(&mut client, 4).await;

    let out_dir = dir.join("report");
    let run = meshctl_cmd()
        .args([
            "--orchestrator",
            &orch.to_string(),
            "run",
            "--json",
            "--out",
        ])
        .arg(&out_dir)
        .arg(GOAL)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut run = Child(run);
    // Find the run, and wait for the metrics step to start on the slow replica.
    let run_id = newest_run(&mut client, "").await;
    let mut events = client
        .watch_run(WatchRunRequest {
            run_id,
            after_seq: 0,
            stream: None,
        })
        .await
        .unwrap()
        .into_inner();
    while let Some(ev) = events.next().await {
        if let Some(Event::StepStarted(s)) = ev.unwrap().event
            && s.endpoint == slow.to_string()
        {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    slow_child.0.kill().unwrap(); // SIGKILL
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut run.0.stdout.take().unwrap(), &mut stdout).unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut run.0.stderr.take().unwrap(), &mut stderr).unwrap();
    let status = run.0.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    let report = json_of(&stdout);
    assert_eq!(report["state"], "COMPLETED");
    let prov: Vec<&Value> = report["report"]["provenance"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    let rerouted: Vec<&&Value> = prov
        .iter()
        .filter(|p| !p["earlier_endpoints"].as_array().unwrap().is_empty())
        .collect();
    assert!(
        !rerouted.is_empty(),
        "provenance shows the reroute: {prov:?}"
    );
    for p in rerouted {
        assert_eq!(p["earlier_endpoints"][0], slow.to_string());
        assert_eq!(p["endpoint"], fast.to_string());
        assert_eq!(p["agent"], "analytics");
    }
    let md = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
    assert!(
        md.contains(&format!("(after {slow})")),
        "the report's provenance table shows it"
    );
}

/// A TCP proxy whose connections can all be dropped at once.
async fn proxy(listen: SocketAddr, target: SocketAddr) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
    tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            conns.spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meshctl_watch_continues_without_gaps_after_the_connection_drops() {
    let (_tmp, dir) = temp("watch");
    let data = free_port([127, 0, 0, 1]);
    let analytics = free_port([127, 0, 0, 1]);
    let summary = free_port([127, 0, 0, 1]);
    let orch = free_port([127, 0, 0, 1]);
    let _data = start_process("data-agent", data, &[], &dir, AGENT_SERVICE_NAME).await;
    let _analytics = start_process_env(
        "analytics-agent",
        analytics,
        &[],
        &[("AGENTMESH_SERVER__FAULT_DELAY_MS", "1500")],
        &dir,
        AGENT_SERVICE_NAME,
    )
    .await;
    let _summary = start_process("summary-agent", summary, &[], &dir, AGENT_SERVICE_NAME).await;
    let args: Vec<String> = [data, analytics, summary]
        .iter()
        .flat_map(|a| ["--agent".to_string(), a.to_string()])
        .collect();
    let _orch = start_process("orchestrator", orch, &args, &dir, ORCHESTRATOR_SERVICE_NAME).await;
    let mut client = orchestrator(orch).await;
    agentmesh_e2e::mesh::wait_serving_agents(&mut client, 3).await;

    let front = free_port([127, 0, 0, 1]);
    let mut relay = proxy(front, orch).await;
    let run_id = agentmesh_e2e::mesh::submit(&mut client, goal(GOAL)).await;
    let watch = meshctl_cmd()
        .args([
            "--orchestrator",
            &front.to_string(),
            "watch",
            &run_id,
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut watch = Child(watch);
    let stdout = watch.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    let mut seqs = Vec::new();
    let mut kinds = Vec::new();
    let mut dropped = false;
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) {
        let ev = json_of(&line);
        seqs.push(ev["seq"].as_u64().unwrap());
        kinds.push(ev["event"].as_str().unwrap().to_string());
        if !dropped && seqs.len() == 3 {
            // Drop the connection mid-run, come back half a second later.
            relay.abort();
            let _ = (&mut relay).await;
            dropped = true;
            tokio::time::sleep(Duration::from_millis(500)).await;
            relay = proxy(front, orch).await;
        }
    }
    let status = watch.0.wait().unwrap();
    assert!(dropped);
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
    assert_eq!(kinds.last().map(String::as_str), Some("finished"));
    assert!(seqs.len() > 6);
    relay.abort();

    // Ctrl-C in `meshctl run` cancels the run on the orchestrator.
    let run = meshctl_cmd()
        .args(["--orchestrator", &orch.to_string(), "run", "--out"])
        .arg(dir.join("canceled"))
        .arg(GOAL)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut run = Child(run);
    let run_id = newest_run(&mut client, &run_id).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(run.0.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = run.0.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let got = client
        .get_run(agentmesh_proto::v1::GetRunRequest {
            run_id: run_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        got.run.unwrap().state(),
        agentmesh_proto::v1::RunState::Canceled
    );

    // `meshctl cancel RUN`.
    let other = agentmesh_e2e::mesh::submit(&mut client, goal(GOAL)).await;
    let (code, out, _) = meshctl(&["--orchestrator", &orch.to_string(), "cancel", &other]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("{other}: CANCELED"));
    let (code, _, err) = meshctl(&["--orchestrator", &orch.to_string(), "cancel", "no-such-run"]);
    assert_eq!(code, 1);
    assert!(err.contains("NOT_FOUND"), "{err}");
}

#[tokio::test]
async fn when_one_service_crashes_meshctl_up_stops_the_others() {
    let (_tmp, dir) = temp("crash");
    let base = free_block();
    let mut up = meshctl_up(&dir, base, Stdio::piped());
    let mut lines = BufReader::new(up.0.stdout.take().unwrap()).lines();
    let mut summary_pid = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.first() == Some(&"summary") {
            summary_pid = cols.get(2).and_then(|p| p.parse::<i32>().ok());
        }
        if line.starts_with("press Ctrl-C") {
            break;
        }
    }
    let pid = summary_pid.expect("the table shows the summary agent's pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let status = wait_exit(&mut up, Duration::from_secs(30));
    assert_eq!(status.code(), Some(1));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut up.0.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("summary exited"), "{err}");
    for p in base..base + 6 {
        assert!(!port_open(p), "port {p} still open: an orphan");
    }
}

#[tokio::test]
async fn meshctl_demo_writes_the_report_and_leaves_nothing_running() {
    let (_tmp, dir) = temp("demo");
    let base = free_block();
    let out_dir = dir.join("report");
    // Without Python or Node.js on PATH, the demo says which agents it left
    // out, and why, and runs on the Rust agents.
    let out = meshctl_cmd()
        .args(["demo", "--dir"])
        .arg(dir.join("mesh"))
        .arg("--out")
        .arg(&out_dir)
        .args(["--base-port", &base.to_string()])
        .env("PATH", dir.join("empty-path"))
        .output()
        .unwrap();
    let (code, out, err) = (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("forecast agent not started: python3 not found; install Python 3.10+")
            && err.contains("quality agent not started: node not found; install Node.js 20+"),
        "{err}"
    );
    assert!(
        out.contains("Sales performance — Q2 2025") && out.contains("state: COMPLETED"),
        "{out}"
    );
    assert!(
        out.contains("Q2 2025 revenue"),
        "the executive summary is printed: {out}"
    );
    assert!(
        out.contains(&format!(
            "report: {}",
            out_dir.join("report.html").display()
        )),
        "{out}"
    );
    assert!(
        err.contains("dataset: done") && err.contains("summary: done"),
        "progress per step: {err}"
    );
    assert!(out_dir.join("report.html").exists());
    for p in base..base + 6 {
        assert!(!port_open(p), "port {p} still open after the demo");
    }
}
