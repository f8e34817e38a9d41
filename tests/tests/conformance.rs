//! `meshctl conformance` (the real binary) against the three shipped agent
//! binaries, which must pass every check, and against an agent written
//! straight on tonic that breaks the contract in known ways, which must
//! fail exactly those checks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::pin::Pin;

use agentmesh_e2e::polyglot::{self, Polyglot};
use agentmesh_e2e::{binary, connect, free_port, hermetic, run_skill, start_agents, temp_dir};
use agentmesh_proto::json::to_struct;
use agentmesh_proto::prost_types::Timestamp;
use agentmesh_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use agentmesh_proto::v1::{
    AgentCard, CancelTaskRequest, CancelTaskResponse, ExecuteTaskRequest, GetAgentCardRequest,
    GetAgentCardResponse, Skill, TaskEvent, TaskResult, TaskState, TaskStatusUpdate,
    task_event::Event,
};
use serde_json::{Value, json};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// Runs `meshctl --json conformance <agent> <args>`: (exit code, report).
async fn conformance(agent: &str, args: &[String]) -> (i32, Value) {
    let mut cmd = std::process::Command::new(binary("meshctl"));
    hermetic(&mut cmd);
    // Run without blocking the runtime: the broken agent is served on it.
    let out = tokio::process::Command::from(cmd)
        .args(["--json", "conformance", agent])
        .args(args)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

/// Check ids by result ("pass", "fail", "skip").
fn by_result(report: &Value) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for check in report["checks"].as_array().unwrap() {
        out.entry(check["result"].as_str().unwrap().to_string())
            .or_default()
            .push(check["id"].as_str().unwrap().to_string());
    }
    out
}

fn detail<'a>(report: &'a Value, id: &str) -> &'a str {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id}"))["detail"]
        .as_str()
        .unwrap()
}

fn write_json(dir: &Path, name: &str, value: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, value.to_string()).unwrap();
    format!("@{}", path.display())
}

#[tokio::test]
async fn the_shipped_agents_pass_every_check() {
    let tmp = temp_dir("conformance");
    let dir = tmp.path();
    let (children, data, analytics, summary) = start_agents(dir).await;
    // Inputs for the skills whose cards carry no example: real outputs of
    // the skills before them, as the orchestrator would pass them on.
    let extract = run_skill(&mut connect(data).await, "sales.extract", json!({"period": "2025-Q2", "compare": ["previous_period", "year_ago"], "group_by": ["month", "region", "product_line", "channel"]})).await;
    let dataset = Value::Object(extract.output.expect("the extract completes"));
    let metrics = run_skill(
        &mut connect(analytics).await,
        "analytics.metrics",
        json!({ "dataset": dataset }),
    )
    .await;
    let metrics = Value::Object(metrics.output.expect("the metrics complete"));
    let dataset_input = write_json(dir, "dataset.json", &json!({ "dataset": dataset }));
    let metrics_input = write_json(dir, "metrics.json", &json!({ "metrics": metrics }));

    let runs = [
        (data, Vec::new()),
        (
            analytics,
            vec![
                format!("--input=analytics.metrics={dataset_input}"),
                format!("--input=analytics.charts={metrics_input}"),
            ],
        ),
        (
            summary,
            vec![format!("--input=summary.write={metrics_input}")],
        ),
    ];
    for (addr, args) in runs {
        let (code, report) = conformance(&addr.to_string(), &args).await;
        all_passed(code, &report);
    }
    drop(children);
}

/// Every check passes on an agent's report (12 checks per agent, 3 per
/// skill), with its tasks COMPLETED.
fn all_passed(code: i32, report: &Value) {
    let results = by_result(report);
    assert_eq!(results.keys().collect::<Vec<_>>(), ["pass"], "{report:#}");
    assert_eq!(code, 0, "{report:#}");
    let skills = report["agent"]["skills"].as_array().unwrap();
    for skill in skills {
        let skill = skill.as_str().unwrap();
        for id in ["task.stream", "task.idempotent_repeat"] {
            let d = detail(report, &format!("{id}/{skill}"));
            assert!(d.contains("COMPLETED"), "{id}/{skill}: {d}");
        }
    }
    assert_eq!(results["pass"].len(), 12 + 3 * skills.len(), "{report:#}");
}

#[tokio::test]
async fn the_python_and_typescript_agents_pass_every_check() {
    let tmp = temp_dir("conformance-polyglot");
    let dir = tmp.path();
    let log = dir.join("agents.log");
    let forecast = free_port([127, 0, 0, 1]);
    let quality = free_port([127, 0, 0, 1]);
    // A heartbeat interval above the suite's, and a delay before each task,
    // so that the suite sees heartbeats and cancels a task still working.
    let slow = ["--fault-delay-ms=600".to_string()];
    let _forecast = polyglot::start(Polyglot::Forecast, forecast, &slow, &log).await;
    let _quality = polyglot::start(Polyglot::Quality, quality, &slow, &log).await;
    // With the examples on their cards.
    for addr in [forecast, quality] {
        let (code, report) = conformance(&addr.to_string(), &[]).await;
        all_passed(code, &report);
        let d = detail(&report, "task.cancel");
        assert!(d.starts_with("canceled while working"), "{addr}: {d}");
    }
    // And with a real dataset from the data agent, as the orchestrator
    // passes it on.
    let data = free_port([127, 0, 0, 1]);
    let _data =
        agentmesh_e2e::start_process("data-agent", data, &[], dir, "agentmesh.v1.AgentService")
            .await;
    let extract = run_skill(
        &mut connect(data).await,
        "sales.extract",
        json!({"period": "2023-01..2025-06", "group_by": ["month", "region"]}),
    )
    .await;
    let dataset = Value::Object(extract.output.expect("the extract completes"));
    let input = write_json(dir, "dataset.json", &json!({ "dataset": dataset }));
    for (addr, skill) in [(forecast, "forecast.revenue"), (quality, "quality.check")] {
        let (code, report) =
            conformance(&addr.to_string(), &[format!("--input={skill}={input}")]).await;
        all_passed(code, &report);
    }
}

/// An agent written straight on tonic, as an author in any language might,
/// that breaks the contract: its health does not name the agent service,
/// it serves no reflection, its version is not semver, it refuses an
/// unknown skill without ErrorInfo, it validates no input and heeds no
/// deadline, its stream skips a sequence number, and it "cancels" tasks it
/// never saw.
struct Broken;

type Events = Pin<Box<dyn Stream<Item = Result<TaskEvent, Status>> + Send>>;

#[tonic::async_trait]
impl AgentService for Broken {
    async fn get_agent_card(
        &self,
        _: Request<GetAgentCardRequest>,
    ) -> Result<Response<GetAgentCardResponse>, Status> {
        let schema = |v: Value| Some(to_struct(v.as_object().unwrap()));
        Ok(Response::new(GetAgentCardResponse {
            card: Some(AgentCard {
                name: "broken".into(),
                version: "one".into(),
                description: "breaks the contract".into(),
                protocol_version: "agentmesh.v1".into(),
                max_concurrency: 4,
                skills: vec![Skill {
                    id: "broken.echo".into(),
                    description: "echoes text".into(),
                    examples: vec![r#"{"text": "hi"}"#.into()],
                    input_schema: schema(json!({
                        "type": "object", "required": ["text"], "additionalProperties": false,
                        "properties": {"text": {"type": "string"}}
                    })),
                    output_schema: schema(json!({"type": "object", "required": ["echo"]})),
                    ..Skill::default()
                }],
            }),
        }))
    }

    type ExecuteTaskStream = Events;

    async fn execute_task(
        &self,
        request: Request<ExecuteTaskRequest>,
    ) -> Result<Response<Events>, Status> {
        let req = request.into_inner();
        if req.skill_id != "broken.echo" {
            return Err(Status::internal("no such skill"));
        }
        let event = |seq, event| {
            Ok(TaskEvent {
                task_id: req.task_id.clone(),
                seq,
                time: Some(Timestamp::default()),
                event: Some(event),
            })
        };
        let status = |state: TaskState, fin| {
            Event::Status(TaskStatusUpdate {
                state: state as i32,
                message: String::new(),
                r#final: fin,
                input: None,
            })
        };
        let events = vec![
            event(1, status(TaskState::Working, false)),
            event(
                3,
                Event::Result(TaskResult {
                    output: req.input.clone(),
                    artifact_ids: Vec::new(),
                }),
            ),
            event(4, status(TaskState::Completed, true)),
        ];
        Ok(Response::new(Box::pin(tokio_stream::iter(events))))
    }

    async fn cancel_task(
        &self,
        _: Request<CancelTaskRequest>,
    ) -> Result<Response<CancelTaskResponse>, Status> {
        Ok(Response::new(CancelTaskResponse {
            state: TaskState::Canceled as i32,
        }))
    }

    async fn provide_input(
        &self,
        _: Request<agentmesh_proto::v1::AgentServiceProvideInputRequest>,
    ) -> Result<Response<agentmesh_proto::v1::AgentServiceProvideInputResponse>, Status> {
        Err(Status::unimplemented("asks no questions"))
    }
}

#[tokio::test]
async fn a_broken_agent_fails_exactly_the_checks_it_breaks() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Health answers "" (SERVING) only: the agent service is not named.
    let (_reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .add_service(AgentServiceServer::new(Broken))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let (code, report) = conformance(&addr.to_string(), &[]).await;
    assert_eq!(code, 1, "{report:#}");
    let results = by_result(&report);
    let ids = |r: &str| results.get(r).cloned().unwrap_or_default();
    assert_eq!(
        ids("fail"),
        [
            "health.agent_service",
            "health.watch",
            "reflection.services",
            "card.identity",
            "task.unknown_skill",
            "task.invalid_input/broken.echo",
            "task.stream/broken.echo",
            "task.deadline_passed",
            "task.cancel",
            "task.cancel_unknown",
        ],
        "{report:#}"
    );
    assert_eq!(
        ids("pass"),
        [
            "health.overall",
            "health.unknown_service",
            "card.skills",
            "card.schemas"
        ],
        "{report:#}"
    );
    assert_eq!(ids("skip"), ["task.idempotent_repeat/broken.echo"]);
    assert!(detail(&report, "task.stream/broken.echo").contains("event 2 has seq 3"));
    assert!(detail(&report, "card.identity").contains("not semver"));
    assert!(detail(&report, "task.unknown_skill").contains("no agentmesh ErrorInfo"));
    assert!(detail(&report, "task.cancel_unknown").contains("never saw"));
}

#[tokio::test]
async fn a_long_task_is_cancelled_while_working_and_heartbeats_throughout() {
    let agent = agentmesh_e2e::mesh::TestAgent::new("slow", &["test.slow"]);
    let seen = std::sync::Arc::clone(&agent.seen);
    let addr = agentmesh_e2e::spawn_agent(agent).await;
    let input = r#"--input=test.slow={"sleep_ms": 1500}"#.to_string();
    let (code, report) = conformance(&addr.to_string(), &[input]).await;
    assert_eq!(
        by_result(&report).keys().collect::<Vec<_>>(),
        ["pass"],
        "{report:#}"
    );
    assert_eq!(code, 0);
    let cancel = detail(&report, "task.cancel");
    assert!(cancel.contains("canceled while working"), "{cancel}");
    assert_eq!(seen.cancelled.load(std::sync::atomic::Ordering::SeqCst), 1);
    // 1.5 s of work with a heartbeat asked every 250 ms: the stream carries
    // them, and the check held it to no silence longer than 1 s.
    let stream = detail(&report, "task.stream/test.slow");
    let events: usize = stream
        .trim_start_matches("COMPLETED, ")
        .trim_end_matches(" events")
        .parse()
        .unwrap_or_else(|_| panic!("{stream}"));
    assert!(events >= 7, "{stream}");
}
