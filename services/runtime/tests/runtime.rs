//! The runtime as a client sees it: a small test agent served on a bound
//! `127.0.0.1:0` listener, exercised over real gRPC.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agentmesh_proto::error::reason_of;
use agentmesh_proto::json::{from_opt_struct, to_struct};
use agentmesh_proto::v1::agent_service_client::AgentServiceClient;
use agentmesh_proto::v1::{
    AGENT_SERVICE_NAME, AgentCard, CancelTaskRequest, ExecuteTaskRequest, GetAgentCardRequest,
    TaskEvent, TaskState, task_event::Event,
};
use agentmesh_runtime::{
    Agent, JsonObject, OutArtifact, ServerConfig, SkillSpec, Task, TaskContext, TaskError,
    TaskOutput, serve,
};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Code, Request};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

const BIG_ARTIFACT: usize = 200_000;

#[derive(Default)]
struct Counters {
    runs: AtomicUsize,
    cancelled: AtomicUsize,
}

struct TestAgent {
    counters: Arc<Counters>,
}

impl Agent for TestAgent {
    fn card(&self) -> AgentCard {
        AgentCard {
            name: "test".into(),
            version: "1.2.3".into(),
            description: "test agent".into(),
            skills: vec![
                SkillSpec::new("test.echo", "echoes text, emits a large artifact")
                    .input_schema(&json!({
                        "type": "object",
                        "required": ["text"],
                        "properties": {"text": {"type": "string", "maxLength": 100_000_000}},
                        "additionalProperties": false
                    }))
                    .output_schema(&json!({
                        "type": "object",
                        "required": ["text"],
                        "properties": {"text": {"type": "string"}}
                    }))
                    .produces(&["echo"])
                    .build(),
                SkillSpec::new("test.sleep", "sleeps for ms milliseconds")
                    .input_schema(&json!({
                        "type": "object",
                        "required": ["ms"],
                        "properties": {"ms": {"type": "integer", "minimum": 0}}
                    }))
                    .build(),
                SkillSpec::new("test.fail", "fails, retryably").build(),
                SkillSpec::new("test.panic", "panics: a bug in the agent's code").build(),
            ],
            ..AgentCard::default()
        }
    }

    async fn execute(&self, task: Task, ctx: TaskContext) -> Result<TaskOutput, TaskError> {
        self.counters.runs.fetch_add(1, Ordering::SeqCst);
        match task.skill_id.as_str() {
            "test.echo" => {
                ctx.progress("echoing", 0.5).await;
                let data: Vec<u8> = (0..BIG_ARTIFACT).map(|i| (i % 251) as u8).collect();
                ctx.artifact(OutArtifact {
                    artifact_id: "blob".into(),
                    name: "blob".into(),
                    description: "a large artifact".into(),
                    media_type: "application/octet-stream".into(),
                    metadata: JsonObject::new(),
                    data,
                })
                .await;
                let mut out = JsonObject::new();
                out.insert("text".into(), task.input["text"].clone());
                Ok(TaskOutput::new(out))
            }
            "test.sleep" => {
                // Counts work that was stopped before it finished: the runtime
                // cancels by dropping the work and cancelling the token.
                struct StoppedEarly<'a>(&'a AtomicUsize, CancellationToken, bool);
                impl Drop for StoppedEarly<'_> {
                    fn drop(&mut self) {
                        if !self.2 && self.1.is_cancelled() {
                            self.0.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
                let ms = task.input["ms"].as_u64().unwrap_or(0);
                let mut guard =
                    StoppedEarly(&self.counters.cancelled, ctx.cancellation_token(), false);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                guard.2 = true;
                let mut out = JsonObject::new();
                out.insert("slept_ms".into(), json!(ms));
                Ok(TaskOutput::new(out))
            }
            "test.panic" => panic!("index out of bounds: the len is 0 but the index is 3"),
            _ => Err(TaskError::failed("this skill always fails").retryable(None)),
        }
    }
}

struct Harness {
    addr: SocketAddr,
    counters: Arc<Counters>,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<Result<(), agentmesh_runtime::ServeError>>,
}

impl Harness {
    async fn start(cfg: ServerConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let agent = TestAgent {
            counters: Arc::clone(&counters),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(agent, listener, cfg, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            counters,
            stop: Some(stop),
            server,
        }
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    async fn client(&self) -> AgentServiceClient<Channel> {
        AgentServiceClient::new(self.channel().await).max_decoding_message_size(64 * 1024 * 1024)
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn test_config() -> ServerConfig {
    ServerConfig {
        max_concurrent_tasks: 2,
        heartbeat: Duration::from_millis(100),
        max_message_bytes: 1024 * 1024,
        shutdown_grace: Duration::from_millis(5_000),
        ..ServerConfig::default()
    }
}

fn request(task_id: &str, skill: &str, input: serde_json::Value) -> ExecuteTaskRequest {
    let serde_json::Value::Object(map) = input else {
        panic!("input must be an object")
    };
    ExecuteTaskRequest {
        task_id: task_id.into(),
        run_id: "run-1".into(),
        skill_id: skill.into(),
        input: Some(to_struct(&map)),
        attempt: 1,
        ..ExecuteTaskRequest::default()
    }
}

async fn collect(
    client: &mut AgentServiceClient<Channel>,
    req: ExecuteTaskRequest,
) -> Vec<TaskEvent> {
    let mut stream = client.execute_task(req).await.unwrap().into_inner();
    let mut events = Vec::new();
    while let Some(ev) = stream.next().await {
        events.push(ev.unwrap());
    }
    events
}

fn final_state(events: &[TaskEvent]) -> TaskState {
    match events.last().and_then(|e| e.event.clone()) {
        Some(Event::Status(s)) if s.r#final => TaskState::try_from(s.state).unwrap(),
        other => panic!("stream did not end with a final status: {other:?}"),
    }
}

fn failure_reason(events: &[TaskEvent]) -> String {
    events
        .iter()
        .find_map(|e| match &e.event {
            Some(Event::Failure(f)) => Some(f.reason.clone()),
            _ => None,
        })
        .expect("a failure event")
}

fn assert_well_formed(events: &[TaskEvent]) {
    for (i, ev) in events.iter().enumerate() {
        assert_eq!(ev.seq, i as u64 + 1, "sequence numbers are 1, 2, 3, ...");
    }
    let finals = events
        .iter()
        .filter(|e| matches!(&e.event, Some(Event::Status(s)) if s.r#final))
        .count();
    assert_eq!(finals, 1, "exactly one terminal status");
    final_state(events);
}

#[tokio::test]
async fn card_round_trip() {
    let h = Harness::start(test_config()).await;
    let card = h
        .client()
        .await
        .get_agent_card(GetAgentCardRequest {})
        .await
        .unwrap()
        .into_inner()
        .card
        .unwrap();
    assert_eq!(card.name, "test");
    assert_eq!(card.version, "1.2.3");
    assert_eq!(card.protocol_version, "agentmesh.v1");
    assert_eq!(card.max_concurrency, 2);
    let echo = card.skills.iter().find(|s| s.id == "test.echo").unwrap();
    let schema = from_opt_struct(echo.input_schema.as_ref());
    assert_eq!(schema["required"], json!(["text"]));
    assert_eq!(echo.produces, vec!["echo".to_string()]);
}

#[tokio::test]
async fn execute_streams_ordered_events_with_one_terminal_state() {
    let h = Harness::start(test_config()).await;
    let mut client = h.client().await;
    let events = collect(
        &mut client,
        request("t1", "test.echo", json!({"text": "hi"})),
    )
    .await;
    assert_well_formed(&events);
    assert_eq!(final_state(&events), TaskState::Completed);
    let states: Vec<i32> = events
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::Status(s)) => Some(s.state),
            _ => None,
        })
        .collect();
    assert_eq!(
        states,
        vec![
            TaskState::Submitted as i32,
            TaskState::Working as i32,
            TaskState::Completed as i32
        ]
    );
    // The artifact arrives in several chunks that reassemble exactly.
    let chunks: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::ArtifactChunk(c)) => Some(c.clone()),
            _ => None,
        })
        .collect();
    assert!(chunks.len() > 1, "a 200 kB artifact is split");
    assert!(!chunks[0].append && chunks[1..].iter().all(|c| c.append));
    assert!(chunks.last().unwrap().last_chunk);
    let data: Vec<u8> = chunks.iter().flat_map(|c| c.data.clone()).collect();
    assert_eq!(data.len(), BIG_ARTIFACT);
    assert!(data.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
    // The result comes right before the final status and names the artifact.
    let Some(Event::Result(result)) = &events[events.len() - 2].event else {
        panic!("result before the final status")
    };
    assert_eq!(result.artifact_ids, vec!["blob".to_string()]);
    assert_eq!(from_opt_struct(result.output.as_ref())["text"], json!("hi"));
}

#[tokio::test]
async fn heartbeats_flow_while_working() {
    let h = Harness::start(test_config()).await;
    let mut client = h.client().await;
    let events = collect(&mut client, request("hb", "test.sleep", json!({"ms": 450}))).await;
    assert_well_formed(&events);
    let beats = events
        .iter()
        .filter(|e| matches!(e.event, Some(Event::Heartbeat(_))))
        .count();
    assert!(beats >= 3, "expected a heartbeat every 100 ms, got {beats}");
}

#[tokio::test]
async fn cancel_task_ends_a_running_task_canceled() {
    let h = Harness::start(test_config()).await;
    let mut client = h.client().await;
    let mut stream = client
        .execute_task(request("c1", "test.sleep", json!({"ms": 30_000})))
        .await
        .unwrap()
        .into_inner();
    // Wait until it is working.
    while let Some(ev) = stream.next().await {
        if matches!(&ev.unwrap().event, Some(Event::Status(s)) if s.state == TaskState::Working as i32)
        {
            break;
        }
    }
    let mut other = h.client().await;
    let resp = other
        .cancel_task(CancelTaskRequest {
            task_id: "c1".into(),
            reason: "test".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.state, TaskState::Canceled as i32);
    let mut rest = Vec::new();
    while let Some(ev) = stream.next().await {
        rest.push(ev.unwrap());
    }
    assert_eq!(final_state(&rest), TaskState::Canceled);
    assert_eq!(failure_reason(&rest), "CANCELED");
    assert_eq!(
        h.counters.cancelled.load(Ordering::SeqCst),
        1,
        "the agent saw the cancel"
    );
    // Idempotent: cancelling again reports the same final state.
    let again = other
        .cancel_task(CancelTaskRequest {
            task_id: "c1".into(),
            reason: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.state, TaskState::Canceled as i32);
    let unknown = other
        .cancel_task(CancelTaskRequest {
            task_id: "nope".into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(reason_of(&unknown).as_deref(), Some("NOT_FOUND"));
}

#[tokio::test]
async fn dropping_the_stream_cancels_the_task() {
    let h = Harness::start(test_config()).await;
    let mut client = h.client().await;
    let mut stream = client
        .execute_task(request("d1", "test.sleep", json!({"ms": 30_000})))
        .await
        .unwrap()
        .into_inner();
    stream.next().await.unwrap().unwrap();
    drop(stream);
    // Nobody calls CancelTask: only the dropped stream can stop the work.
    let stopped = tokio::time::timeout(Duration::from_secs(5), async {
        while h.counters.cancelled.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        stopped.is_ok(),
        "the agent's work was not stopped after the caller left"
    );
    let mut other = h.client().await;
    let state = other
        .cancel_task(CancelTaskRequest {
            task_id: "d1".into(),
            reason: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .state;
    assert_eq!(state, TaskState::Canceled as i32, "already ended CANCELED");
}

#[tokio::test]
async fn client_deadline_ends_the_task_with_deadline_exceeded() {
    let h = Harness::start(test_config()).await;
    let mut client = h.client().await;
    let mut req = Request::new(request("dl", "test.sleep", json!({"ms": 30_000})));
    req.set_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let mut stream = client.execute_task(req).await.unwrap().into_inner();
    let mut events = Vec::new();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(ev) => events.push(ev),
            Err(status) => {
                assert_eq!(status.code(), Code::DeadlineExceeded);
                break;
            }
        }
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(final_state(&events), TaskState::Failed);
    assert_eq!(failure_reason(&events), "DEADLINE_EXCEEDED");
}

#[tokio::test]
async fn repeated_idempotency_key_does_not_run_twice() {
    let h = Harness::start(test_config()).await;
    let mut client = h.client().await;
    let mut first = request("i1", "test.sleep", json!({"ms": 200}));
    first.idempotency_key = "step-a".into();
    let mut second = first.clone();
    second.task_id = "i2".into();
    second.attempt = 2;
    // The second call arrives while the first runs: it follows it.
    let mut c2 = h.client().await;
    let (a, b) = tokio::join!(collect(&mut client, first.clone()), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        collect(&mut c2, second.clone()).await
    });
    assert_eq!(final_state(&a), TaskState::Completed);
    assert_eq!(final_state(&b), TaskState::Completed);
    // And after it completed, a repeat replays the outcome.
    let c = collect(&mut client, second).await;
    assert_eq!(final_state(&c), TaskState::Completed);
    assert_eq!(h.counters.runs.load(Ordering::SeqCst), 1, "ran once");

    // A failed task is not remembered: a retry with the same key runs again.
    let mut fail = request("f1", "test.fail", json!({}));
    fail.idempotency_key = "step-b".into();
    let mut retry = fail.clone();
    retry.task_id = "f2".into();
    assert_eq!(
        final_state(&collect(&mut client, fail).await),
        TaskState::Failed
    );
    let events = collect(&mut client, retry).await;
    assert_eq!(final_state(&events), TaskState::Failed);
    assert_eq!(failure_reason(&events), "AGENT_FAILED");
    assert_eq!(h.counters.runs.load(Ordering::SeqCst), 3);
}

async fn check(health: &mut HealthClient<Channel>, service: &str) -> ServingStatus {
    let HealthCheckResponse { status } = health
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner();
    ServingStatus::try_from(status).unwrap()
}

#[tokio::test]
async fn health_turns_not_serving_on_shutdown_while_in_flight_task_completes() {
    let mut h = Harness::start(test_config()).await;
    let channel = h.channel().await;
    let mut health = HealthClient::new(channel.clone());
    assert_eq!(check(&mut health, "").await, ServingStatus::Serving);
    assert_eq!(
        check(&mut health, AGENT_SERVICE_NAME).await,
        ServingStatus::Serving
    );
    let mut watch = health
        .watch(HealthCheckRequest {
            service: AGENT_SERVICE_NAME.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    let mut client = AgentServiceClient::new(channel.clone());
    let in_flight = tokio::spawn(async move {
        collect(
            &mut client,
            request("slow", "test.sleep", json!({"ms": 700})),
        )
        .await
    });
    // Let the task start, then begin shutdown.
    tokio::time::sleep(Duration::from_millis(150)).await;
    h.shutdown();
    let next = watch.next().await.unwrap().unwrap();
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    assert_eq!(check(&mut health, "").await, ServingStatus::NotServing);
    // New work is refused while draining.
    let mut late = AgentServiceClient::new(channel);
    let refused = late
        .execute_task(request("late", "test.sleep", json!({"ms": 1})))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert_eq!(reason_of(&refused).as_deref(), Some("AGENT_UNAVAILABLE"));
    // The in-flight task still completes, then the server stops by itself.
    let events = in_flight.await.unwrap();
    assert_eq!(final_state(&events), TaskState::Completed);
    let stopped = tokio::time::timeout(Duration::from_secs(10), h.server).await;
    assert!(
        matches!(stopped, Ok(Ok(Ok(())))),
        "server stops cleanly: {stopped:?}"
    );
}

#[tokio::test]
async fn reflection_lists_the_agentmesh_services() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let h = Harness::start(test_config()).await;
    let mut client = ServerReflectionClient::new(h.channel().await);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut resp = client
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        resp.next().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "agentmesh.v1.AgentService",
        "agentmesh.v1.OrchestratorService",
        "agentmesh.v1.RegistryService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
}

#[tokio::test]
async fn bad_requests_get_clear_statuses_with_reasons() {
    let h = Harness::start(test_config()).await;
    let mut client = h.client().await;

    let err = client
        .execute_task(request("u1", "test.nope", json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(reason_of(&err).as_deref(), Some("UNKNOWN_SKILL"));
    assert!(
        err.message().contains("test.echo"),
        "lists the skills: {}",
        err.message()
    );

    let err = client
        .execute_task(request("v1", "test.sleep", json!({"ms": "soon"})))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(reason_of(&err).as_deref(), Some("INVALID_INPUT"));
    assert!(
        err.message().contains("/ms"),
        "names the field: {}",
        err.message()
    );

    // Over the concurrency cap of 2.
    let mut c1 = h.client().await;
    let mut c2 = h.client().await;
    let mut s1 = c1
        .execute_task(request("cap1", "test.sleep", json!({"ms": 2_000})))
        .await
        .unwrap()
        .into_inner();
    let mut s2 = c2
        .execute_task(request("cap2", "test.sleep", json!({"ms": 2_000})))
        .await
        .unwrap()
        .into_inner();
    s1.next().await.unwrap().unwrap();
    s2.next().await.unwrap().unwrap();
    let err = client
        .execute_task(request("cap3", "test.sleep", json!({"ms": 1})))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(reason_of(&err).as_deref(), Some("RESOURCE_EXHAUSTED"));
    drop((s1, s2));

    // A message over the 1 MiB limit is rejected with a reason.
    let big = "x".repeat(2 * 1024 * 1024);
    let err = client
        .execute_task(request("big", "test.echo", json!({"text": big})))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert_eq!(reason_of(&err).as_deref(), Some("RESOURCE_EXHAUSTED"));

    // Nothing panicked: the server still works.
    let events = collect(
        &mut client,
        request("ok", "test.echo", json!({"text": "still here"})),
    )
    .await;
    assert_eq!(final_state(&events), TaskState::Completed);
}

#[tokio::test]
async fn a_panicking_agent_fails_the_task_and_serves_on() {
    let h = Harness::start(test_config()).await;
    let mut client = h.client().await;
    let mut req = request("p1", "test.panic", json!({}));
    req.idempotency_key = "step-p".into();
    let events = collect(&mut client, req.clone()).await;
    assert_well_formed(&events);
    assert_eq!(final_state(&events), TaskState::Failed);
    let failure = events
        .iter()
        .find_map(|e| match &e.event {
            Some(Event::Failure(f)) => Some(f.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(failure.reason, "AGENT_FAILED");
    assert!(failure.retryable, "another replica may do it");
    assert!(
        failure.message.contains("index out of bounds"),
        "{failure:?}"
    );
    // A retry with the same key runs again (a failure is not replayed)
    // and also ends; the agent still does other work.
    req.task_id = "p2".into();
    assert_eq!(
        final_state(&collect(&mut client, req).await),
        TaskState::Failed
    );
    let ok = collect(
        &mut client,
        request("e1", "test.echo", json!({"text": "hi"})),
    )
    .await;
    assert_eq!(final_state(&ok), TaskState::Completed);
}
