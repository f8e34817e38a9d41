//! The orchestrator's own cost per delegated step, side by side with raw
//! tonic calls to the same agents, in one process run:
//!
//! 1. `unary x3`: three `grpc.health.v1.Health/Check` unary calls in
//!    parallel, one per no-op agent (a plain tonic fan-out);
//! 2. `execute x3`: three `ExecuteTask` streams straight to the agents,
//!    read to the end (the calls the orchestrator makes);
//! 3. `hop`: one unary `Health/Check` to the orchestrator: the client's
//!    own round trip to it, which any orchestrator adds once per run;
//! 4. `replay`: `WatchRun` of a finished run of the same plan: streaming
//!    the same events to the client, with no delegation behind them;
//! 5. `orchestrator`: the same three tasks as a plan through `Run`.
//!
//! Each at 1 and 64 runs in flight; prints p50/p99 latency, runs/s, the
//! overhead per step against both baselines, and peak RSS.
//!
//! `cargo bench -p agentmesh-orchestrator --bench overhead` (set
//! `BENCH_SECONDS` to change the time per case; default 5).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use agentmesh_orchestrator::OrchestratorConfig;
use agentmesh_proto::v1::agent_service_client::AgentServiceClient;
use agentmesh_proto::v1::orchestrator_service_client::OrchestratorServiceClient;
use agentmesh_proto::v1::{
    AgentCard, EndpointHealth, ExecuteTaskRequest, ListAgentsRequest, PlanSpec, PlanStep,
    RunRequest, RunSpec, SubmitRequest, WatchRunRequest,
};
use agentmesh_runtime::{Agent, ServerConfig, SkillSpec, Task, TaskContext, TaskError, TaskOutput};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const SKILLS: [&str; 3] = ["noop.a", "noop.b", "noop.c"];

struct Noop(&'static str);

impl Agent for Noop {
    fn card(&self) -> AgentCard {
        AgentCard {
            name: self.0.into(),
            version: "0".into(),
            skills: vec![SkillSpec::new(self.0, "does nothing").build()],
            ..AgentCard::default()
        }
    }
    async fn execute(&self, _: Task, _: TaskContext) -> Result<TaskOutput, TaskError> {
        Ok(TaskOutput::default())
    }
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .tcp_nodelay(true)
        .connect()
        .await
        .unwrap()
}

#[derive(Clone)]
struct Clients {
    health: Vec<HealthClient<Channel>>,
    agents: Vec<AgentServiceClient<Channel>>,
    orch: OrchestratorServiceClient<Channel>,
    orch_health: HealthClient<Channel>,
    finished_run: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Case {
    Unary,
    Execute,
    Hop,
    Replay,
    Orchestrator,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Unary => "unary x3 (raw tonic)",
            Case::Execute => "execute x3 (raw tonic)",
            Case::Hop => "hop: unary to orchestrator",
            Case::Replay => "replay: WatchRun (same events)",
            Case::Orchestrator => "orchestrator Run (3 steps)",
        }
    }
}

async fn one_run(c: &mut Clients, case: Case, n: u64) {
    match case {
        Case::Unary => {
            let calls = c.health.iter_mut().map(|h| {
                let mut h = h.clone();
                async move {
                    h.check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .unwrap();
                }
            });
            futures_util::future::join_all(calls).await;
        }
        Case::Execute => {
            let calls = c.agents.iter().zip(SKILLS).map(|(a, skill)| {
                let mut a = a.clone();
                async move {
                    let mut s = a
                        .execute_task(ExecuteTaskRequest {
                            task_id: format!("bench-{skill}-{n}-{}", fastrand::u64(..)),
                            skill_id: skill.into(),
                            attempt: 1,
                            ..ExecuteTaskRequest::default()
                        })
                        .await
                        .unwrap()
                        .into_inner();
                    while let Some(ev) = s.next().await {
                        ev.unwrap();
                    }
                }
            });
            futures_util::future::join_all(calls).await;
        }
        Case::Hop => {
            c.orch_health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .unwrap();
        }
        Case::Replay => {
            let mut s = c
                .orch
                .watch_run(WatchRunRequest {
                    run_id: c.finished_run.clone(),
                    after_seq: 0,
                })
                .await
                .unwrap()
                .into_inner();
            while let Some(ev) = s.next().await {
                ev.unwrap();
            }
        }
        Case::Orchestrator => {
            let spec = plan();
            let mut s = c
                .orch
                .run(RunRequest { spec: Some(spec) })
                .await
                .unwrap()
                .into_inner();
            let mut last = None;
            let mut retries = Vec::new();
            while let Some(ev) = s.next().await {
                let ev = ev.unwrap();
                if let Some(agentmesh_proto::v1::run_event::Event::StepRetrying(r)) = &ev.event {
                    retries.push(r.clone());
                }
                last = Some(ev);
            }
            // Every run must complete, in one attempt per step: a retry
            // would hide in the latency numbers.
            let finished = match last.and_then(|e| e.event) {
                Some(agentmesh_proto::v1::run_event::Event::Finished(f)) => f,
                other => panic!("run did not finish: {other:?}"),
            };
            assert_eq!(
                finished.state(),
                agentmesh_proto::v1::RunState::Completed,
                "{finished:?}"
            );
            let report = finished.report.unwrap_or_default();
            assert!(
                report.provenance.iter().all(|p| p.attempts == 1),
                "a step was retried: {retries:?}"
            );
        }
    }
}

fn plan() -> RunSpec {
    let steps = SKILLS
        .iter()
        .enumerate()
        .map(|(i, s)| PlanStep {
            id: format!("s{i}"),
            skill: (*s).into(),
            ..PlanStep::default()
        })
        .collect();
    RunSpec {
        goal: "bench".into(),
        plan: Some(PlanSpec { steps }),
        ..RunSpec::default()
    }
}

struct Stats {
    p50: Duration,
    p99: Duration,
    max: Duration,
    per_sec: f64,
}

async fn measure(clients: &Clients, case: Case, in_flight: usize, time: Duration) -> Stats {
    // Warm up connections and code paths.
    let mut warm = clients.clone();
    for n in 0..200 {
        one_run(&mut warm, case, n).await;
    }
    let start = Instant::now();
    let until = start + time;
    let workers = (0..in_flight).map(|w| {
        let mut c = clients.clone();
        tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut n = w as u64 * 1_000_000;
            while Instant::now() < until {
                let t = Instant::now();
                one_run(&mut c, case, n).await;
                lat.push(t.elapsed());
                n += 1;
            }
            lat
        })
    });
    let mut all = Vec::new();
    for w in futures_util::future::join_all(workers).await {
        all.extend(w.unwrap());
    }
    let elapsed = start.elapsed();
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Stats {
        p50: pct(0.50),
        p99: pct(0.99),
        max: all[all.len() - 1],
        per_sec: all.len() as f64 / elapsed.as_secs_f64(),
    }
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::main]
async fn main() {
    let secs: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let time = Duration::from_secs(secs);
    let agent_cfg = ServerConfig {
        max_concurrent_tasks: 1_024,
        ..ServerConfig::default()
    };
    let mut addrs = Vec::new();
    for skill in SKILLS {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(listener.local_addr().unwrap());
        tokio::spawn(agentmesh_runtime::serve(
            Noop(skill),
            listener,
            agent_cfg.clone(),
            std::future::pending(),
        ));
    }
    let mut cfg = OrchestratorConfig::default();
    cfg.discovery.endpoints = addrs.iter().map(ToString::to_string).collect();
    cfg.discovery.health_check_ms = 100;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let orch_addr = listener.local_addr().unwrap();
    tokio::spawn(agentmesh_orchestrator::serve(
        cfg,
        listener,
        std::future::pending(),
    ));

    let orch_channel = channel(orch_addr).await;
    let mut orch = OrchestratorServiceClient::new(orch_channel.clone());
    loop {
        let ready = orch
            .list_agents(ListAgentsRequest {})
            .await
            .unwrap()
            .into_inner()
            .endpoints
            .iter()
            .filter(|e| e.health() == EndpointHealth::Serving && e.card.is_some())
            .count();
        if ready == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut clients = Clients {
        health: Vec::new(),
        agents: Vec::new(),
        orch,
        orch_health: HealthClient::new(orch_channel),
        finished_run: String::new(),
    };
    for addr in &addrs {
        let ch = channel(*addr).await;
        clients.health.push(HealthClient::new(ch.clone()));
        clients.agents.push(AgentServiceClient::new(ch));
    }

    println!(
        "{:<28} {:>9} {:>10} {:>10} {:>10} {:>10}",
        "case", "in flight", "p50 µs", "p99 µs", "max µs", "runs/s"
    );
    for in_flight in [1usize, 64] {
        // A fresh finished run to replay (older ones leave by retention).
        clients.finished_run = clients
            .orch
            .submit(SubmitRequest { spec: Some(plan()) })
            .await
            .unwrap()
            .into_inner()
            .run_id;
        one_run(&mut clients.clone(), Case::Replay, 0).await;
        let mut results = Vec::new();
        let only = std::env::var("BENCH_ONLY").ok();
        for case in [
            Case::Unary,
            Case::Execute,
            Case::Hop,
            Case::Replay,
            Case::Orchestrator,
        ] {
            if only
                .as_deref()
                .is_some_and(|o| !o.split(',').any(|c| c == case.name()))
            {
                continue;
            }
            let s = measure(&clients, case, in_flight, time).await;
            println!(
                "{:<28} {:>9} {:>10.0} {:>10.0} {:>10.0} {:>10.0}",
                case.name(),
                in_flight,
                us(s.p50),
                us(s.p99),
                us(s.max),
                s.per_sec
            );
            results.push(s);
        }
        if results.len() < 5 {
            continue;
        }
        let (unary, exec, hop, replay, orch) = (
            &results[0],
            &results[1],
            &results[2],
            &results[3],
            &results[4],
        );
        // Latency view: what the orchestrator adds to the critical path,
        // beyond the raw fan-out and the client's own hop, per step.
        let own = (us(orch.p50) - us(exec.p50) - us(hop.p50)) / 3.0;
        println!(
            "  p50: orchestrator {:.0} µs = execute x3 {:.0} + hop {:.0} + {:.1} µs per step ({:.2}x the raw fan-out; {:.2}x unary x3)",
            us(orch.p50),
            us(exec.p50),
            us(hop.p50),
            own,
            us(orch.p50) / us(exec.p50),
            us(orch.p50) / us(unary.p50),
        );
        // Throughput view: CPU time per run at saturation (everything runs
        // in this process on the same cores).
        let cost = |s: &Stats| 1e6 / s.per_sec;
        println!(
            "  runs/s: orchestrator costs {:.0} µs per run vs execute x3 {:.0} + hop {:.0}: {:.1} µs per step",
            cost(orch),
            cost(exec),
            cost(hop),
            (cost(orch) - cost(exec) - cost(hop)) / 3.0,
        );
        println!(
            "  delegation alone (events streamed as in replay): {:.1} µs per step at p50, {:.1} µs per step from runs/s",
            (us(orch.p50) - us(exec.p50) - us(replay.p50)) / 3.0,
            (cost(orch) - cost(exec) - cost(replay)) / 3.0,
        );
    }
    println!(
        "peak RSS of the whole benchmark process: {:.1} MiB",
        peak_rss_mib()
    );
}
