//! Planning from agent skills: chaining by kind, a new agent's skill used
//! with no orchestrator change, playbooks, unsatisfiable goals. Real agents
//! on loopback listeners; the orchestrator in process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use agentmesh_analytics::AnalyticsAgent;
use agentmesh_e2e::mesh::*;
use agentmesh_e2e::{spawn_agent, temp_dir};
use agentmesh_proto::error::MeshError;
use agentmesh_proto::json::from_opt_struct;
use agentmesh_proto::v1::{AgentCard, PlanRequest, RunPlanned, RunState};
use agentmesh_runtime::{Agent, SkillSpec, Task, TaskContext, TaskError, TaskOutput};
use common::data_agent;
use serde_json::{Value, json};
use tonic::transport::Channel;

/// A new agent, unknown to the orchestrator's code: it writes a one-line
/// brief from sales metrics.
struct Brief;

impl Agent for Brief {
    fn card(&self) -> AgentCard {
        AgentCard {
            name: "brief".into(),
            version: "0.1.0".into(),
            skills: vec![
                SkillSpec::new("brief.write", "a one-line brief from sales metrics")
                    .input_schema(&json!({
                        "type": "object", "required": ["metrics"],
                        "properties": {"metrics": {"type": "object"}}
                    }))
                    .output_schema(&json!({
                        "type": "object", "required": ["markdown"],
                        "properties": {"markdown": {"type": "string"}}
                    }))
                    .consumes(&["sales.metrics"])
                    .produces(&["summary"])
                    .build(),
            ],
            ..AgentCard::default()
        }
    }

    async fn execute(&self, task: Task, _: TaskContext) -> Result<TaskOutput, TaskError> {
        let revenue = task.input["metrics"]["totals"]["revenue"]
            .as_f64()
            .unwrap_or(0.0);
        let Value::Object(out) = json!({"markdown": format!("Revenue was {revenue:.2} USD.")})
        else {
            unreachable!()
        };
        Ok(TaskOutput::new(out))
    }
}

async fn plan(
    client: &mut agentmesh_proto::v1::orchestrator_service_client::OrchestratorServiceClient<
        Channel,
    >,
    goal: &str,
) -> Result<RunPlanned, MeshError> {
    client
        .plan(PlanRequest {
            spec: Some(agentmesh_e2e::mesh::goal(goal)),
        })
        .await
        .map(|r| r.into_inner().planned.unwrap())
        .map_err(|s| MeshError::from_status(&s))
}

fn skills(p: &RunPlanned) -> Vec<String> {
    p.steps
        .iter()
        .map(|s| s.step.as_ref().unwrap().skill.clone())
        .collect()
}

#[tokio::test]
async fn plans_chain_skills_by_kind_and_a_new_agent_is_used_without_code_changes() {
    let (_data_root, data) = data_agent().await;
    let analytics = spawn_agent(AnalyticsAgent).await;
    // Only data + brief: charts cannot be made.
    let brief = spawn_agent(Brief).await;
    let orch = spawn_orchestrator(test_config(&[data, brief])).await;
    let mut client = orchestrator(orch).await;
    wait_serving_agents(&mut client, 2).await;
    let e = plan(&mut client, "executive summary for Q1 2025")
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert_eq!(e.reason.name(), "NO_AGENT_FOR_SKILL");
    assert!(
        e.message
            .contains("no healthy agent offers a skill producing `sales.metrics`"),
        "{}",
        e.message
    );
    let e = plan(&mut client, "a chart of revenue by region for H1")
        .await
        .unwrap_err();
    assert!(e.message.contains("producing `chart`"), "{}", e.message);

    // Add analytics: the brief agent's new skill is now reachable.
    let orch = spawn_orchestrator(test_config(&[data, brief, analytics])).await;
    let mut client = orchestrator(orch).await;
    wait_serving_agents(&mut client, 3).await;
    let p = plan(&mut client, "executive summary for Q1 2025")
        .await
        .unwrap();
    assert_eq!(
        skills(&p),
        ["sales.extract", "analytics.metrics", "brief.write"]
    );
    let steps: Vec<_> = p.steps.iter().map(|s| s.step.clone().unwrap()).collect();
    // Chained through the kinds: dataset → metrics → summary.
    assert_eq!(steps[1].refs[0].field, "dataset");
    assert_eq!(steps[1].refs[0].from_step, steps[0].id);
    assert_eq!(steps[2].refs[0].field, "metrics");
    assert_eq!(steps[2].refs[0].from_step, steps[1].id);
    assert_eq!(p.steps[2].agent, "brief");
    assert!(
        steps[2].rationale.contains("produces `summary`"),
        "{}",
        steps[2].rationale
    );
    assert_eq!(steps[2].expect.as_ref().unwrap().faithful_text, "/markdown");
    let input = from_opt_struct(steps[0].input.as_ref());
    assert_eq!(input["period"], json!("2025-Q1"));
    // And it runs: the brief's figure is checked against the metrics.
    let events = run_all(&mut client, goal("executive summary for Q1 2025")).await;
    let f = finished(&events);
    assert_eq!(f.state(), RunState::Completed, "{f:?}");
    assert!(
        f.report.as_ref().unwrap().sections[0]
            .body
            .starts_with("Revenue was")
    );

    // A chart request picks the chart the goal names, with its dependencies.
    let p = plan(&mut client, "just a chart of revenue by region for H1")
        .await
        .unwrap();
    assert_eq!(
        skills(&p),
        ["sales.extract", "analytics.metrics", "analytics.charts"]
    );
    let charts = from_opt_struct(p.steps[2].step.as_ref().unwrap().input.as_ref());
    assert_eq!(charts["charts"], json!(["revenue_by_region"]));
    assert_eq!(p.intent.unwrap().period.unwrap().label, "H1 2025");
    // Filters reach the source.
    let p = plan(&mut client, "EMEA laptops data for March 2025")
        .await
        .unwrap();
    let input = from_opt_struct(p.steps[0].step.as_ref().unwrap().input.as_ref());
    assert_eq!(
        input["filters"]["region"],
        json!(["Europe", "Middle East & Africa"])
    );
    assert_eq!(input["filters"]["product_line"], json!(["Laptops"]));
    assert_eq!(input["period"], json!("2025-03"));
    // What cannot be understood is refused.
    for bad in [
        "Q5 report",
        "summary for the Antarctica region",
        "hello there",
    ] {
        let e = plan(&mut client, bad).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad}");
        assert_eq!(e.reason.name(), "GOAL_NOT_UNDERSTOOD", "{bad}");
    }
}

#[tokio::test]
async fn a_playbook_fixes_the_plan_for_its_intent_and_a_bad_one_stops_the_start() {
    let (_data_root, data) = data_agent().await;
    let analytics = spawn_agent(AnalyticsAgent).await;
    let tmp = temp_dir("playbooks");
    let dir = tmp.path().to_path_buf();
    std::fs::write(
        dir.join("metrics-by-country.toml"),
        r#"
name = "metrics-by-country"
description = "metrics with a country breakdown"
deliverables = ["metrics"]

[[steps]]
id = "extract"
skill = "sales.extract"
intent_fields = true
input = { group_by = ["month", "country"] }
expect = { non_empty = ["/rows"] }

[[steps]]
id = "metrics"
skill = "analytics.metrics"
refs = [{ field = "dataset", from = "extract" }]
"#,
    )
    .unwrap();
    let mut cfg = test_config(&[data, analytics]);
    cfg.planning.playbooks = vec![dir.clone()];
    let orch = spawn_orchestrator(cfg).await;
    let mut client = orchestrator(orch).await;
    wait_serving_agents(&mut client, 2).await;

    let p = plan(&mut client, "key metrics for Q1 2025").await.unwrap();
    let steps: Vec<_> = p.steps.iter().map(|s| s.step.clone().unwrap()).collect();
    assert_eq!(steps[0].id, "extract");
    assert!(
        steps[0]
            .rationale
            .starts_with("playbook metrics-by-country")
    );
    let input = from_opt_struct(steps[0].input.as_ref());
    assert_eq!(input["group_by"], json!(["month", "country"]));
    assert_eq!(input["period"], json!("2025-Q1"), "intent fields filled in");
    let events = run_all(&mut client, goal("key metrics for Q1 2025")).await;
    assert_eq!(finished(&events).state(), RunState::Completed);
    // Other intents still chain from skills.
    let p = plan(&mut client, "charts for Q1 2025").await.unwrap();
    assert_eq!(
        skills(&p),
        ["sales.extract", "analytics.metrics", "analytics.charts"]
    );

    // A malformed playbook: the orchestrator does not start.
    std::fs::write(
        dir.join("broken.toml"),
        "name = \"broken\"\ndeliverables = [\"poems\"]\n[[steps]]\nid = \"a\"\nskill = \"x\"\n",
    )
    .unwrap();
    let mut cfg = test_config(&[data]);
    cfg.planning.playbooks = vec![dir];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = agentmesh_orchestrator::serve(cfg, listener, std::future::pending())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("poems"), "{err}");
}

/// Another new agent: it scores churn risk from a sales dataset, and says
/// so only through its card (tags and the kind it produces).
struct Churn;

impl Agent for Churn {
    fn card(&self) -> AgentCard {
        AgentCard {
            name: "churn".into(),
            version: "0.3.0".into(),
            skills: vec![
                SkillSpec::new("churn.score", "scores the churn risk of each region")
                    .tags(&["churn", "retention", "sales"])
                    .input_schema(&json!({
                        "type": "object", "required": ["dataset"],
                        "properties": {"dataset": {"type": "object"}, "period": {"type": "string"}}
                    }))
                    .output_schema(&json!({
                        "type": "object", "required": ["rows_scored"],
                        "properties": {"rows_scored": {"type": "integer"}}
                    }))
                    .consumes(&["sales.dataset"])
                    .produces(&["sales.churn_risk"])
                    .build(),
            ],
            ..AgentCard::default()
        }
    }

    async fn execute(&self, task: Task, _: TaskContext) -> Result<TaskOutput, TaskError> {
        let rows = task.input["dataset"]["rows"].as_array().map_or(0, Vec::len);
        let Value::Object(out) = json!({"rows_scored": rows}) else {
            unreachable!()
        };
        Ok(TaskOutput::new(out))
    }
}

#[tokio::test]
async fn a_goal_naming_only_a_new_agents_words_is_planned_to_it_run_and_reported() {
    let (_data_root, data) = data_agent().await;
    let (churn, crash) = spawn_crashable(Churn);
    let orch = spawn_orchestrator(test_config(&[data, churn])).await;
    let mut client = orchestrator(orch).await;
    wait_serving_agents(&mut client, 2).await;
    let text = "churn risk for Europe in Q1 2025";
    let p = plan(&mut client, text).await.unwrap();
    assert_eq!(skills(&p), ["sales.extract", "churn.score"]);
    assert_eq!(p.steps[1].agent, "churn");
    assert_eq!(p.intent.as_ref().unwrap().kinds, ["sales.churn_risk"]);
    let events = run_all(&mut client, goal(text)).await;
    let f = finished(&events);
    assert_eq!(f.state(), RunState::Completed, "{f:?}");
    let report = f.report.as_ref().unwrap();
    assert_eq!(report.sections.len(), 1);
    assert_eq!(report.sections[0].title, "Output of step churn_risk");
    assert!(
        report.sections[0].body.contains("rows_scored"),
        "{}",
        report.sections[0].body
    );
    assert!(
        report
            .provenance
            .iter()
            .any(|p| p.agent == "churn" && p.agent_version == "0.3.0")
    );

    // Its agent gone (its endpoint still listed, unreachable): refused
    // naming the kind, not misread.
    crash.crash();
    wait_serving_agents(&mut client, 1).await;
    let e = plan(&mut client, text).await.unwrap_err();
    assert_eq!(e.reason.name(), "NO_AGENT_FOR_SKILL", "{e:?}");
    assert_eq!(
        e.metadata.get("kind").map(String::as_str),
        Some("sales.churn_risk")
    );
}

#[tokio::test]
async fn a_ranking_in_a_goal_reaches_the_metrics_and_its_table_the_report() {
    let (_data_root, data) = data_agent().await;
    let analytics = spawn_agent(AnalyticsAgent).await;
    let orch = spawn_orchestrator(test_config(&[data, analytics])).await;
    let mut client = orchestrator(orch).await;
    wait_serving_agents(&mut client, 2).await;
    let text = "the three best product lines by revenue in Q2 2025";
    let p = plan(&mut client, text).await.unwrap();
    assert_eq!(skills(&p), ["sales.extract", "analytics.metrics"]);
    let input = from_opt_struct(p.steps[1].step.as_ref().unwrap().input.as_ref());
    assert_eq!(
        input["ranking"],
        json!({"dimension": "product_line", "n": 3, "order": "top", "by": "revenue"})
    );
    let events = run_all(&mut client, goal(text)).await;
    let f = finished(&events);
    assert_eq!(f.state(), RunState::Completed, "{f:?}");
    let metrics = events
        .iter()
        .find_map(|e| match &e.event {
            Some(agentmesh_proto::v1::run_event::Event::StepCompleted(c))
                if c.step_id == "metrics" =>
            {
                Some(from_opt_struct(c.output.as_ref()))
            }
            _ => None,
        })
        .unwrap();
    let rows = metrics["ranking"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let values: Vec<f64> = rows.iter().map(|r| r["value"].as_f64().unwrap()).collect();
    assert!(values.windows(2).all(|w| w[0] >= w[1]), "{values:?}");
    let section = &f.report.as_ref().unwrap().sections[0];
    assert!(
        section.body.contains("**Top 3 product lines by revenue**"),
        "{}",
        section.body
    );
}
