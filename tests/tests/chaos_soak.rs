//! The chaos soak: the real orchestrator and two replicas of each real
//! agent, each its own process, plus a third analytics replica that answers
//! schema-violating output and a third summary replica whose text misstates
//! every figure. While runs are submitted, a driver SIGKILLs a replica and
//! starts it again, and freezes one (SIGSTOP: it holds its tasks and sends
//! no heartbeat) before thawing it, one disruption at a time.
//!
//! It asserts that every accepted run reaches a terminal state, that none is
//! lost or duplicated, that every failure names its reason, that no task is
//! left running on any agent afterwards (each agent logs its tasks in flight
//! when it is told to stop), and that the orchestrator's memory returns to
//! within 10% of its size when idle after a warm-up.
//!
//! Profiles: `SOAK_RUNS` runs (CI: 200), `SOAK_CLIENTS` clients at once
//! (16). The long profile (its result is in docs/BENCHMARKS.md):
//! `SOAK_RUNS=1000 cargo test --release -p agentmesh-e2e --test chaos_soak -- --nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agentmesh_e2e::mesh::*;
use agentmesh_e2e::process::{env_list, rss_kib};
use agentmesh_e2e::{Child, agent_card, binary, free_port, hermetic, temp_dir, wait_serving};
use agentmesh_proto::error::ErrorReason;
use agentmesh_proto::v1::orchestrator_service_client::OrchestratorServiceClient;
use agentmesh_proto::v1::{
    AGENT_SERVICE_NAME, ListAgentsRequest, ORCHESTRATOR_SERVICE_NAME, RunState, SubmitRequest,
    WatchRunRequest, run_event::Event,
};
use agentmesh_runtime::{Agent, Task, TaskContext, TaskError, TaskOutput};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

/// A whole run may take this long before the soak counts it as hung.
const RUN_BOUND: Duration = Duration::from_secs(120);

/// One agent process the driver may kill, restart, freeze and thaw.
struct Replica {
    binary: &'static str,
    addr: SocketAddr,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Replica {
    async fn start(&mut self) {
        std::fs::create_dir_all(&self.dir).unwrap();
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(binary(self.binary));
        let child = hermetic(&mut cmd)
            .arg("--listen")
            .arg(self.addr.to_string())
            .args(["--log-format", "json"])
            .current_dir(&self.dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(Child(child));
        wait_serving(self.addr, AGENT_SERVICE_NAME, Duration::from_secs(60)).await;
    }

    fn signal(&self, signal: Signal) {
        if let Some(child) = &self.child {
            let pid = Pid::from_raw(i32::try_from(child.0.id()).unwrap());
            kill(pid, signal).unwrap();
        }
    }

    /// Thaws the process, sends it `last` (SIGTERM, SIGKILL) and waits for
    /// it to end.
    fn stop(&mut self, last: Signal) {
        self.signal(Signal::SIGCONT);
        self.signal(last);
        if let Some(mut child) = self.child.take() {
            let _ = child.0.wait();
        }
    }
}

/// The real summary agent, except that every digit of its text is moved on
/// by one: the figures are wrong, the shape is right.
struct Misstating(agentmesh_summary::SummaryAgent, Arc<AtomicU32>);

impl Agent for Misstating {
    fn card(&self) -> agentmesh_proto::v1::AgentCard {
        self.0.card()
    }

    async fn execute(&self, task: Task, ctx: TaskContext) -> Result<TaskOutput, TaskError> {
        let mut out = self.0.execute(task, ctx).await?;
        if let Some(Value::String(text)) = out.output.get_mut("markdown") {
            *text = text
                .chars()
                .map(|c| match c.to_digit(10) {
                    Some(d) => char::from_digit((d + 1) % 10, 10).unwrap_or(c),
                    None => c,
                })
                .collect();
            self.1.fetch_add(1, Ordering::SeqCst);
        }
        Ok(out)
    }
}

/// What the soak saw of one run.
struct Seen {
    run_id: String,
    state: RunState,
    reason: String,
    /// Steps planned, and StepCompleted events per step.
    steps: usize,
    completed: BTreeMap<String, usize>,
    has_report: bool,
    retries: Vec<String>,
}

async fn submit(client: &mut OrchestratorServiceClient<Channel>, text: &str, key: &str) -> String {
    let started = Instant::now();
    loop {
        let mut spec = goal(text);
        spec.idempotency_key = key.to_string();
        match client.submit(SubmitRequest { spec: Some(spec) }).await {
            Ok(r) => return r.into_inner().run_id,
            // Admission is bounded: wait as told and try again.
            Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(s) => panic!("submit {key}: {s:?}"),
        }
        assert!(started.elapsed() < RUN_BOUND, "{key} never admitted");
    }
}

async fn watch(client: &mut OrchestratorServiceClient<Channel>, run_id: &str) -> Seen {
    let mut seen = Seen {
        run_id: run_id.to_string(),
        state: RunState::Unspecified,
        reason: String::new(),
        steps: 0,
        completed: BTreeMap::new(),
        has_report: false,
        retries: Vec::new(),
    };
    let mut after = 0;
    let deadline = Instant::now() + RUN_BOUND;
    // A broken stream is watched again from the last event seen.
    while Instant::now() < deadline {
        let Ok(stream) = client
            .watch_run(WatchRunRequest {
                run_id: run_id.to_string(),
                after_seq: after,
                stream: None,
            })
            .await
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut stream = stream.into_inner();
        while let Ok(Some(Ok(e))) = tokio::time::timeout_at(deadline.into(), stream.next()).await {
            after = e.seq;
            match e.event {
                Some(Event::Planned(p)) => seen.steps = p.steps.len(),
                Some(Event::StepCompleted(c)) => *seen.completed.entry(c.step_id).or_default() += 1,
                Some(Event::StepRetrying(r)) => seen.retries.push(r.reason),
                Some(Event::Finished(f)) => {
                    seen.state = f.state();
                    seen.reason = f.reason.clone();
                    seen.has_report = f.report.is_some();
                    return seen;
                }
                _ => {}
            }
        }
    }
    panic!("run {run_id} did not finish within {RUN_BOUND:?}");
}

/// `in_flight` of the agent's "shutdown: ..." log line (the last one).
fn in_flight_at_shutdown(log: &Path) -> Option<u64> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("shutdown: reporting NOT_SERVING"))
        })
        .filter_map(|v| v["in_flight"].as_u64())
        .next_back()
}

const GOALS: [&str; 4] = [
    "Q2 2025 sales report with charts and an executive summary",
    "executive summary for Europe, Q1 2025",
    "Q4 2024 report vs last year",
    "H1 2025 metrics and charts for online",
];

/// Runs `n` goals from `clients` clients at once; keys `{prefix}-{i}`.
async fn drive(orch: SocketAddr, prefix: &str, n: usize, clients: usize) -> Vec<(String, Seen)> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let next = Arc::clone(&next);
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let mut client = orchestrator(orch).await;
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    return out;
                }
                let key = format!("{prefix}-{i}");
                let id = submit(&mut client, GOALS[i % GOALS.len()], &key).await;
                out.push((key, watch(&mut client, &id).await));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_survive_killed_frozen_and_lying_agents() {
    let runs = env_list("SOAK_RUNS", &[200])[0];
    let clients = env_list("SOAK_CLIENTS", &[16])[0];
    let tmp = temp_dir("soak");
    let root = tmp.path().to_path_buf();

    // Two replicas of each real agent, each its own process and folder.
    let mut replicas = Vec::new();
    for (binary, ip) in [
        ("data-agent", [127, 0, 0, 1]),
        ("data-agent", [127, 0, 0, 2]),
        ("analytics-agent", [127, 0, 0, 1]),
        ("analytics-agent", [127, 0, 0, 2]),
        ("summary-agent", [127, 0, 0, 1]),
        ("summary-agent", [127, 0, 0, 2]),
    ] {
        let n = replicas.len();
        let mut r = Replica {
            binary,
            addr: free_port(ip),
            dir: root.join(format!("{binary}-{n}")),
            log: root.join(format!("{binary}-{n}.log")),
            child: None,
        };
        r.start().await;
        replicas.push(r);
    }
    // The liars, in this process on their own sockets.
    let bogus = Impostor {
        card: agent_card(replicas[2].addr).await,
        answered: Arc::new(AtomicU32::new(0)),
    };
    let bogus_addr = spawn_impostor(bogus.clone()).await;
    let misstated = Arc::new(AtomicU32::new(0));
    let liar_addr = agentmesh_e2e::spawn_agent(Misstating(
        agentmesh_summary::SummaryAgent::deterministic(),
        Arc::clone(&misstated),
    ))
    .await;

    let orch_addr = free_port([127, 0, 0, 1]);
    let orch_log = root.join("orchestrator.log");
    let mut cmd = Command::new(binary("orchestrator"));
    hermetic(&mut cmd)
        .arg("--listen")
        .arg(orch_addr.to_string())
        .env("AGENTMESH_STORE__RETAINED_RUNS", "64")
        .args(["--log-format", "json"])
        .current_dir(&root)
        .stdout(Stdio::null())
        .stderr(File::create(&orch_log).unwrap());
    for a in replicas
        .iter()
        .map(|r| r.addr)
        .chain([bogus_addr, liar_addr])
    {
        cmd.arg("--agent").arg(a.to_string());
    }
    let orch = Child(cmd.spawn().unwrap());
    wait_serving(
        orch_addr,
        ORCHESTRATOR_SERVICE_NAME,
        Duration::from_secs(60),
    )
    .await;
    let mut client = orchestrator(orch_addr).await;
    wait_serving_agents(&mut client, 8).await;

    // Warm up with as many runs as are retained, then measure idle.
    let warm = drive(orch_addr, "warm", 64, clients).await;
    assert!(warm.iter().all(|(_, s)| s.state == RunState::Completed));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_kib(orch.0.id());

    // The driver: one disruption at a time, in turn.
    let stop = Arc::new(AtomicBool::new(false));
    let driver = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let (mut kills, mut freezes) = (0u32, 0u32);
            let mut turn = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let r = &mut replicas[turn % 6];
                if turn.is_multiple_of(2) {
                    r.stop(Signal::SIGKILL);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    r.start().await;
                    kills += 1;
                } else {
                    r.signal(Signal::SIGSTOP);
                    tokio::time::sleep(Duration::from_secs(4)).await;
                    r.signal(Signal::SIGCONT);
                    freezes += 1;
                }
                turn += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            (replicas, kills, freezes)
        })
    };

    let started = Instant::now();
    let seen = drive(orch_addr, "soak", runs, clients).await;
    let took = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let (mut replicas, kills, freezes) = driver.await.unwrap();

    // Every accepted run reached a terminal state, once.
    assert_eq!(seen.len(), runs);
    let ids: BTreeSet<&str> = seen.iter().map(|(_, s)| s.run_id.as_str()).collect();
    assert_eq!(ids.len(), runs, "a run id was given twice");
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    let mut retries: BTreeMap<String, usize> = BTreeMap::new();
    for (key, s) in &seen {
        *states
            .entry(format!("{:?} {}", s.state, s.reason))
            .or_default() += 1;
        for r in &s.retries {
            *retries.entry(r.clone()).or_default() += 1;
        }
        assert!(
            matches!(
                s.state,
                RunState::Completed | RunState::Partial | RunState::Failed | RunState::Canceled
            ),
            "{key}: {:?}",
            s.state
        );
        // Nobody canceled a run: an agent's cancel is not the run's.
        assert_ne!(s.state, RunState::Canceled, "{key}: {}", s.reason);
        if s.state == RunState::Completed {
            assert!(s.has_report, "{key}: completed without a report");
            assert_eq!(s.completed.len(), s.steps, "{key}: steps completed");
            assert!(
                s.completed.values().all(|n| *n == 1),
                "{key}: a step completed twice: {:?}",
                s.completed
            );
        } else {
            assert!(
                ErrorReason::from_name(&s.reason).is_some(),
                "{key}: a failure without a known reason: {:?}",
                s.reason
            );
        }
    }
    println!(
        "soak: {runs} runs from {clients} clients in {took:?}; {kills} kills, {freezes} freezes; \
         {} schema-violating and {} misstated answers; states {states:?}; retries {retries:?}",
        bogus.answered.load(Ordering::SeqCst),
        misstated.load(Ordering::SeqCst),
    );
    let completed = states
        .iter()
        .filter(|(k, _)| k.starts_with("Completed"))
        .map(|(_, n)| n)
        .sum::<usize>();
    assert!(
        completed * 100 >= runs * 95,
        "most runs complete despite the faults: {states:?}"
    );
    assert!(kills >= 1 && freezes >= 1, "the driver disrupted agents");
    assert!(retries.contains_key("OUTPUT_INVALID"), "{retries:?}");
    assert!(bogus.answered.load(Ordering::SeqCst) >= 1);
    assert!(misstated.load(Ordering::SeqCst) >= 1);

    // The same keys again: the same runs, none started twice (for runs
    // still retained: the last submitted).
    let mut client = orchestrator(orch_addr).await;
    for (key, s) in &seen {
        let i: usize = key.trim_start_matches("soak-").parse().unwrap();
        if i + 10 < runs {
            continue;
        }
        let again = submit(&mut client, GOALS[i % GOALS.len()], key).await;
        assert_eq!(again, s.run_id, "{key} started a second run");
    }

    // Nothing left in flight at the orchestrator; its memory back to idle.
    let agents = client
        .list_agents(ListAgentsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        agents.endpoints.iter().all(|e| e.in_flight == 0),
        "{:?}",
        agents
            .endpoints
            .iter()
            .map(|e| (&e.address, e.in_flight))
            .collect::<Vec<_>>()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(orch.0.id());
    println!("orchestrator RSS: {idle} KiB idle after the warm-up, {after} KiB after the soak");
    assert!(
        after * 10 <= idle * 11,
        "orchestrator RSS {after} KiB after the soak, {idle} KiB idle"
    );

    // No task left running on any agent: each says so as it stops.
    for r in &mut replicas {
        r.stop(Signal::SIGTERM);
        assert_eq!(
            in_flight_at_shutdown(&r.log),
            Some(0),
            "{} at {}: tasks in flight at shutdown (log {})",
            r.binary,
            r.addr,
            r.log.display()
        );
    }
    drop(orch);
}
