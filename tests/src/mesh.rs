//! Helpers for orchestrator tests: controllable agents served on real
//! loopback sockets, an in-process orchestrator, plan builders and event
//! collection.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentmesh_orchestrator::OrchestratorConfig;
use agentmesh_proto::json::{from_opt_struct, to_struct};
use agentmesh_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use agentmesh_proto::v1::orchestrator_service_client::OrchestratorServiceClient;
use agentmesh_proto::v1::{
    AGENT_SERVICE_NAME, AgentCard, CancelTaskRequest, CancelTaskResponse, EndpointHealth,
    ExecuteTaskRequest, GetAgentCardRequest, GetAgentCardResponse, ListAgentsRequest, PlanSpec,
    PlanStep, RunEvent, RunRequest, RunSpec, StepInputRef, TaskEvent, TaskResult, TaskState,
    TaskStatusUpdate, run_event, task_event,
};
use agentmesh_runtime::{
    Agent, ErrorReason, ServerConfig, SkillSpec, Task, TaskContext, TaskError, TaskOutput,
};
use futures_util::Stream;
use serde_json::{Value, json};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// What a [`TestAgent`] has seen.
#[derive(Default)]
pub struct Seen {
    /// Tasks started.
    pub started: AtomicU32,
    /// Tasks completed.
    pub completed: AtomicU32,
    /// Tasks whose work was stopped (cancelled, deadline) before the end.
    pub cancelled: AtomicU32,
    /// Next tasks to fail with a retryable AGENT_UNAVAILABLE.
    pub fail_next: AtomicU32,
}

/// An agent whose behaviour follows its input: `sleep_ms` (work time,
/// cancellable), `fail` ("permanent" or "retryable"), `value` (echoed).
#[derive(Clone)]
pub struct TestAgent {
    /// Card name.
    pub name: String,
    /// Skill ids it offers.
    pub skills: Vec<String>,
    /// Counters shared with the test.
    pub seen: Arc<Seen>,
}

impl TestAgent {
    /// An agent `name` offering `skills`.
    pub fn new(name: &str, skills: &[&str]) -> Self {
        Self {
            name: name.into(),
            skills: skills.iter().map(|s| (*s).to_string()).collect(),
            seen: Arc::default(),
        }
    }
}

impl Agent for TestAgent {
    fn card(&self) -> AgentCard {
        AgentCard {
            name: self.name.clone(),
            version: "1.2.3".into(),
            description: "test agent".into(),
            skills: self
                .skills
                .iter()
                .map(|s| {
                    SkillSpec::new(s.as_str(), "test skill")
                        .input_schema(&json!({
                            "type": "object", "additionalProperties": false,
                            "properties": {
                                "sleep_ms": {"type": "integer", "minimum": 0},
                                "fail": {"enum": ["permanent", "retryable"]},
                                "value": {}
                            }
                        }))
                        .output_schema(&json!({
                            "type": "object", "required": ["agent", "value"]
                        }))
                        .build()
                })
                .collect(),
            ..AgentCard::default()
        }
    }

    async fn execute(&self, task: Task, ctx: TaskContext) -> Result<TaskOutput, TaskError> {
        /// Counts a task whose work was stopped before it finished (the
        /// runtime drops the work future on cancel and deadline).
        struct StopGuard(Arc<Seen>, bool);
        impl Drop for StopGuard {
            fn drop(&mut self) {
                if !self.1 {
                    self.0.cancelled.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        self.seen.started.fetch_add(1, Ordering::SeqCst);
        let mut guard = StopGuard(Arc::clone(&self.seen), false);
        let flaky = self
            .seen
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if flaky || task.input.get("fail") == Some(&json!("retryable")) {
            guard.1 = true;
            return Err(TaskError::new(ErrorReason::AgentUnavailable, "flaky").retryable(None));
        }
        if task.input.get("fail") == Some(&json!("permanent")) {
            guard.1 = true;
            return Err(TaskError::failed("this step always fails"));
        }
        let sleep = task
            .input
            .get("sleep_ms")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(sleep)) => {}
            () = ctx.cancelled() => {
                return Err(TaskError::new(ErrorReason::Canceled, "cancelled"));
            }
        }
        guard.1 = true;
        self.seen.completed.fetch_add(1, Ordering::SeqCst);
        let value = task.input.get("value").cloned().unwrap_or(Value::Null);
        let Value::Object(out) = json!({"agent": self.name, "value": value, "task": task.task_id})
        else {
            unreachable!()
        };
        Ok(TaskOutput::new(out))
    }
}

/// Serves `agent` on `ip:port` (port 0 = any) until the returned sender is
/// used or dropped, which starts a graceful shutdown (NOT_SERVING, drain).
pub async fn spawn_agent_at<A: Agent>(
    agent: A,
    addr: SocketAddr,
    cfg: ServerConfig,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(agentmesh_runtime::serve(agent, listener, cfg, async {
        let _ = rx.await;
    }));
    (addr, tx)
}

/// An agent served on its own runtime and thread; [`Crash::crash`] drops
/// that runtime, which closes every socket at once, as a killed process
/// would.
pub struct Crash(
    Option<std::sync::mpsc::Sender<()>>,
    Option<std::thread::JoinHandle<()>>,
);

impl Crash {
    /// Kills the agent abruptly.
    pub fn crash(mut self) {
        self.0.take();
        if let Some(t) = self.1.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Crash {
    fn drop(&mut self) {
        self.0.take();
    }
}

/// Serves `agent` on a new loopback port on a separate runtime.
pub fn spawn_crashable<A: Agent>(agent: A) -> (SocketAddr, Crash) {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (kill_tx, kill_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        addr_tx.send(listener.local_addr().unwrap()).unwrap();
        rt.spawn(agentmesh_runtime::serve(
            agent,
            listener,
            ServerConfig::default(),
            std::future::pending(),
        ));
        let _ = kill_rx.recv();
        rt.shutdown_background();
    });
    (addr_rx.recv().unwrap(), Crash(Some(kill_tx), Some(thread)))
}

/// How a [`RawAgent`] answers one ExecuteTask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawMode {
    /// WORKING, the input back as output, COMPLETED.
    Echo,
    /// A gRPC UNAVAILABLE status instead of a stream.
    Unavailable,
    /// WORKING, then nothing at all (no heartbeats), stream left open.
    Silent,
}

/// An agent written directly against the protocol (no runtime), as an
/// agent author in another language would: it records every request.
#[derive(Clone, Default)]
pub struct RawAgent {
    /// Modes for the next calls, in order; then Echo.
    pub script: Arc<Mutex<Vec<RawMode>>>,
    /// Every ExecuteTask request received.
    pub requests: Arc<Mutex<Vec<ExecuteTaskRequest>>>,
    /// Every CancelTask request received.
    pub cancels: Arc<Mutex<Vec<CancelTaskRequest>>>,
}

type TaskStream = Pin<Box<dyn Stream<Item = Result<TaskEvent, Status>> + Send>>;

fn status_event(task_id: &str, seq: u64, state: TaskState, last: bool) -> TaskEvent {
    TaskEvent {
        task_id: task_id.into(),
        seq,
        time: None,
        event: Some(task_event::Event::Status(TaskStatusUpdate {
            state: state.into(),
            message: String::new(),
            r#final: last,
        })),
    }
}

/// WORKING, a result with `output`, COMPLETED: a task that went well.
fn completed_stream(id: &str, output: agentmesh_proto::prost_types::Struct) -> TaskStream {
    let events = vec![
        status_event(id, 1, TaskState::Working, false),
        TaskEvent {
            task_id: id.into(),
            seq: 2,
            time: None,
            event: Some(task_event::Event::Result(TaskResult {
                output: Some(output),
                artifact_ids: vec![],
            })),
        },
        status_event(id, 3, TaskState::Completed, true),
    ];
    Box::pin(tokio_stream::iter(events.into_iter().map(Ok)))
}

#[tonic::async_trait]
impl AgentService for RawAgent {
    async fn get_agent_card(
        &self,
        _: Request<GetAgentCardRequest>,
    ) -> Result<Response<GetAgentCardResponse>, Status> {
        Ok(Response::new(GetAgentCardResponse {
            card: Some(AgentCard {
                name: "raw".into(),
                version: "0.0.1".into(),
                max_concurrency: 8,
                skills: vec![SkillSpec::new("raw", "echo, scripted").build()],
                ..AgentCard::default()
            }),
        }))
    }

    type ExecuteTaskStream = TaskStream;

    async fn execute_task(
        &self,
        request: Request<ExecuteTaskRequest>,
    ) -> Result<Response<TaskStream>, Status> {
        let req = request.into_inner();
        self.requests.lock().unwrap().push(req.clone());
        let mode = {
            let mut script = self.script.lock().unwrap();
            if script.is_empty() {
                RawMode::Echo
            } else {
                script.remove(0)
            }
        };
        let id = req.task_id.clone();
        match mode {
            RawMode::Unavailable => Err(Status::unavailable("raw agent: not now")),
            RawMode::Silent => {
                let first = tokio_stream::once(Ok(status_event(&id, 1, TaskState::Working, false)));
                Ok(Response::new(Box::pin(
                    first.chain(tokio_stream::pending()),
                )))
            }
            RawMode::Echo => Ok(Response::new(completed_stream(
                &id,
                to_struct(&from_opt_struct(req.input.as_ref())),
            ))),
        }
    }

    async fn cancel_task(
        &self,
        request: Request<CancelTaskRequest>,
    ) -> Result<Response<CancelTaskResponse>, Status> {
        self.cancels.lock().unwrap().push(request.into_inner());
        Ok(Response::new(CancelTaskResponse {
            state: TaskState::Canceled.into(),
        }))
    }
}

struct NoDrain;

impl agentmesh_runtime::Drain for NoDrain {
    fn begin_drain(&self) {}
    async fn drained(&self) {}
    fn cancel_all(&self) {}
}

/// Serves an `AgentService` implementation with health (the Agent service
/// SERVING) on a new loopback port.
pub async fn spawn_agent_service<S: AgentService>(agent: S) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        agentmesh_runtime::serve_routes(
            tonic::service::Routes::new(AgentServiceServer::new(agent)),
            listener,
            &ServerConfig::default(),
            &[AGENT_SERVICE_NAME],
            &NoDrain,
            std::future::pending(),
        )
        .await
    });
    addr
}

/// Serves a [`RawAgent`].
pub async fn spawn_raw(agent: RawAgent) -> SocketAddr {
    spawn_agent_service(agent).await
}

/// One agent and an orchestrator that has discovered it; the agent serves
/// until this is dropped.
pub struct Solo {
    /// The agent's address.
    pub agent: SocketAddr,
    /// A client of the orchestrator.
    pub client: OrchestratorServiceClient<Channel>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Serves `agent` and an orchestrator with it as a static endpoint, and
/// waits until the orchestrator sees it SERVING.
pub async fn solo<A: Agent>(agent: A) -> Solo {
    let (addr, stop) = spawn_agent_at(
        agent,
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::default(),
    )
    .await;
    let orch = spawn_orchestrator(test_config(&[addr])).await;
    let mut client = orchestrator(orch).await;
    wait_serving_agents(&mut client, 1).await;
    Solo {
        agent: addr,
        client,
        _stop: stop,
    }
}

/// Orchestrator settings for tests: fast health checks, short backoff and
/// heartbeat lease, `agents` as static endpoints.
pub fn test_config(agents: &[SocketAddr]) -> OrchestratorConfig {
    let mut cfg = OrchestratorConfig::default();
    cfg.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.discovery.endpoints = agents.iter().map(ToString::to_string).collect();
    cfg.discovery.health_check_ms = 100;
    cfg.discovery.dns_refresh_ms = 100;
    cfg.execution.backoff_base_ms = 20;
    cfg.execution.backoff_max_ms = 200;
    cfg.execution.heartbeat_ms = 100;
    cfg.routing.no_replica_wait_ms = 1_000;
    cfg
}

/// Serves an orchestrator with `cfg` on a new loopback port until the test
/// ends.
pub async fn spawn_orchestrator(cfg: OrchestratorConfig) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(agentmesh_orchestrator::serve(
        cfg,
        listener,
        std::future::pending(),
    ));
    addr
}

/// A client of the orchestrator at `addr`.
pub async fn orchestrator(addr: SocketAddr) -> OrchestratorServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    OrchestratorServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024)
}

/// Every endpoint the orchestrator lists (`ListAgents`).
pub async fn endpoints(
    client: &mut OrchestratorServiceClient<Channel>,
) -> Vec<agentmesh_proto::v1::AgentEndpoint> {
    client
        .list_agents(ListAgentsRequest {})
        .await
        .unwrap()
        .into_inner()
        .endpoints
}

/// Waits (bounded) until exactly `n` endpoints are SERVING; returns their
/// addresses.
pub async fn wait_serving_agents(
    client: &mut OrchestratorServiceClient<Channel>,
    n: usize,
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let serving: Vec<String> = endpoints(client)
            .await
            .into_iter()
            .filter(|e| e.health() == EndpointHealth::Serving && e.card.is_some())
            .map(|e| e.address)
            .collect();
        if serving.len() == n {
            return serving;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {n} serving agents, have {serving:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A plan step with literal input.
pub fn step(id: &str, skill: &str, input: Value) -> PlanStep {
    let Value::Object(map) = input else {
        panic!("input must be an object")
    };
    PlanStep {
        id: id.into(),
        skill: skill.into(),
        input: Some(to_struct(&map)),
        ..PlanStep::default()
    }
}

/// `step` with its field `field` taken from `from`'s output at `pointer`.
pub fn with_ref(mut s: PlanStep, field: &str, from: &str, pointer: &str) -> PlanStep {
    s.refs.push(StepInputRef {
        field: field.into(),
        from_step: from.into(),
        pointer: pointer.into(),
    });
    s
}

/// A run spec with only a goal, for the orchestrator to plan.
pub fn goal(text: &str) -> RunSpec {
    RunSpec {
        goal: text.into(),
        ..RunSpec::default()
    }
}

/// A run spec for `steps`.
pub fn spec(steps: Vec<PlanStep>) -> RunSpec {
    RunSpec {
        goal: "test".into(),
        plan: Some(PlanSpec { steps }),
        ..RunSpec::default()
    }
}

/// Runs `spec` with `Run` and collects every event until the stream ends.
pub async fn run_all(
    client: &mut OrchestratorServiceClient<Channel>,
    spec: RunSpec,
) -> Vec<RunEvent> {
    let stream = client
        .run(RunRequest { spec: Some(spec) })
        .await
        .unwrap()
        .into_inner();
    collect_events(stream).await
}

/// Every event of a `Run` or `WatchRun` stream, until it ends.
async fn collect_events(mut stream: tonic::Streaming<RunEvent>) -> Vec<RunEvent> {
    let mut events = Vec::new();
    while let Some(ev) = stream.next().await {
        events.push(ev.unwrap());
    }
    events
}

/// Submits `spec` and returns the run's id.
pub async fn submit(client: &mut OrchestratorServiceClient<Channel>, spec: RunSpec) -> String {
    client
        .submit(agentmesh_proto::v1::SubmitRequest { spec: Some(spec) })
        .await
        .unwrap()
        .into_inner()
        .run_id
}

/// Every event of run `run_id` after `after`, until the run's log ends.
pub async fn watch_to_end(
    client: &mut OrchestratorServiceClient<Channel>,
    run_id: &str,
    after: u64,
) -> Vec<RunEvent> {
    let stream = client
        .watch_run(agentmesh_proto::v1::WatchRunRequest {
            run_id: run_id.into(),
            after_seq: after,
        })
        .await
        .unwrap()
        .into_inner();
    collect_events(stream).await
}

/// The newest run other than `except`, waiting (bounded) for one to appear.
pub async fn newest_run(client: &mut OrchestratorServiceClient<Channel>, except: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let runs = client
            .list_runs(agentmesh_proto::v1::ListRunsRequest { limit: 1 })
            .await
            .unwrap()
            .into_inner()
            .runs;
        if let Some(r) = runs.first().filter(|r| r.run_id != except) {
            return r.run_id.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new run appeared"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The events' payloads.
pub fn kinds(events: &[RunEvent]) -> Vec<&run_event::Event> {
    events.iter().filter_map(|e| e.event.as_ref()).collect()
}

/// The final event of a run.
pub fn finished(events: &[RunEvent]) -> &agentmesh_proto::v1::RunFinished {
    match events.last().and_then(|e| e.event.as_ref()) {
        Some(run_event::Event::Finished(f)) => f,
        other => panic!("the run did not finish: last event {other:?}"),
    }
}

/// Index of the first event matching `pred`.
pub fn position(events: &[RunEvent], pred: impl Fn(&run_event::Event) -> bool) -> Option<usize> {
    events
        .iter()
        .position(|e| e.event.as_ref().is_some_and(&pred))
}

/// A replica that claims another agent's card but answers every task with
/// an output that violates the skill's output schema (`{"bogus": true}`),
/// without checking it itself.
#[derive(Clone)]
pub struct Impostor {
    /// The card it presents.
    pub card: AgentCard,
    /// Tasks it answered.
    pub answered: Arc<AtomicU32>,
}

#[tonic::async_trait]
impl AgentService for Impostor {
    async fn get_agent_card(
        &self,
        _: Request<GetAgentCardRequest>,
    ) -> Result<Response<GetAgentCardResponse>, Status> {
        Ok(Response::new(GetAgentCardResponse {
            card: Some(self.card.clone()),
        }))
    }

    type ExecuteTaskStream = TaskStream;

    async fn execute_task(
        &self,
        request: Request<ExecuteTaskRequest>,
    ) -> Result<Response<TaskStream>, Status> {
        self.answered.fetch_add(1, Ordering::SeqCst);
        let id = request.into_inner().task_id;
        let Value::Object(bogus) = json!({"bogus": true}) else {
            unreachable!()
        };
        Ok(Response::new(completed_stream(&id, to_struct(&bogus))))
    }

    async fn cancel_task(
        &self,
        _: Request<CancelTaskRequest>,
    ) -> Result<Response<CancelTaskResponse>, Status> {
        Ok(Response::new(CancelTaskResponse {
            state: TaskState::Canceled.into(),
        }))
    }
}

/// Serves an [`Impostor`].
pub async fn spawn_impostor(agent: Impostor) -> SocketAddr {
    spawn_agent_service(agent).await
}

/// Artifacts streamed as ReportChunk events, reassembled: file name → bytes.
pub fn report_files(events: &[RunEvent]) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut files = std::collections::BTreeMap::<String, Vec<u8>>::new();
    for e in events {
        if let Some(run_event::Event::ReportChunk(c)) = &e.event {
            files.entry(c.filename.clone()).or_default().extend(&c.data);
        }
    }
    files
}
