//! A goal in plain language, end to end: the three real agents and the
//! orchestrator as separate processes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use agentmesh_e2e::mesh::*;
use agentmesh_e2e::{agent_card, start_mesh, temp_dir};
use agentmesh_proto::json::from_opt_struct;
use agentmesh_proto::v1::{Deliverable, PlanRequest, RunState, run_event::Event};
use agentmesh_sales::faithfulness;
use serde_json::Value;

const GOAL: &str =
    "Generate a Q2 sales performance report with visualizations and an executive summary";

fn output_of(events: &[agentmesh_proto::v1::RunEvent], skill_step: &str) -> Value {
    Value::Object(from_opt_struct(
        step_completed(events, skill_step).output.as_ref(),
    ))
}

#[tokio::test]
async fn the_reference_goal_produces_an_integrated_report() {
    let tmp = temp_dir("goal");
    let dir = tmp.path().to_path_buf();
    let mesh = start_mesh(&dir, &[]).await;
    let mut client = orchestrator(mesh.orchestrator).await;
    wait_serving_agents(&mut client, 3).await;

    // The plan first: what was understood and who would do what.
    let planned = client
        .plan(PlanRequest {
            spec: Some(goal(GOAL)),
        })
        .await
        .unwrap()
        .into_inner()
        .planned
        .unwrap();
    let intent = planned.intent.as_ref().unwrap();
    assert_eq!(intent.period.as_ref().unwrap().label, "Q2 2025");
    assert_eq!(intent.deliverables.len(), 4);
    assert!(
        intent.notes.iter().any(|n| n.contains("Q2 2025")),
        "{:?}",
        intent.notes
    );
    let skills: Vec<&str> = planned
        .steps
        .iter()
        .map(|s| s.step.as_ref().unwrap().skill.as_str())
        .collect();
    assert_eq!(
        skills,
        [
            "sales.extract",
            "analytics.metrics",
            "analytics.charts",
            "summary.write"
        ]
    );
    for s in &planned.steps {
        assert!(!s.endpoint.is_empty() && !s.agent.is_empty(), "{s:?}");
        assert!(!s.step.as_ref().unwrap().rationale.is_empty());
    }

    let events = run_all(&mut client, goal(GOAL)).await;
    let f = finished(&events);
    assert_eq!(f.state(), RunState::Completed, "{f:?}");
    let report = f.report.as_ref().unwrap();
    let titles: Vec<&str> = report.sections.iter().map(|s| s.title.as_str()).collect();
    assert_eq!(
        titles,
        ["Executive summary", "Key metrics", "Charts", "Data"]
    );
    assert!(
        report
            .sections
            .iter()
            .all(|s| !s.missing && !s.body.is_empty())
    );
    let charts = report
        .sections
        .iter()
        .find(|s| s.title == "Charts")
        .unwrap();
    assert!(charts.artifact_ids.len() >= 4, "{:?}", charts.artifact_ids);
    assert!(!report.summary.is_empty());
    // Provenance: every section, who did it.
    assert_eq!(report.provenance.len(), 4);
    let agents: Vec<&str> = report.provenance.iter().map(|p| p.agent.as_str()).collect();
    assert!(
        agents.contains(&"data") && agents.contains(&"analytics") && agents.contains(&"summary"),
        "{agents:?}"
    );
    for p in &report.provenance {
        assert!(p.attempts >= 1 && p.input_hash.len() == 64 && !p.agent_version.is_empty());
    }

    // The summary's numbers come from the same metrics the table shows.
    let metrics = output_of(&events, "metrics");
    let summary = output_of(&events, "summary");
    let text = summary["markdown"].as_str().unwrap();
    let check = faithfulness::check(text, &metrics, &faithfulness::labels(&metrics));
    assert!(check.passed() && check.checked.len() >= 3, "{check:?}");
    let table = &report
        .sections
        .iter()
        .find(|s| s.title == "Key metrics")
        .unwrap()
        .body;
    let revenue = metrics["totals"]["revenue"].as_f64().unwrap();
    assert!(
        table.contains(&format!("${:.2}M", revenue / 1e6)),
        "{table}"
    );

    // The rendered files came with the run.
    let files = report_files(&events);
    let html = String::from_utf8(files["report.html"].clone()).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(
        html.matches("<img src=\"data:image/svg+xml;base64,")
            .count()
            >= 4
    );
    assert!(!html.contains("src=\"http"), "self-contained");
    assert!(html.contains("Provenance") && html.contains("summary.write"));
    let md = String::from_utf8(files["report.md"].clone()).unwrap();
    assert!(md.contains("## Executive summary") && md.contains("| Section | Step | Agent"));
    assert!(files.keys().filter(|k| k.ends_with(".svg")).count() >= 4);
    assert!(files.contains_key("dataset.csv"));
    drop(mesh);
}

#[tokio::test]
async fn two_named_periods_are_compared_end_to_end() {
    let tmp = temp_dir("vs");
    let dir = tmp.path().to_path_buf();
    let mesh = start_mesh(&dir, &[]).await;
    let mut client = orchestrator(mesh.orchestrator).await;
    wait_serving_agents(&mut client, 3).await;

    let events = run_all(&mut client, goal("Q2 2025 report vs Q4 2024 for Europe")).await;
    let f = finished(&events);
    assert_eq!(f.state(), RunState::Completed, "{f:?}");
    // The data agent extracted Q4 2024 beside Q2 2025, filtered alike.
    let dataset = output_of(&events, "dataset");
    let named = &dataset["comparisons"]["named_period"];
    assert_eq!(named["period"]["label"], "Q4 2024");
    assert_eq!(dataset["filters"]["region"], serde_json::json!(["Europe"]));
    // The metrics measure growth against it, from those two totals.
    let metrics = output_of(&events, "metrics");
    let vs = &metrics["growth"]["vs_period"];
    assert_eq!(vs["label"], "Q4 2024");
    let now = dataset["totals"]["revenue"].as_f64().unwrap();
    let then = named["totals"]["revenue"].as_f64().unwrap();
    let expected = ((now - then) / then * 1000.0).round() / 10.0;
    assert_eq!(vs["revenue_pct"].as_f64(), Some(expected));
    // Only the comparison asked for: no default previous/year-ago.
    assert!(metrics["growth"]["vs_previous"].is_null());
    assert!(metrics["growth"]["vs_year_ago"].is_null());
    // The report's table has its column, and the summary says it, faithfully.
    let report = f.report.as_ref().unwrap();
    let table = &report
        .sections
        .iter()
        .find(|s| s.title == "Key metrics")
        .unwrap()
        .body;
    assert!(table.contains("| Metric | Value | vs Q4 2024 |"), "{table}");
    let summary = output_of(&events, "summary");
    let text = summary["markdown"].as_str().unwrap();
    assert!(text.contains("against Q4 2024"), "{text}");
    let check = faithfulness::check(text, &metrics, &faithfulness::labels(&metrics));
    assert!(check.passed(), "{check:?}");
    drop(mesh);
}

#[tokio::test]
async fn an_output_that_violates_the_schema_is_retried_on_another_replica() {
    let tmp = temp_dir("impostor");
    let dir = tmp.path().to_path_buf();
    // The mesh's analytics agent listens on 127.0.0.2; the impostor on
    // 127.0.0.1 sorts first, so it gets the first attempts.
    let real = {
        let mut mesh = start_mesh(&dir, &[]).await;
        let card = agent_card(mesh.analytics).await;
        mesh.children.pop(); // stop this orchestrator; a new one sees the impostor too
        (mesh, card)
    };
    let (mesh, card) = real;
    let impostor = Impostor {
        card,
        answered: Arc::new(AtomicU32::new(0)),
    };
    let fake = spawn_impostor(impostor.clone()).await;
    let mut cfg = test_config(&[mesh.data, mesh.analytics, mesh.summary, fake]);
    cfg.routing.eject_after_failures = 10;
    let orch = spawn_orchestrator(cfg).await;
    let mut client = orchestrator(orch).await;
    wait_serving_agents(&mut client, 4).await;

    let mut spec = goal("Q1 2025 metrics and charts");
    spec.parameters = Some(agentmesh_proto::v1::RunParameters {
        deliverables: vec![Deliverable::Metrics as i32, Deliverable::Charts as i32],
        ..Default::default()
    });
    let events = run_all(&mut client, spec).await;
    let f = finished(&events);
    assert_eq!(f.state(), RunState::Completed, "{f:?}");
    assert!(impostor.answered.load(Ordering::SeqCst) >= 1);
    let retry = events
        .iter()
        .find_map(|e| match &e.event {
            Some(Event::StepRetrying(r)) => Some(r.clone()),
            _ => None,
        })
        .expect("the invalid output was a failed attempt");
    assert_eq!(retry.reason, "OUTPUT_INVALID");
    assert!(retry.message.contains("schema"), "{}", retry.message);
    let rerouted = events
        .iter()
        .find_map(|e| match &e.event {
            Some(Event::StepRerouted(r)) => Some(r.clone()),
            _ => None,
        })
        .expect("rerouted to the real replica");
    assert_eq!(rerouted.from_endpoint, fake.to_string());
    assert_eq!(rerouted.to_endpoint, mesh.analytics.to_string());
    let prov = f
        .report
        .as_ref()
        .unwrap()
        .provenance
        .iter()
        .find(|p| p.step_id == "metrics")
        .unwrap()
        .clone();
    assert_eq!(prov.endpoint, mesh.analytics.to_string());
    assert_eq!(prov.earlier_endpoints, vec![fake.to_string()]);
}
