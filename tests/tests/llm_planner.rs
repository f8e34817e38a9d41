//! The LLM planner against a scripted server that speaks the OpenAI
//! chat-completions wire protocol: a valid plan, an invalid plan then a
//! valid one, answers that are not JSON or cut off, a refusal, a timeout;
//! the four planner modes; the plan event saying which planner made the
//! plan, the model, each try with its errors and tokens. Real agents (data,
//! analytics) on loopback; the orchestrator in process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use agentmesh_analytics::AnalyticsAgent;
use agentmesh_e2e::mesh::*;
use agentmesh_e2e::openai::{Answer, Scripted, scripted};
use agentmesh_e2e::spawn_agent;
use agentmesh_orchestrator::config::{OrchestratorConfig, PlannerMode};
use agentmesh_proto::error::MeshError;
use agentmesh_proto::v1::orchestrator_service_client::OrchestratorServiceClient;
use agentmesh_proto::v1::{PlanRequest, RunPlanned, RunState};
use agentmesh_runtime::config::Validate;
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;

use tonic::transport::Channel;

const VALID: &str = r#"{"steps": [
  {"id": "extract", "skill": "sales.extract", "input": {"period": "2025-Q2"}, "refs": [], "rationale": "the Q2 2025 data"},
  {"id": "metrics", "skill": "analytics.metrics", "input": {}, "refs": [{"field": "dataset", "from_step": "extract"}], "rationale": "metrics of it"}
]}"#;

const DANGLING: &str = r#"{"steps": [
  {"id": "metrics", "skill": "analytics.metrics", "input": {}, "refs": [{"field": "dataset", "from_step": "nowhere"}], "rationale": "metrics"}
]}"#;

struct Mesh {
    _data_root: tempfile::TempDir,
    agents: Vec<SocketAddr>,
}

async fn agents() -> Mesh {
    let (tmp, data) = common::data_agent().await;
    let analytics = spawn_agent(AnalyticsAgent).await;
    Mesh {
        _data_root: tmp,
        agents: vec![data, analytics],
    }
}

fn config(mesh: &Mesh, mode: PlannerMode, model: &Scripted, timeout_ms: u64) -> OrchestratorConfig {
    let mut cfg = test_config(&mesh.agents);
    cfg.planning.mode = mode;
    cfg.planning.llm.base_url = model.base_url();
    cfg.planning.llm.model = "scripted-model".into();
    cfg.planning.llm.timeout = Duration::from_millis(timeout_ms);
    cfg
}

async fn client(cfg: OrchestratorConfig) -> OrchestratorServiceClient<Channel> {
    let mut c = orchestrator(spawn_orchestrator(cfg).await).await;
    wait_serving_agents(&mut c, 2).await;
    c
}

async fn plan(
    c: &mut OrchestratorServiceClient<Channel>,
    text: &str,
) -> Result<RunPlanned, MeshError> {
    plan_spec(c, goal(text)).await
}

async fn plan_spec(
    c: &mut OrchestratorServiceClient<Channel>,
    spec: agentmesh_proto::v1::RunSpec,
) -> Result<RunPlanned, MeshError> {
    c.plan(PlanRequest { spec: Some(spec) })
        .await
        .map(|r| r.into_inner().planned.unwrap())
        .map_err(|s| MeshError::from_status(&s))
}

#[tokio::test]
async fn a_valid_model_plan_is_used_with_its_rationale_tokens_and_time() {
    let mesh = agents().await;
    let model = scripted(vec![Answer::Text(VALID.into())]).await;
    let mut c = client(config(&mesh, PlannerMode::Llm, &model, 5_000)).await;
    let p = plan(&mut c, "how did Q2 go").await.unwrap();
    let planning = p.planning.as_ref().unwrap();
    assert_eq!(planning.planner, "llm:scripted-model");
    assert_eq!(planning.tries.len(), 1);
    assert!(planning.tries[0].accepted);
    assert_eq!(planning.tokens, 150);
    assert!(planning.duration.is_some());
    let steps: Vec<_> = p.steps.iter().map(|s| s.step.clone().unwrap()).collect();
    assert_eq!(steps[0].rationale, "the Q2 2025 data");
    assert_eq!(p.intent.as_ref().unwrap().deliverables.len(), 1, "metrics");
    // The request: the live skills as an enum of the plan's schema, and a
    // prompt built from the catalog.
    let req = &model.requests()[0];
    let skills = &req["response_format"]["json_schema"]["schema"]["properties"]["steps"]["items"]["properties"]
        ["skill"]["enum"];
    for id in ["sales.extract", "analytics.metrics", "analytics.charts"] {
        assert!(skills.as_array().unwrap().contains(&json!(id)), "{skills}");
    }
    let system = req["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.contains("sales.extract:") && system.contains("The data covers"),
        "{system}"
    );
    assert_eq!(req["messages"][1]["content"], "Goal: how did Q2 go");
    // And the run goes.
    let events = run_all(&mut c, goal("how did Q2 go")).await;
    assert_eq!(finished(&events).state(), RunState::Completed);
}

#[tokio::test]
async fn an_invalid_plan_is_sent_back_with_its_errors_then_the_valid_one_runs() {
    let mesh = agents().await;
    let model = scripted(vec![
        Answer::Text(DANGLING.into()),
        Answer::Text(VALID.into()),
    ])
    .await;
    let mut c = client(config(&mesh, PlannerMode::Llm, &model, 5_000)).await;
    let p = plan(&mut c, "Q2 metrics please").await.unwrap();
    let tries = &p.planning.as_ref().unwrap().tries;
    assert_eq!(tries.len(), 2);
    assert!(!tries[0].accepted && tries[1].accepted);
    assert!(
        tries[0].errors[0].contains("nowhere"),
        "{:?}",
        tries[0].errors
    );
    assert_eq!(p.planning.as_ref().unwrap().tokens, 300);
    // The second request carries the first answer and why it was refused.
    let second = &model.requests()[1]["messages"];
    let last = second.as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap();
    assert!(
        last.starts_with("That plan was refused:") && last.contains("nowhere"),
        "{last}"
    );
}

#[tokio::test]
async fn answers_that_are_not_json_or_cut_off_end_in_a_refusal_naming_the_last_error() {
    let mesh = agents().await;
    let model = scripted(vec![Answer::Text("Sure! Here is a plan:".into())]).await;
    let mut c = client(config(&mesh, PlannerMode::Llm, &model, 5_000)).await;
    let e = plan(&mut c, "Q2 metrics").await.unwrap_err();
    assert_eq!(e.reason.name(), "GOAL_NOT_UNDERSTOOD");
    assert!(
        e.message.contains("no valid plan in 3 tries") && e.message.contains("not JSON"),
        "{}",
        e.message
    );
    assert_eq!(model.requests().len(), 3, "planning.llm_tries answers");

    // A max_tokens too small: the JSON is cut off, deterministically.
    let model = scripted(vec![Answer::Cut(r#"{"steps": [{"id": "ext"#.into())]).await;
    let mut cfg = config(&mesh, PlannerMode::Llm, &model, 5_000);
    cfg.planning.llm_tries = 1;
    let mut c = client(cfg).await;
    let e = plan(&mut c, "Q2 metrics").await.unwrap_err();
    assert!(e.message.contains("cut off at max_tokens"), "{}", e.message);
}

#[tokio::test]
async fn llm_then_rules_falls_back_on_a_refusal_and_on_a_timeout() {
    let mesh = agents().await;
    let model = scripted(vec![Answer::Refusal("I cannot help with that".into())]).await;
    let mut c = client(config(&mesh, PlannerMode::LlmThenRules, &model, 5_000)).await;
    let p = plan(&mut c, "Q2 2025 metrics").await.unwrap();
    let planning = p.planning.as_ref().unwrap();
    assert_eq!(planning.planner, "rules");
    assert_eq!(planning.tries.len(), 1);
    assert!(
        planning.tries[0].errors[0].contains("the model refused: I cannot help"),
        "{planning:?}"
    );
    assert!(
        p.intent
            .as_ref()
            .unwrap()
            .notes
            .iter()
            .any(|n| n.contains("the rules planner made this one")),
        "{:?}",
        p.intent
    );

    let slow = scripted(vec![Answer::Slow(Duration::from_secs(5), VALID.into())]).await;
    let mut c = client(config(&mesh, PlannerMode::LlmThenRules, &slow, 300)).await;
    let p = plan(&mut c, "Q2 2025 metrics").await.unwrap();
    let planning = p.planning.as_ref().unwrap();
    assert_eq!(planning.planner, "rules");
    assert!(
        planning.tries[0].errors[0].contains("request to the model failed"),
        "{planning:?}"
    );

    // An endpoint error is a try too.
    let broken = scripted(vec![Answer::Status(503)]).await;
    let mut c = client(config(&mesh, PlannerMode::LlmThenRules, &broken, 5_000)).await;
    let p = plan(&mut c, "Q2 2025 metrics").await.unwrap();
    assert!(p.planning.unwrap().tries[0].errors[0].contains("HTTP 503"));
}

#[tokio::test]
async fn rules_then_llm_asks_the_model_only_for_goals_the_rules_cannot_read() {
    let mesh = agents().await;
    let model = scripted(vec![Answer::Text(VALID.into())]).await;
    let mut c = client(config(&mesh, PlannerMode::RulesThenLlm, &model, 5_000)).await;
    let p = plan(&mut c, "Q2 2025 metrics").await.unwrap();
    assert_eq!(p.planning.unwrap().planner, "rules");
    assert!(model.requests().is_empty());
    // Not English: the rules planner says so, the model plans it.
    let p = plan(&mut c, "Показатели продаж за второй квартал 2025")
        .await
        .unwrap();
    assert_eq!(p.planning.as_ref().unwrap().planner, "llm:scripted-model");
    assert!(
        p.intent
            .as_ref()
            .unwrap()
            .notes
            .iter()
            .any(|n| n.contains("reads goals in English")),
        "{:?}",
        p.intent
    );
    assert_eq!(model.requests().len(), 1);
}

#[tokio::test]
async fn the_rules_mode_never_calls_a_model_and_the_plan_says_rules() {
    let mesh = agents().await;
    let model = scripted(vec![Answer::Text(VALID.into())]).await;
    let mut c = client(config(&mesh, PlannerMode::Rules, &model, 5_000)).await;
    let p = plan(&mut c, "Q2 2025 metrics").await.unwrap();
    assert_eq!(p.planning.unwrap().planner, "rules");
    assert!(model.requests().is_empty());
    // An explicit plan says it is the client's.
    let events = run_all(&mut c, spec(vec![step("x", "sales.describe", json!({}))])).await;
    assert_eq!(
        planned(&events).planning.as_ref().unwrap().planner,
        "client"
    );
}

#[test]
fn a_model_mode_without_a_model_is_refused_at_start_naming_the_key() {
    let mut cfg = OrchestratorConfig::default();
    cfg.planning.mode = PlannerMode::LlmThenRules;
    let e = cfg.validate().unwrap_err();
    assert!(e.to_string().contains("planning.llm.base_url"), "{e}");
    cfg.planning.llm.base_url = "http://127.0.0.1:1/v1".into();
    cfg.planning.llm.model = "m".into();
    cfg.planning.llm_tries = 0;
    assert!(
        cfg.validate()
            .unwrap_err()
            .to_string()
            .contains("planning.llm_tries")
    );
}

#[tokio::test]
async fn planning_tokens_count_against_the_runs_budget() {
    let mesh = agents().await;
    let model = scripted(vec![Answer::Text(VALID.into())]).await;
    let mut c = client(config(&mesh, PlannerMode::Llm, &model, 5_000)).await;
    let spec = |budget: u32| agentmesh_proto::v1::RunSpec {
        goal: "Q2 metrics".into(),
        parameters: Some(agentmesh_proto::v1::RunParameters {
            token_budget: Some(budget),
            ..agentmesh_proto::v1::RunParameters::default()
        }),
        ..agentmesh_proto::v1::RunSpec::default()
    };
    let e = plan_spec(&mut c, spec(100)).await.unwrap_err();
    assert_eq!(e.reason.name(), "TOKEN_BUDGET_EXCEEDED");
    assert!(
        e.message.contains("planning used 150 tokens"),
        "{}",
        e.message
    );
    let p = plan_spec(&mut c, spec(1_000)).await.unwrap();
    assert_eq!(p.planning.unwrap().tokens, 150);
}
