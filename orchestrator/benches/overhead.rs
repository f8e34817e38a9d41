//! The orchestrator's own cost per delegated step, side by side with raw
//! tonic calls to the same agents, in one process run:
//!
//! 1. `unary x3`: three `grpc.health.v1.Health/Check` unary calls in
//!    parallel, one per no-op agent (a plain tonic fan-out);
//! 2. `execute x3`: three `ExecuteTask` streams straight to the agents,
//!    read to the end, with only task id and skill set; and `execute x3,
//!    full`: the same calls carrying everything the orchestrator's calls
//!    carry (input, run id, idempotency key, deadline and `grpc-timeout`,
//!    heartbeat interval, trace context), which the agent acts on;
//! 3. `hop`: one unary `Health/Check` to the orchestrator: the client's
//!    own round trip to it, which any orchestrator adds once per run;
//! 4. `replay`: `WatchRun` of a finished run of the same plan: streaming
//!    the same events to the client, with no delegation behind them;
//! 5. `orchestrator`: the same three tasks as a plan through `Run`;
//! 6. `orchestrator Run, SQLite store`: the same, by a second orchestrator
//!    whose runs are also written to an SQLite file (`store.path`);
//! 7. `orchestrator Run, PostgreSQL store`: the same, by a third whose
//!    runs live in PostgreSQL (`store.url`), when `BENCH_PG_URL` names an
//!    empty database (skipped otherwise).
//!
//! Each at 1 and 64 runs in flight; prints p50/p99 latency, runs/s, the
//! overhead per step against both baselines, and peak RSS.
//!
//! The cases take turns: each runs `BENCH_ROUNDS` slices (default 5) of
//! its time, one case after the other, so that the machine's speed drifting
//! over minutes reaches every case alike instead of skewing the differences
//! between them.
//!
//! `cargo bench -p agentmesh-orchestrator --bench overhead` (set
//! `BENCH_SECONDS` to change the time per case, default 5; `BENCH_ROUNDS`;
//! `BENCH_ONLY` to a `;` list of case names; `BENCH_IN_FLIGHT` to a comma
//! list of concurrency levels, default `1,64`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use agentmesh_orchestrator::OrchestratorConfig;
use agentmesh_proto::v1::agent_service_client::AgentServiceClient;
use agentmesh_proto::v1::orchestrator_service_client::OrchestratorServiceClient;
use agentmesh_proto::v1::orchestrator_service_server::{
    OrchestratorService, OrchestratorServiceServer,
};
use agentmesh_proto::v1::{
    AgentCard, EndpointHealth, ExecuteTaskRequest, ListAgentsRequest, PlanSpec, PlanStep, RunEvent,
    RunFinished, RunPlanned, RunRequest, RunSpec, RunState, StepCompleted, StepStarted,
    StepTaskEvent, SubmitRequest, TaskEvent, TaskState, TraceContext, WatchRunRequest, run_event,
    task_event,
};
use agentmesh_runtime::{Agent, ServerConfig, SkillSpec, Task, TaskContext, TaskError, TaskOutput};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// The floor: a minimal relay with the orchestrator's API shape and none of
/// its machinery (no validation, routing, retries, leases, store or
/// report). `Run` spawns one task that sends the same three `ExecuteTask`
/// calls and streams the same 11 kinds of events through a channel.
#[derive(Clone)]
struct Relay {
    agents: Vec<(&'static str, AgentServiceClient<Channel>)>,
}

type RelayStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<RunEvent, tonic::Status>> + Send>>;

fn relay_event(run_id: &str, seq: &mut u64, event: run_event::Event) -> RunEvent {
    *seq += 1;
    RunEvent {
        run_id: run_id.to_string(),
        seq: *seq,
        time: Some(SystemTime::now().into()),
        event: Some(event),
    }
}

#[tonic::async_trait]
impl OrchestratorService for Relay {
    type RunStream = RelayStream;
    type WatchRunStream = RelayStream;

    async fn run(
        &self,
        _: tonic::Request<RunRequest>,
    ) -> Result<tonic::Response<RelayStream>, tonic::Status> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let agents = self.agents.clone();
        tokio::spawn(async move {
            let run_id = uuid::Uuid::new_v4().to_string();
            let seq = std::sync::Mutex::new(0u64);
            let send = |e: run_event::Event| {
                let ev = relay_event(&run_id, &mut seq.lock().unwrap(), e);
                let _ = tx.try_send(Ok(ev));
            };
            send(run_event::Event::Planned(RunPlanned::default()));
            let steps = agents.into_iter().map(|(skill, mut client)| {
                let send = &send;
                let run_id = &run_id;
                async move {
                    send(run_event::Event::StepStarted(StepStarted {
                        step_id: skill.into(),
                        ..StepStarted::default()
                    }));
                    let request = full_request(run_id, skill);
                    let mut s = client.execute_task(request).await.unwrap().into_inner();
                    let mut output = None;
                    while let Some(ev) = s.next().await {
                        match ev.unwrap().event {
                            Some(task_event::Event::Status(st))
                                if st.state() == TaskState::Working =>
                            {
                                send(run_event::Event::StepEvent(StepTaskEvent {
                                    step_id: skill.into(),
                                    attempt: 1,
                                    event: Some(TaskEvent {
                                        event: Some(task_event::Event::Status(st)),
                                        ..TaskEvent::default()
                                    }),
                                }));
                            }
                            Some(task_event::Event::Result(r)) => output = r.output,
                            _ => {}
                        }
                    }
                    send(run_event::Event::StepCompleted(StepCompleted {
                        step_id: skill.into(),
                        output,
                        provenance: None,
                        output_omitted: false,
                        step_artifacts: Vec::new(),
                    }));
                }
            });
            futures_util::future::join_all(steps).await;
            send(run_event::Event::Finished(RunFinished {
                state: RunState::Completed.into(),
                ..RunFinished::default()
            }));
        });
        Ok(tonic::Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
    async fn submit(
        &self,
        _: tonic::Request<SubmitRequest>,
    ) -> Result<tonic::Response<agentmesh_proto::v1::SubmitResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("relay"))
    }
    async fn get_run(
        &self,
        _: tonic::Request<agentmesh_proto::v1::GetRunRequest>,
    ) -> Result<tonic::Response<agentmesh_proto::v1::GetRunResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("relay"))
    }
    async fn watch_run(
        &self,
        _: tonic::Request<WatchRunRequest>,
    ) -> Result<tonic::Response<RelayStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("relay"))
    }
    async fn cancel_run(
        &self,
        _: tonic::Request<agentmesh_proto::v1::CancelRunRequest>,
    ) -> Result<tonic::Response<agentmesh_proto::v1::CancelRunResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("relay"))
    }
    async fn list_runs(
        &self,
        _: tonic::Request<agentmesh_proto::v1::ListRunsRequest>,
    ) -> Result<tonic::Response<agentmesh_proto::v1::ListRunsResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("relay"))
    }
    async fn plan(
        &self,
        _: tonic::Request<agentmesh_proto::v1::PlanRequest>,
    ) -> Result<tonic::Response<agentmesh_proto::v1::PlanResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("relay"))
    }
    async fn list_agents(
        &self,
        _: tonic::Request<ListAgentsRequest>,
    ) -> Result<tonic::Response<agentmesh_proto::v1::ListAgentsResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("relay"))
    }
    async fn provide_input(
        &self,
        _: tonic::Request<agentmesh_proto::v1::ProvideInputRequest>,
    ) -> Result<tonic::Response<agentmesh_proto::v1::ProvideInputResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("relay"))
    }
}

/// The request the orchestrator sends for a step, built the same way.
fn full_request(run_id: &str, skill: &str) -> tonic::Request<ExecuteTaskRequest> {
    let deadline = Duration::from_secs(60);
    let mut request = tonic::Request::new(ExecuteTaskRequest {
        task_id: format!("{run_id}/{skill}/1"),
        run_id: run_id.to_string(),
        skill_id: skill.into(),
        input: Some(agentmesh_proto::prost_types::Struct::default()),
        idempotency_key: format!("{run_id}/{skill}"),
        attempt: 1,
        deadline: Some((SystemTime::now() + deadline).into()),
        heartbeat_interval: Duration::from_secs(1).try_into().ok(),
        trace: Some(TraceContext {
            traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
            tracestate: String::new(),
        }),
        ..ExecuteTaskRequest::default()
    });
    request.set_timeout(deadline);
    request
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
    relay: OrchestratorServiceClient<Channel>,
    durable: OrchestratorServiceClient<Channel>,
    shared: Option<OrchestratorServiceClient<Channel>>,
    finished_run: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Case {
    Unary,
    Execute,
    ExecuteFull,
    Hop,
    Relay,
    Replay,
    Orchestrator,
    Durable,
    Shared,
}

impl Case {
    /// Every case, in the order they run.
    const ALL: [Case; 9] = [
        Case::Unary,
        Case::Execute,
        Case::ExecuteFull,
        Case::Hop,
        Case::Replay,
        Case::Relay,
        Case::Orchestrator,
        Case::Durable,
        Case::Shared,
    ];

    fn name(self) -> &'static str {
        match self {
            Case::Unary => "unary x3 (raw tonic)",
            Case::Execute => "execute x3 (raw tonic)",
            Case::ExecuteFull => "execute x3, full (raw tonic)",
            Case::Hop => "hop: unary to orchestrator",
            Case::Relay => "floor: minimal relay Run",
            Case::Replay => "replay: WatchRun (same events)",
            Case::Orchestrator => "orchestrator Run (3 steps)",
            Case::Durable => "orchestrator Run, SQLite store",
            Case::Shared => "orchestrator Run, PostgreSQL store",
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
            execute_x3(&c.agents, |skill| {
                tonic::Request::new(ExecuteTaskRequest {
                    task_id: format!("bench-{skill}-{n}-{}", fastrand::u64(..)),
                    skill_id: skill.into(),
                    attempt: 1,
                    ..ExecuteTaskRequest::default()
                })
            })
            .await;
        }
        Case::ExecuteFull => {
            // One run id for the three calls, as the orchestrator sends.
            let run_id = uuid::Uuid::new_v4().to_string();
            execute_x3(&c.agents, |skill| full_request(&run_id, skill)).await;
        }
        Case::Relay => {
            let mut s = c
                .relay
                .run(RunRequest {
                    spec: Some(plan()),
                    stream: None,
                })
                .await
                .unwrap()
                .into_inner();
            let mut n = 0;
            while let Some(ev) = s.next().await {
                ev.unwrap();
                n += 1;
            }
            assert_eq!(n, 11);
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
                    stream: None,
                })
                .await
                .unwrap()
                .into_inner();
            while let Some(ev) = s.next().await {
                ev.unwrap();
            }
        }
        Case::Orchestrator | Case::Durable | Case::Shared => {
            let spec = plan();
            let orch = match case {
                Case::Durable => &mut c.durable,
                Case::Shared => c.shared.as_mut().expect("BENCH_PG_URL set"),
                _ => &mut c.orch,
            };
            let mut s = orch
                .run(RunRequest {
                    spec: Some(spec),
                    stream: None,
                })
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

/// Three `ExecuteTask` calls in parallel, one per agent, each read to the
/// end of its stream.
async fn execute_x3(
    agents: &[AgentServiceClient<Channel>],
    request: impl Fn(&'static str) -> tonic::Request<ExecuteTaskRequest>,
) {
    let calls = agents.iter().zip(SKILLS).map(|(a, skill)| {
        let mut a = a.clone();
        let request = request(skill);
        async move {
            let mut s = a.execute_task(request).await.unwrap().into_inner();
            while let Some(ev) = s.next().await {
                ev.unwrap();
            }
        }
    });
    futures_util::future::join_all(calls).await;
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
    cpu_per_run: Duration,
}

/// One case's latencies, wall time and CPU time, gathered over its slices.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    wall: Duration,
    cpu: Duration,
}

impl Tally {
    fn stats(mut self) -> Stats {
        let all = &mut self.latencies;
        all.sort_unstable();
        let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
        Stats {
            p50: pct(0.50),
            p99: pct(0.99),
            max: all[all.len() - 1],
            per_sec: all.len() as f64 / self.wall.as_secs_f64(),
            cpu_per_run: self.cpu / u32::try_from(all.len()).unwrap_or(u32::MAX),
        }
    }
}

/// Makes the `replay` case replay a run that has just finished (older ones
/// leave the store by retention).
async fn replay_fresh_run(clients: &mut Clients) {
    clients.finished_run = clients
        .orch
        .submit(SubmitRequest { spec: Some(plan()) })
        .await
        .unwrap()
        .into_inner()
        .run_id;
    // Follows the run to its end.
    one_run(&mut clients.clone(), Case::Replay, 0).await;
}

/// Warms up connections and code paths.
async fn warm_up(clients: &Clients, case: Case) {
    let mut warm = clients.clone();
    for n in 0..200 {
        one_run(&mut warm, case, n).await;
    }
}

/// Runs `case` for `time` with `in_flight` runs at once, into `tally`.
async fn slice(clients: &Clients, case: Case, in_flight: usize, time: Duration, tally: &mut Tally) {
    let cpu_before = process_cpu();
    let start = Instant::now();
    let until = start + time;
    let workers = (0..in_flight).map(|w| {
        let mut c = clients.clone();
        let first = tally.latencies.len() as u64 + w as u64 * 1_000_000;
        tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut n = first;
            while Instant::now() < until {
                let t = Instant::now();
                one_run(&mut c, case, n).await;
                lat.push(t.elapsed());
                n += 1;
            }
            lat
        })
    });
    for w in futures_util::future::join_all(workers).await {
        tally.latencies.extend(w.unwrap());
    }
    tally.wall += start.elapsed();
    tally.cpu += process_cpu().saturating_sub(cpu_before);
}

/// CPU time used so far by this process's live threads (the runtime's
/// workers do all the work): the sum of each thread's time on a CPU, in
/// nanoseconds, from `/proc/self/task/*/schedstat`.
fn process_cpu() -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let ns: u64 = tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(ns)
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

/// Serves an orchestrator with `cfg` and waits until it sees the three
/// agents SERVING.
async fn start_orchestrator(cfg: OrchestratorConfig) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(agentmesh_orchestrator::serve(
        cfg,
        listener,
        std::future::pending(),
    ));
    let mut orch = OrchestratorServiceClient::new(channel(addr).await);
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
            return addr;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main]
async fn main() {
    let secs: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let time = Duration::from_secs(secs);
    let rounds: u32 = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&r| r > 0)
        .unwrap_or(5);
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
    cfg.discovery.health_check = Duration::from_millis(100);
    let orch_addr = start_orchestrator(cfg.clone()).await;
    // The same orchestrator keeping its runs in an SQLite file as well.
    let store_dir = tempfile::tempdir().unwrap();
    cfg.store.path = Some(store_dir.path().join("runs.db"));
    let durable_addr = start_orchestrator(cfg.clone()).await;
    // And one on PostgreSQL, given a database.
    let shared_addr = match std::env::var("BENCH_PG_URL") {
        Ok(url) => {
            cfg.store.path = None;
            cfg.store.url = Some(url);
            Some(start_orchestrator(cfg).await)
        }
        Err(_) => None,
    };
    let orch_channel = channel(orch_addr).await;
    let orch = OrchestratorServiceClient::new(orch_channel.clone());
    // The floor relay, with its own connections to the agents.
    let mut relay = Relay { agents: Vec::new() };
    for (addr, skill) in addrs.iter().zip(SKILLS) {
        relay
            .agents
            .push((skill, AgentServiceClient::new(channel(*addr).await)));
    }
    let relay_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_addr = relay_listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(OrchestratorServiceServer::new(relay))
            .serve_with_incoming(
                tonic::transport::server::TcpIncoming::from(relay_listener)
                    .with_nodelay(Some(true)),
            ),
    );
    let mut clients = Clients {
        health: Vec::new(),
        agents: Vec::new(),
        orch,
        orch_health: HealthClient::new(orch_channel),
        relay: OrchestratorServiceClient::new(channel(relay_addr).await),
        durable: OrchestratorServiceClient::new(channel(durable_addr).await),
        shared: match shared_addr {
            Some(addr) => Some(OrchestratorServiceClient::new(channel(addr).await)),
            None => None,
        },
        finished_run: String::new(),
    };
    for addr in &addrs {
        let ch = channel(*addr).await;
        clients.health.push(HealthClient::new(ch.clone()));
        clients.agents.push(AgentServiceClient::new(ch));
    }

    println!(
        "{:<30} {:>9} {:>8} {:>8} {:>8} {:>8} {:>11}",
        "case", "in flight", "p50 µs", "p99 µs", "max µs", "runs/s", "CPU µs/run"
    );
    let levels: Vec<usize> = std::env::var("BENCH_IN_FLIGHT")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 64]);
    for in_flight in levels {
        let only = std::env::var("BENCH_ONLY").ok();
        let cases: Vec<Case> = Case::ALL
            .into_iter()
            .filter(|case| {
                only.as_deref()
                    .is_none_or(|o| o.split(';').any(|c| c.trim() == case.name()))
            })
            .filter(|case| *case != Case::Shared || clients.shared.is_some())
            .collect();
        for &case in &cases {
            if case == Case::Replay {
                replay_fresh_run(&mut clients).await;
            }
            warm_up(&clients, case).await;
        }
        // The cases take turns, in `rounds` slices each, so that the
        // machine's drift over minutes reaches every case alike.
        let mut tallies: Vec<Tally> = cases.iter().map(|_| Tally::default()).collect();
        for _ in 0..rounds {
            for (&case, tally) in cases.iter().zip(&mut tallies) {
                if case == Case::Replay {
                    // Runs of the other cases may have retired the last one.
                    replay_fresh_run(&mut clients).await;
                }
                slice(&clients, case, in_flight, time / rounds, tally).await;
            }
        }
        let mut results = Vec::new();
        for (case, tally) in cases.into_iter().zip(tallies) {
            let s = tally.stats();
            println!(
                "{:<30} {:>9} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>11.0}",
                case.name(),
                in_flight,
                us(s.p50),
                us(s.p99),
                us(s.max),
                s.per_sec,
                us(s.cpu_per_run),
            );
            results.push((case, s));
        }
        let get = |c: Case| results.iter().find(|(k, _)| *k == c).map(|(_, s)| s);
        // The single-run view alone, when only its cases ran.
        if let (Some(full), Some(hop), Some(orch)) = (
            get(Case::ExecuteFull),
            get(Case::Hop),
            get(Case::Orchestrator),
        ) && results.len() < Case::ALL.len()
        {
            println!(
                "  p50: orchestrator {:.0} µs = execute x3, full {:.0} + hop {:.0} + {:.1} µs per step",
                us(orch.p50),
                us(full.p50),
                us(hop.p50),
                (us(orch.p50) - us(full.p50) - us(hop.p50)) / 3.0,
            );
        }
        let (Some(unary), Some(exec), Some(full), Some(hop), Some(replay), Some(relay), Some(orch)) = (
            get(Case::Unary),
            get(Case::Execute),
            get(Case::ExecuteFull),
            get(Case::Hop),
            get(Case::Replay),
            get(Case::Relay),
            get(Case::Orchestrator),
        ) else {
            continue;
        };
        // Latency view: what the orchestrator adds to the critical path,
        // beyond the same three calls made directly and the client's own
        // hop, per step.
        let per_step = |base: &Stats| (us(orch.p50) - us(base.p50) - us(hop.p50)) / 3.0;
        println!(
            "  p50: orchestrator {:.0} µs = execute x3, full {:.0} + hop {:.0} + {:.1} µs per step ({:.1} µs per step against execute x3 with bare requests; {:.2}x unary x3)",
            us(orch.p50),
            us(full.p50),
            us(hop.p50),
            per_step(full),
            per_step(exec),
            us(orch.p50) / us(unary.p50),
        );
        // Throughput view: wall time per run at saturation (everything runs
        // in this process on the same cores).
        let cost = |s: &Stats| 1e6 / s.per_sec;
        println!(
            "  runs/s: orchestrator costs {:.0} µs per run vs execute x3, full {:.0} + hop {:.0}: {:.1} µs per step",
            cost(orch),
            cost(full),
            cost(hop),
            (cost(orch) - cost(full) - cost(hop)) / 3.0,
        );
        println!(
            "  CPU: orchestrator {:.0} µs per run vs execute x3, full {:.0} + hop {:.0}: {:.1} µs per step",
            us(orch.cpu_per_run),
            us(full.cpu_per_run),
            us(hop.cpu_per_run),
            (us(orch.cpu_per_run) - us(full.cpu_per_run) - us(hop.cpu_per_run)) / 3.0,
        );
        println!(
            "  floor: the minimal relay costs {:.1} µs per step at p50 and {:.1} µs of CPU per step; the orchestrator {:.1} µs per step at p50 more than the relay",
            (us(relay.p50) - us(full.p50) - us(hop.p50)) / 3.0,
            (us(relay.cpu_per_run) - us(full.cpu_per_run) - us(hop.cpu_per_run)) / 3.0,
            (us(orch.p50) - us(relay.p50)) / 3.0,
        );
        println!(
            "  delegation alone (events streamed as in replay): {:.1} µs per step at p50, {:.1} µs per step from runs/s",
            (us(orch.p50) - us(full.p50) - us(replay.p50)) / 3.0,
            (cost(orch) - cost(full) - cost(replay)) / 3.0,
        );
        if let Some(durable) = get(Case::Durable) {
            println!(
                "  SQLite store: {:.0} µs more per run at p50 than in memory, {:.0} µs more wall time per run from runs/s, {:.0} µs more CPU per run",
                us(durable.p50) - us(orch.p50),
                cost(durable) - cost(orch),
                us(durable.cpu_per_run) - us(orch.cpu_per_run),
            );
        }
        if let Some(shared) = get(Case::Shared) {
            println!(
                "  PostgreSQL store: {:.0} µs more per run at p50 than in memory, {:.0} µs more wall time per run from runs/s, {:.0} µs more CPU per run (this process's)",
                us(shared.p50) - us(orch.p50),
                cost(shared) - cost(orch),
                us(shared.cpu_per_run) - us(orch.cpu_per_run),
            );
        }
    }
    println!(
        "peak RSS of the whole benchmark process: {:.1} MiB",
        peak_rss_mib()
    );
}
