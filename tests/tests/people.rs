//! People in the loop through gRPC alone: an agent's question (the summary
//! agent asks which audience to write for, `ask_audience`), an answer its
//! schema refuses, a second answer, an orchestrator restart while the run
//! waits (SQLite store), and approval gates approved and rejected. Every
//! service is its real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use agentmesh_e2e::mesh::*;
use agentmesh_e2e::{Child, start_agents_env, start_orchestrator_on as orchestrator_on, temp_dir};
use agentmesh_proto::error::MeshError;
use agentmesh_proto::json::to_struct;
use agentmesh_proto::v1::orchestrator_service_client::OrchestratorServiceClient;
use agentmesh_proto::v1::{
    ApprovalGate, GetRunRequest, ListRunsRequest, PlanStep, ProvideInputRequest, RunState,
    RunSummary, WaitKind, run_event::Event,
};
use serde_json::{Value, json};
use tonic::transport::Channel;

const GOAL: &str =
    "Generate a Q2 sales performance report with visualizations and an executive summary";

/// The three agents, the summary agent asking for its audience.
async fn agents(dir: &Path) -> (Vec<Child>, Vec<SocketAddr>) {
    let (children, data, analytics, summary) =
        start_agents_env(dir, &[], &[("AGENTMESH_ASK_AUDIENCE", "true")]).await;
    (children, vec![data, analytics, summary])
}

/// The run once it waits for a person (bounded).
async fn waiting(client: &mut OrchestratorServiceClient<Channel>, run_id: &str) -> RunSummary {
    for _ in 0..300 {
        let run = client
            .get_run(GetRunRequest {
                run_id: run_id.to_string(),
            })
            .await
            .unwrap()
            .into_inner()
            .run
            .unwrap();
        if run.state() == RunState::Waiting {
            return run;
        }
        assert!(
            !matches!(
                run.state(),
                RunState::Completed | RunState::Failed | RunState::Canceled
            ),
            "the run ended without waiting: {run:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("run {run_id} never waited");
}

fn answer(run_id: &str, step: &str, answer: Value) -> ProvideInputRequest {
    ProvideInputRequest {
        run_id: run_id.to_string(),
        step_id: step.to_string(),
        answer: Some(to_struct(answer.as_object().unwrap())),
    }
}

fn field_of(status: &tonic::Status) -> String {
    MeshError::from_status(status)
        .metadata
        .get("field")
        .cloned()
        .unwrap_or_default()
}

fn reason_of(status: &tonic::Status) -> String {
    MeshError::from_status(status).reason.name().to_string()
}

#[tokio::test]
async fn an_agents_question_is_answered_through_grpc_across_a_restart() {
    let tmp = temp_dir("people-question");
    let dir = tmp.path();
    let store = dir.join("state/runs.db");
    let (_agents, addrs) = agents(dir).await;
    let (first, addr) = orchestrator_on(&store, &addrs, dir).await;
    let mut client = orchestrator(addr).await;
    wait_serving_agents(&mut client, 3).await;
    let run_id = submit(&mut client, goal(GOAL)).await;

    // The summary agent asks; the run shows the question and its schema.
    let run = waiting(&mut client, &run_id).await;
    let wait = &run.waiting[0];
    assert_eq!(wait.kind(), WaitKind::Question);
    assert_eq!(wait.input_id, "audience");
    assert_eq!(wait.agent, "summary");
    assert!(
        wait.question.contains("Who is this summary for"),
        "{wait:?}"
    );
    assert!(wait.deadline.is_some());
    let step = wait.step_id.clone();
    let listed = client
        .list_runs(ListRunsRequest {
            limit: 10,
            states: vec![RunState::Waiting.into()],
        })
        .await
        .unwrap()
        .into_inner()
        .runs;
    assert_eq!(listed.len(), 1, "only the waiting run: {listed:?}");
    assert_eq!(listed[0].run_id, run_id);
    assert_eq!(listed[0].waiting[0].step_id, step);

    // An answer outside the schema: INVALID_ARGUMENT naming the field.
    let refused = client
        .provide_input(answer(&run_id, &step, json!({"audience": "everyone"})))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert_eq!(field_of(&refused), "answer.audience");
    assert_eq!(reason_of(&refused), "INVALID_INPUT");

    // The orchestrator restarts while the run waits: it waits again.
    agentmesh_e2e::process::terminate(first).await;
    let (_second, addr) = orchestrator_on(&store, &addrs, dir).await;
    let mut client = orchestrator(addr).await;
    let run = waiting(&mut client, &run_id).await;
    assert_eq!(run.waiting[0].step_id, step);

    client
        .provide_input(answer(&run_id, &step, json!({"audience": "board"})))
        .await
        .unwrap();
    let again = client
        .provide_input(answer(&run_id, &step, json!({"audience": "analyst"})))
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::FailedPrecondition, "{again:?}");
    assert_eq!(reason_of(&again), "NOT_WAITING");

    let events = watch_to_end(&mut client, &run_id, 0).await;
    let end = finished(&events);
    assert_eq!(end.state(), RunState::Completed, "{end:?}");
    let summary = step_completed(&events, &step).output.clone().unwrap();
    let summary = agentmesh_proto::json::from_opt_struct(Some(&summary));
    assert_eq!(summary["audience"], "board");
    assert!(summary["findings"].as_array().unwrap().len() <= 3);
    let answered = events
        .iter()
        .filter(|e| matches!(&e.event, Some(Event::StepAnswered(a)) if a.step_id == step))
        .count();
    assert_eq!(answered, 1, "one answer recorded");
    assert!(
        events
            .iter()
            .any(|e| matches!(e.event, Some(Event::Resumed(_)))),
        "the run was resumed by the second orchestrator"
    );
}

/// data → analytics → summary (audience given) → an approval gate.
fn gated_plan() -> Vec<PlanStep> {
    let extract = step("extract", "sales.extract", json!({"period": "2025-Q2"}));
    let metrics = with_ref(
        step("metrics", "analytics.metrics", json!({})),
        "dataset",
        "extract",
        "",
    );
    let summary = with_ref(
        step("summary", "summary.write", json!({"audience": "executive"})),
        "metrics",
        "metrics",
        "",
    );
    let gate = PlanStep {
        id: "approve".into(),
        depends_on: vec!["summary".into()],
        approval: Some(ApprovalGate {
            prompt: "Approve the summary before the report is delivered".into(),
            timeout: None,
        }),
        ..PlanStep::default()
    };
    vec![extract, metrics, summary, gate]
}

#[tokio::test]
async fn an_approval_gate_waits_for_a_person_and_a_rejection_ends_the_run() {
    let tmp = temp_dir("people-gate");
    let dir = tmp.path();
    let (_agents, addrs) = agents(dir).await;
    let (_orch, addr) = orchestrator_on(&dir.join("runs.db"), &addrs, dir).await;
    let mut client = orchestrator(addr).await;
    wait_serving_agents(&mut client, 3).await;

    let approved = submit(&mut client, spec(gated_plan())).await;
    let run = waiting(&mut client, &approved).await;
    let wait = &run.waiting[0];
    assert_eq!(
        (wait.step_id.as_str(), wait.kind()),
        ("approve", WaitKind::Approval)
    );
    let subject = agentmesh_proto::json::from_opt_struct(wait.subject.as_ref());
    assert!(subject["summary"]["headline"].is_string(), "{subject:?}");
    let refused = client
        .provide_input(answer(&approved, "approve", json!({"approve": "yes"})))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    client
        .provide_input(answer(
            &approved,
            "approve",
            json!({"approved": true, "reason": "numbers checked"}),
        ))
        .await
        .unwrap();
    let events = watch_to_end(&mut client, &approved, 0).await;
    let end = finished(&events);
    assert_eq!(end.state(), RunState::Completed, "{end:?}");
    let gate = step_completed(&events, "approve");
    assert_eq!(gate.provenance.as_ref().unwrap().agent, "person");

    let rejected = submit(&mut client, spec(gated_plan())).await;
    waiting(&mut client, &rejected).await;
    client
        .provide_input(answer(
            &rejected,
            "approve",
            json!({"approved": false, "reason": "wrong quarter"}),
        ))
        .await
        .unwrap();
    let events = watch_to_end(&mut client, &rejected, 0).await;
    let end = finished(&events);
    assert_eq!(end.state(), RunState::Rejected, "{end:?}");
    assert_eq!(end.reason, "REJECTED");
    assert!(end.message.contains("wrong quarter"), "{end:?}");
}

/// The Python forecast agent (`--ask-horizon`) and the TypeScript quality
/// agent (`--ask-threshold`) ask through the mesh like the Rust one: one run
/// waits on both, each answer reaches its own agent's task, the run ends
/// with outputs shaped by the answers.
#[tokio::test]
async fn python_and_typescript_agents_ask_through_the_mesh() {
    use agentmesh_e2e::polyglot::{self, Polyglot};
    let tmp = temp_dir("people-polyglot");
    let dir = tmp.path();
    let log = dir.join("agents.log");
    let data = agentmesh_e2e::free_port([127, 0, 0, 1]);
    let mut children = vec![
        agentmesh_e2e::start_process_env(
            "data-agent",
            data,
            &[],
            &[],
            dir,
            agentmesh_proto::v1::AGENT_SERVICE_NAME,
        )
        .await,
    ];
    let forecast = agentmesh_e2e::free_port([127, 0, 0, 1]);
    let quality = agentmesh_e2e::free_port([127, 0, 0, 1]);
    for (agent, addr, ask) in [
        (Polyglot::Forecast, forecast, "--ask-horizon"),
        (Polyglot::Quality, quality, "--ask-threshold"),
    ] {
        let args = [ask.to_string(), "--heartbeat-ms=200".to_string()];
        children.push(polyglot::start(agent, addr, &args, &log).await);
    }
    let (_orch, addr) =
        orchestrator_on(&dir.join("runs.db"), &[data, forecast, quality], dir).await;
    let mut client = orchestrator(addr).await;
    wait_serving_agents(&mut client, 3).await;

    let extract = step(
        "extract",
        "sales.extract",
        json!({"period": "2023-01..2025-06", "group_by": ["month"]}),
    );
    let ahead = with_ref(
        step("forecast", "forecast.revenue", json!({})),
        "dataset",
        "extract",
        "",
    );
    let checked = with_ref(
        step("quality", "quality.check", json!({})),
        "dataset",
        "extract",
        "",
    );
    let run_id = submit(&mut client, spec(vec![extract, ahead, checked])).await;
    // Both wait (bounded), each with its agent's own question.
    let mut asked = Vec::new();
    for _ in 0..600 {
        let run = waiting(&mut client, &run_id).await;
        asked = run.waiting.iter().map(|w| w.step_id.clone()).collect();
        asked.sort();
        if asked.len() == 2 {
            let by: Vec<_> = run.waiting.iter().map(|w| w.agent.as_str()).collect();
            assert!(
                by.contains(&"forecast") && by.contains(&"quality"),
                "{by:?}"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(asked, ["forecast", "quality"]);
    // The Python agent's schema refuses 40 months, naming the field.
    let refused = client
        .provide_input(answer(&run_id, "forecast", json!({"horizon": 40})))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(field_of(&refused), "answer.horizon");
    client
        .provide_input(answer(&run_id, "forecast", json!({"horizon": 5})))
        .await
        .unwrap();
    client
        .provide_input(answer(
            &run_id,
            "quality",
            json!({"outlier_threshold": 2.5}),
        ))
        .await
        .unwrap();
    let events = watch_to_end(&mut client, &run_id, 0).await;
    let end = finished(&events);
    assert_eq!(end.state(), RunState::Completed, "{end:?}");
    let output = |step: &str| {
        agentmesh_proto::json::from_opt_struct(step_completed(&events, step).output.as_ref())
    };
    assert_eq!(output("forecast")["horizon"], json!(5));
    assert_eq!(output("forecast")["forecast"].as_array().unwrap().len(), 5);
    assert_eq!(output("quality")["outlier_threshold"], json!(2.5));
    drop(children);
}
