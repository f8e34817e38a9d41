//! The real workload's path: the Q2 report on the shipped agents, through
//! the orchestrator and through a raw baseline, side by side.
//!
//! ```sh
//! cargo bench -p agentmesh-e2e --bench real_path   # REAL_RUNS=40,160 REAL_ROUNDS=2
//! ```
//!
//! The data, analytics and summary agents and the orchestrator run as
//! separate processes (release builds). Three ways to make the Q2 report's
//! four steps (extract → metrics → charts and summary):
//!
//! - `raw`: this process calls `ExecuteTask` on the agents in the same DAG,
//!   passing each output on as the orchestrator would, and does nothing
//!   else (no validation, retries, events or report);
//! - `plan`: the orchestrator's `Run` with the same steps as an explicit plan;
//! - `goal`: the orchestrator's `Run` with the goal;
//! - `plan-lean`, `goal-lean`: the same, with the stream option that leaves
//!   step outputs out (a client that wants the report, not every dataset).
//!
//! Each is run at 1 and at 16 in flight (`REAL_RUNS` runs each), the modes
//! (`REAL_MODES`, a comma list of the names above; all by default)
//! interleaved over `REAL_ROUNDS` rounds. For each: p50 and p99 latency,
//! runs/s, and CPU per run of the driver (this process for `raw`, the
//! orchestrator otherwise) and of each agent, from /proc. Then the
//! orchestrator's RSS per retained run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentmesh_e2e::mesh::{goal, orchestrator, wait_serving_agents};
use agentmesh_e2e::process::{cpu, env_list, peak_rss_kib, rss_kib};
use agentmesh_e2e::{connect, free_port, run_skill, start_process, temp_dir};
use agentmesh_proto::json::from_opt_struct;
use agentmesh_proto::v1::agent_service_client::AgentServiceClient;
use agentmesh_proto::v1::orchestrator_service_client::OrchestratorServiceClient;
use agentmesh_proto::v1::{
    AGENT_SERVICE_NAME, ORCHESTRATOR_SERVICE_NAME, PlanRequest, PlanSpec, PlanStep, RunRequest,
    RunSpec, RunState, StreamOptions, run_event::Event,
};
use serde_json::Value;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

const GOAL: &str =
    "Generate a Q2 sales performance report with visualizations and an executive summary";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Mode {
    Raw,
    Plan,
    PlanLean,
    Goal,
    GoalLean,
}

impl Mode {
    const ALL: [Self; 5] = [
        Self::Raw,
        Self::Plan,
        Self::PlanLean,
        Self::Goal,
        Self::GoalLean,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Plan => "plan",
            Self::PlanLean => "plan-lean",
            Self::Goal => "goal",
            Self::GoalLean => "goal-lean",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Raw => "raw (Rust client)",
            Self::Plan => "orchestrator, explicit plan",
            Self::PlanLean => "orchestrator, explicit plan, outputs omitted",
            Self::Goal => "orchestrator, goal",
            Self::GoalLean => "orchestrator, goal, outputs omitted",
        }
    }
}

/// Clients of the agents (one connection each, as the orchestrator keeps),
/// by skill prefix.
#[derive(Clone)]
struct Agents {
    data: AgentServiceClient<Channel>,
    analytics: AgentServiceClient<Channel>,
    summary: AgentServiceClient<Channel>,
}

impl Agents {
    fn of(&self, skill: &str) -> AgentServiceClient<Channel> {
        match skill.split('.').next() {
            Some("sales") => self.data.clone(),
            Some("analytics") => self.analytics.clone(),
            _ => self.summary.clone(),
        }
    }
}

/// One run of `plan` made by this process: each step once its inputs are
/// there, steps whose inputs are ready at the same time concurrently.
async fn raw_run(plan: Arc<Vec<PlanStep>>, agents: Agents) {
    let mut outputs: BTreeMap<String, Value> = BTreeMap::new();
    let mut left: Vec<PlanStep> = plan.to_vec();
    while !left.is_empty() {
        let (ready, wait): (Vec<PlanStep>, Vec<PlanStep>) = left.into_iter().partition(|s| {
            s.depends_on
                .iter()
                .chain(s.refs.iter().map(|r| &r.from_step))
                .all(|d| outputs.contains_key(d))
        });
        assert!(!ready.is_empty(), "a step waits on a step that never runs");
        let mut calls = Vec::new();
        for s in ready {
            let mut input = from_opt_struct(s.input.as_ref());
            for r in &s.refs {
                let from = &outputs[&r.from_step];
                let value = if r.pointer.is_empty() {
                    from.clone()
                } else {
                    from.pointer(&r.pointer).cloned().unwrap()
                };
                input.insert(r.field.clone(), value);
            }
            let mut client = agents.of(&s.skill);
            calls.push(tokio::spawn(async move {
                let out = run_skill(&mut client, &s.skill, Value::Object(input)).await;
                let output = out.output.unwrap_or_else(|| panic!("{:?}", out.failure));
                (s.id, Value::Object(output))
            }));
        }
        for c in calls {
            let (id, out) = c.await.unwrap();
            outputs.insert(id, out);
        }
        left = wait;
    }
}

async fn orchestrated(
    client: &mut OrchestratorServiceClient<Channel>,
    spec: RunSpec,
    omit_step_outputs: bool,
) {
    let mut stream = client
        .run(RunRequest {
            spec: Some(spec),
            stream: Some(StreamOptions { omit_step_outputs }),
        })
        .await
        .unwrap()
        .into_inner();
    while let Some(e) = stream.next().await {
        if let Some(Event::Finished(f)) = e.unwrap().event {
            assert_eq!(f.state(), RunState::Completed, "{f:?}");
            return;
        }
    }
    panic!("the run stream ended without a final event");
}

struct Batch {
    latencies: Vec<Duration>,
    wall: Duration,
    cpu: BTreeMap<&'static str, Duration>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // Runs at 1 and at 16 in flight.
    let sizes = env_list("REAL_RUNS", &[40, 160]);
    let batches = [
        (1usize, sizes[0]),
        (16, sizes.get(1).copied().unwrap_or(sizes[0])),
    ];
    let rounds = env_list("REAL_ROUNDS", &[2])[0];
    let modes: Vec<Mode> = match std::env::var("REAL_MODES") {
        Ok(list) => list
            .split(',')
            .map(|name| {
                Mode::ALL
                    .into_iter()
                    .find(|m| m.name() == name.trim())
                    .unwrap_or_else(|| panic!("REAL_MODES: no mode {name:?}"))
            })
            .collect(),
        Err(_) => Mode::ALL.to_vec(),
    };
    let tmp = temp_dir("real-path");
    let dir = tmp.path();
    let addrs = [
        free_port([127, 0, 0, 1]),
        free_port([127, 0, 0, 1]),
        free_port([127, 0, 0, 1]),
    ];
    let mut children = Vec::new();
    for (name, addr) in ["data-agent", "analytics-agent", "summary-agent"]
        .into_iter()
        .zip(addrs)
    {
        children.push(start_process(name, addr, &[], dir, AGENT_SERVICE_NAME).await);
    }
    let agents = Agents {
        data: connect(addrs[0]).await,
        analytics: connect(addrs[1]).await,
        summary: connect(addrs[2]).await,
    };
    let orch_addr = free_port([127, 0, 0, 1]);
    let args: Vec<String> = addrs
        .iter()
        .flat_map(|a| ["--agent".to_string(), a.to_string()])
        .collect();
    let orch = start_process(
        "orchestrator",
        orch_addr,
        &args,
        dir,
        ORCHESTRATOR_SERVICE_NAME,
    )
    .await;
    let mut client = orchestrator(orch_addr).await;
    wait_serving_agents(&mut client, 3).await;
    let pids: Vec<(&'static str, u32)> = vec![
        ("orchestrator", orch.0.id()),
        ("data", children[0].0.id()),
        ("analytics", children[1].0.id()),
        ("summary", children[2].0.id()),
        ("bench", std::process::id()),
    ];

    // The goal's plan, as an explicit plan for `plan` and `raw`.
    let planned = client
        .plan(PlanRequest {
            spec: Some(goal(GOAL)),
        })
        .await
        .unwrap()
        .into_inner()
        .planned
        .unwrap();
    let steps: Vec<PlanStep> = planned.steps.into_iter().filter_map(|s| s.step).collect();
    let skills: Vec<&str> = steps.iter().map(|s| s.skill.as_str()).collect();
    println!("plan: {skills:?}");
    let steps = Arc::new(steps);
    let plan_spec = RunSpec {
        goal: "Q2 report (explicit plan)".into(),
        plan: Some(PlanSpec {
            steps: steps.to_vec(),
        }),
        ..RunSpec::default()
    };

    // Warm up every path once.
    raw_run(Arc::clone(&steps), agents.clone()).await;
    orchestrated(&mut client, plan_spec.clone(), false).await;
    orchestrated(&mut client, goal(GOAL), false).await;

    let mut results: BTreeMap<(usize, Mode), Vec<Batch>> = BTreeMap::new();
    let mut runs_done = 3usize;
    let rss_before = rss_kib(orch.0.id());
    let mut rss_series = vec![(runs_done, rss_before)];
    for _ in 0..rounds {
        for (in_flight, n) in batches {
            for &mode in &modes {
                if n == 0 {
                    continue;
                }
                let before: Vec<Duration> = pids.iter().map(|(_, p)| cpu(*p)).collect();
                let started = Instant::now();
                let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                let mut workers = Vec::new();
                for _ in 0..in_flight {
                    let next = Arc::clone(&next);
                    let steps = Arc::clone(&steps);
                    let agents = agents.clone();
                    let plan_spec = plan_spec.clone();
                    let mut client = orchestrator(orch_addr).await;
                    workers.push(tokio::spawn(async move {
                        let mut lat = Vec::new();
                        while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < n {
                            let t = Instant::now();
                            match mode {
                                Mode::Raw => raw_run(Arc::clone(&steps), agents.clone()).await,
                                Mode::Plan | Mode::PlanLean => {
                                    let lean = mode == Mode::PlanLean;
                                    orchestrated(&mut client, plan_spec.clone(), lean).await;
                                }
                                Mode::Goal | Mode::GoalLean => {
                                    let lean = mode == Mode::GoalLean;
                                    orchestrated(&mut client, goal(GOAL), lean).await;
                                }
                            }
                            lat.push(t.elapsed());
                        }
                        lat
                    }));
                }
                let mut latencies = Vec::new();
                for w in workers {
                    latencies.extend(w.await.unwrap());
                }
                let wall = started.elapsed();
                let cpu = pids
                    .iter()
                    .zip(before)
                    .map(|((name, p), b)| (*name, cpu(*p).saturating_sub(b)))
                    .collect();
                if mode != Mode::Raw {
                    runs_done += n;
                    rss_series.push((runs_done, rss_kib(orch.0.id())));
                }
                results.entry((in_flight, mode)).or_default().push(Batch {
                    latencies,
                    wall,
                    cpu,
                });
            }
        }
    }
    let rss_after = rss_kib(orch.0.id());

    println!(
        "\n| path | in flight | runs | p50 ms | p99 ms | runs/s | driver CPU ms/run | orchestrator | data | analytics | summary |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for ((in_flight, mode), batches) in &results {
        let mut lat: Vec<Duration> = batches
            .iter()
            .flat_map(|b| b.latencies.iter().copied())
            .collect();
        lat.sort();
        let runs = lat.len();
        let wall: Duration = batches.iter().map(|b| b.wall).sum();
        let per_run = |name: &str| {
            let total: Duration = batches.iter().map(|b| b.cpu[name]).sum();
            total.as_secs_f64() * 1e3 / runs as f64
        };
        let pct = |q: f64| lat[((runs as f64 * q) as usize).min(runs - 1)].as_secs_f64() * 1e3;
        let driver = match mode {
            Mode::Raw => per_run("bench"),
            _ => per_run("orchestrator"),
        };
        println!(
            "| {} | {in_flight} | {runs} | {:.1} | {:.1} | {:.1} | {driver:.2} | {:.2} | {:.1} | {:.1} | {:.1} |",
            mode.label(),
            pct(0.5),
            pct(0.99),
            runs as f64 / wall.as_secs_f64(),
            per_run("orchestrator"),
            per_run("data"),
            per_run("analytics"),
            per_run("summary"),
        );
    }
    println!(
        "\norchestrator RSS: {:.1} MiB after the warm-up, {:.1} MiB after {runs_done} runs (peak {:.1} MiB): {:.0} KiB more per run",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        peak_rss_kib(orch.0.id()) as f64 / 1024.0,
        (rss_after.saturating_sub(rss_before)) as f64 / (runs_done - 3).max(1) as f64
    );
    let series: Vec<String> = rss_series
        .iter()
        .map(|(runs, kib)| format!("{runs}: {:.1}", *kib as f64 / 1024.0))
        .collect();
    println!("orchestrator RSS (MiB) after N runs: {}", series.join(", "));
    println!(
        "data agent RSS: {:.1} MiB (peak {:.1} MiB)",
        rss_kib(children[0].0.id()) as f64 / 1024.0,
        peak_rss_kib(children[0].0.id()) as f64 / 1024.0
    );
    drop(orch);
    drop(children);
}
