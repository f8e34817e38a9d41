//! A mesh of Rust, Python and TypeScript agents, each a real process: the
//! data agent (Rust), the forecast agent (Python, `services/forecast-py`)
//! and the quality agent (TypeScript, `services/quality-ts`, joining by
//! self-registration with the address form registry.proto documents) serve
//! one run; killing the only Python replica mid-run fails the run naming the
//! step; with two replicas the run completes on the other. Goals reach the
//! Python and TypeScript agents by the words on their cards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use agentmesh_e2e::mesh::{
    finished, goal, kinds, orchestrator, planned, read_until_started, report_files, spec, step,
    wait_serving_agents, with_ref,
};
use agentmesh_e2e::otlp::Receiver;
use agentmesh_e2e::polyglot::{self, Polyglot};
use agentmesh_e2e::{Child, free_port, start_process_env, temp_dir};
use agentmesh_proto::json::from_opt_struct;
use agentmesh_proto::v1::orchestrator_service_client::OrchestratorServiceClient;
use agentmesh_proto::v1::{
    AGENT_SERVICE_NAME, ListAgentsRequest, ORCHESTRATOR_SERVICE_NAME, PlanRequest, RunEvent,
    RunRequest, RunSpec, RunState, run_event,
};
use serde_json::json;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

/// The plan: the whole history by month (Rust), then the forecast (Python)
/// and the quality check (TypeScript) of that dataset.
fn three_languages(forecast_attempts: u32) -> RunSpec {
    let extract = step(
        "extract",
        "sales.extract",
        json!({"period": "2023-01..2025-06", "group_by": ["month"]}),
    );
    let mut forecast = with_ref(
        step("forecast", "forecast.revenue", json!({"horizon": 3})),
        "dataset",
        "extract",
        "",
    );
    forecast.max_attempts = forecast_attempts;
    let quality = with_ref(
        step("quality", "quality.check", json!({})),
        "dataset",
        "extract",
        "",
    );
    spec(vec![extract, forecast, quality])
}

struct Mesh {
    _children: Vec<Child>,
    client: OrchestratorServiceClient<Channel>,
    forecast: Vec<(SocketAddr, Child)>,
}

/// Starts the data agent, `forecasts` Python replicas (each task first
/// waits `delay_ms`), the orchestrator, then the TypeScript agent, which
/// registers itself.
async fn mesh(dir: &Path, forecasts: usize, delay_ms: u64) -> Mesh {
    mesh_traced(dir, forecasts, delay_ms, None).await
}

/// [`mesh`], every process exporting its spans to `otlp` when given.
async fn mesh_traced(dir: &Path, forecasts: usize, delay_ms: u64, otlp: Option<&str>) -> Mesh {
    let log = dir.join("agents.log");
    let env: Vec<(&str, &str)> = otlp
        .map(|e| {
            vec![
                ("AGENTMESH_TELEMETRY__OTLP__ENDPOINT", e),
                ("AGENTMESH_TELEMETRY__OTLP__EXPORT_INTERVAL_MS", "100"),
            ]
        })
        .unwrap_or_default();
    let otlp_args: Vec<String> = otlp
        .map(|e| {
            vec![
                format!("--otlp-endpoint={e}"),
                "--otlp-export-interval-ms=100".to_string(),
            ]
        })
        .unwrap_or_default();
    let data = free_port([127, 0, 0, 1]);
    let mut children =
        vec![start_process_env("data-agent", data, &[], &env, dir, AGENT_SERVICE_NAME).await];
    let mut forecast = Vec::new();
    for _ in 0..forecasts {
        let addr = free_port([127, 0, 0, 1]);
        let mut args = vec![
            format!("--fault-delay-ms={delay_ms}"),
            "--heartbeat-ms=200".into(),
        ];
        args.extend(otlp_args.iter().cloned());
        forecast.push((
            addr,
            polyglot::start(Polyglot::Forecast, addr, &args, &log).await,
        ));
    }
    let orch = free_port([127, 0, 0, 1]);
    let mut args = vec!["--agent".to_string(), data.to_string()];
    for (addr, _) in &forecast {
        args.extend(["--agent".to_string(), addr.to_string()]);
    }
    children.push(
        start_process_env(
            "orchestrator",
            orch,
            &args,
            &env,
            dir,
            ORCHESTRATOR_SERVICE_NAME,
        )
        .await,
    );
    let quality = free_port([127, 0, 0, 1]);
    let mut register = vec![format!("--register={orch}"), "--lease-ms=2000".into()];
    register.extend(otlp_args.iter().cloned());
    children.push(polyglot::start(Polyglot::Quality, quality, &register, &log).await);
    let mut client = orchestrator(orch).await;
    wait_serving_agents(&mut client, 2 + forecasts).await;
    Mesh {
        _children: children,
        client,
        forecast,
    }
}

#[tokio::test]
async fn rust_python_and_typescript_agents_serve_one_run() {
    let tmp = temp_dir("polyglot");
    let mut m = mesh(tmp.path(), 1, 0).await;
    // The TypeScript agent registered as "http://host:port"; the mesh knows
    // it as host:port, from its lease.
    let endpoints = m
        .client
        .list_agents(ListAgentsRequest {})
        .await
        .unwrap()
        .into_inner()
        .endpoints;
    let quality = endpoints
        .iter()
        .find(|e| e.card.as_ref().is_some_and(|c| c.name == "quality"))
        .expect("the quality agent joined");
    assert!(quality.source.starts_with("registered:"), "{quality:?}");
    assert!(!quality.address.contains("://"), "{quality:?}");

    let events = m
        .client
        .run(RunRequest {
            spec: Some(three_languages(0)),
            stream: None,
        })
        .await
        .unwrap()
        .into_inner()
        .map(Result::unwrap)
        .collect::<Vec<_>>()
        .await;
    let f = finished(&events);
    assert_eq!(f.state(), RunState::Completed, "{f:?}");
    let report = f.report.as_ref().unwrap();

    // Provenance names each agent, in its language, with its version.
    let mut who: Vec<(String, String, String)> = report
        .provenance
        .iter()
        .map(|p| (p.step_id.clone(), p.agent.clone(), p.agent_version.clone()))
        .collect();
    who.sort();
    assert_eq!(
        who,
        [
            (
                "extract".into(),
                "data".into(),
                env!("CARGO_PKG_VERSION").into()
            ),
            ("forecast".into(), "forecast".into(), "0.1.0".into()),
            ("quality".into(), "quality".into(), "0.1.0".into()),
        ]
    );

    // The Python agent's forecast: the three months after the history,
    // each inside its interval, and its chart.
    let outputs: Vec<_> = kinds(&events)
        .into_iter()
        .filter_map(|e| match e {
            run_event::Event::StepCompleted(c) => Some(c),
            _ => None,
        })
        .collect();
    let output = |id: &str| {
        let c = outputs.iter().find(|c| c.step_id == id).unwrap();
        serde_json::Value::Object(from_opt_struct(c.output.as_ref()))
    };
    let forecast = output("forecast");
    let months: Vec<&str> = forecast["forecast"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["month"].as_str().unwrap())
        .collect();
    assert_eq!(months, ["2025-07", "2025-08", "2025-09"]);
    assert_eq!(forecast["history"]["months"], 30);
    for p in forecast["forecast"].as_array().unwrap() {
        let (lo, mid, hi) = (
            p["lower"].as_f64().unwrap(),
            p["revenue"].as_f64().unwrap(),
            p["upper"].as_f64().unwrap(),
        );
        assert!(lo < mid && mid < hi && lo > 0.0, "{p}");
    }
    let section = report
        .sections
        .iter()
        .find(|s| s.step_id == "forecast")
        .unwrap();
    assert_eq!(section.artifact_ids, ["revenue_forecast"]);
    assert_eq!(section.title, "Revenue forecast");
    assert!(section.body.contains("| 2025-07 | $"), "{}", section.body);
    let checked = report
        .sections
        .iter()
        .find(|s| s.step_id == "quality")
        .unwrap();
    assert_eq!(checked.title, "Data quality");
    assert!(checked.body.contains("30 rows checked"), "{}", checked.body);
    // The TypeScript agent's check of the same 30 months.
    let quality = output("quality");
    assert_eq!(quality["rows_checked"], 30);
    assert_eq!(quality["series"], 1);
    assert!(
        quality["summary"]
            .as_str()
            .unwrap()
            .starts_with("30 rows checked")
    );
}

/// The run's events from `Run`, reading until the forecast step started.
async fn start_forecast_run(
    client: &mut OrchestratorServiceClient<Channel>,
    attempts: u32,
) -> (
    tonic::Streaming<agentmesh_proto::v1::RunEvent>,
    String,
    Vec<agentmesh_proto::v1::RunEvent>,
) {
    let mut stream = client
        .run(RunRequest {
            spec: Some(three_languages(attempts)),
            stream: None,
        })
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    loop {
        let endpoint = read_until_started(&mut stream, &mut events).await;
        if let Some(run_event::Event::StepStarted(s)) = events.last().and_then(|e| e.event.as_ref())
            && s.step_id == "forecast"
        {
            return (stream, endpoint, events);
        }
    }
}

async fn rest(
    mut stream: tonic::Streaming<agentmesh_proto::v1::RunEvent>,
    mut events: Vec<agentmesh_proto::v1::RunEvent>,
) -> Vec<agentmesh_proto::v1::RunEvent> {
    while let Some(ev) = stream.next().await {
        events.push(ev.unwrap());
    }
    events
}

#[tokio::test]
async fn killing_the_only_python_replica_mid_run_fails_the_run_naming_the_step() {
    let tmp = temp_dir("polyglot-kill");
    let mut m = mesh(tmp.path(), 1, 5_000).await;
    let (stream, endpoint, events) = start_forecast_run(&mut m.client, 2).await;
    assert_eq!(endpoint, m.forecast[0].0.to_string());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, mut child) = m.forecast.pop().unwrap();
    child.0.kill().unwrap(); // SIGKILL: no drain, no deregistration
    let events = rest(stream, events).await;
    let f = finished(&events);
    assert_eq!(f.state(), RunState::Failed, "{f:?}");
    assert!(f.message.contains("forecast"), "{}", f.message);
    let failed: Vec<_> = kinds(&events)
        .into_iter()
        .filter_map(|e| match e {
            run_event::Event::StepFailed(s) => Some(s.step_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(failed, ["forecast"]);
}

#[tokio::test]
async fn with_two_python_replicas_the_run_completes_on_the_other() {
    let tmp = temp_dir("polyglot-failover");
    let mut m = mesh(tmp.path(), 2, 1_500).await;
    let (stream, endpoint, events) = start_forecast_run(&mut m.client, 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let i = m
        .forecast
        .iter()
        .position(|(a, _)| a.to_string() == endpoint)
        .unwrap();
    let (_, mut victim) = m.forecast.remove(i);
    victim.0.kill().unwrap();
    let events = rest(stream, events).await;
    let f = finished(&events);
    assert_eq!(f.state(), RunState::Completed, "{f:?}");
    let p = f
        .report
        .as_ref()
        .unwrap()
        .provenance
        .iter()
        .find(|p| p.step_id == "forecast")
        .unwrap();
    assert_eq!(p.endpoint, m.forecast[0].0.to_string());
    assert_eq!(p.attempts, 2);
}

async fn run_goal(client: &mut OrchestratorServiceClient<Channel>, text: &str) -> Vec<RunEvent> {
    client
        .run(RunRequest {
            spec: Some(goal(text)),
            stream: None,
        })
        .await
        .unwrap()
        .into_inner()
        .map(Result::unwrap)
        .collect::<Vec<_>>()
        .await
}

fn step_input(p: &agentmesh_proto::v1::RunPlanned, skill: &str) -> serde_json::Value {
    let step = p
        .steps
        .iter()
        .filter_map(|s| s.step.as_ref())
        .find(|s| s.skill == skill)
        .unwrap_or_else(|| panic!("no {skill} step: {p:?}"));
    serde_json::Value::Object(from_opt_struct(step.input.as_ref()))
}

#[tokio::test]
async fn goals_reach_the_python_and_typescript_agents_by_the_words_on_their_cards() {
    let tmp = temp_dir("polyglot-goals");
    let mut m = mesh(tmp.path(), 1, 0).await;

    // The forecast: the whole history by month, for Europe, three months on.
    let text = "Forecast next quarter's revenue for Europe";
    let events = run_goal(&mut m.client, text).await;
    let f = finished(&events);
    assert_eq!(f.state(), RunState::Completed, "{f:?}");
    let p = planned(&events);
    let skills: Vec<&str> = p
        .steps
        .iter()
        .map(|s| s.step.as_ref().unwrap().skill.as_str())
        .collect();
    assert_eq!(skills, ["sales.extract", "forecast.revenue"]);
    assert_eq!(p.steps[1].agent, "forecast");
    let intent = p.intent.as_ref().unwrap();
    assert_eq!(intent.kinds, ["sales.forecast"]);
    assert_eq!(intent.horizon_months, 3);
    assert!(intent.deliverables.is_empty());
    let extract = step_input(p, "sales.extract");
    assert_eq!(extract["period"], "2023-01-01..2025-06-30");
    assert_eq!(extract["group_by"], json!(["month"]));
    assert_eq!(extract["filters"], json!({"region": ["Europe"]}));
    assert_eq!(step_input(p, "forecast.revenue")["horizon"], 3);
    let report = f.report.as_ref().unwrap();
    assert_eq!(report.title, text);
    let section = &report.sections[0];
    assert_eq!(section.title, "Revenue forecast");
    assert!(section.body.contains("| 2025-09 | $"), "{}", section.body);
    assert_eq!(section.artifact_ids, ["revenue_forecast"]);
    let files = report_files(&events);
    let html = String::from_utf8_lossy(&files["report.html"]);
    assert!(html.contains("Revenue forecast") && html.contains("data:image/svg+xml"));
    let md = String::from_utf8_lossy(&files["report.md"]);
    assert!(md.contains("| 2025-07 | $"), "{md}");

    // The quality check of a quarter, by the TypeScript agent.
    let events = run_goal(&mut m.client, "Check the data quality of Q2 2025").await;
    let f = finished(&events);
    assert_eq!(f.state(), RunState::Completed, "{f:?}");
    let p = planned(&events);
    assert_eq!(step_input(p, "sales.extract")["period"], "2025-Q2");
    let section = &f.report.as_ref().unwrap().sections[0];
    assert_eq!(section.title, "Data quality");
    assert!(section.body.contains("rows checked"), "{}", section.body);

    // A period with no data is refused at planning, with the range.
    let refused = m
        .client
        .plan(PlanRequest {
            spec: Some(goal("Q3 2025 sales report")),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused
            .message()
            .contains("the data covers 2023-01-01 to 2025-06-30"),
        "{}",
        refused.message()
    );

    // With the forecast agent gone, the goal is refused naming the kind.
    let (_, mut gone) = m.forecast.pop().unwrap();
    gone.0.kill().unwrap();
    wait_serving_agents(&mut m.client, 2).await;
    let refused = m
        .client
        .plan(PlanRequest {
            spec: Some(goal(text)),
        })
        .await
        .unwrap_err();
    let e = agentmesh_proto::error::MeshError::from_status(&refused);
    assert_eq!(e.reason.name(), "NO_AGENT_FOR_SKILL", "{e:?}");
    assert_eq!(
        e.metadata.get("kind").map(String::as_str),
        Some("sales.forecast")
    );
}

#[tokio::test]
async fn python_and_typescript_tasks_continue_the_run_trace() {
    const TRACE: &str = "5bf92f3577b34da6a3ce929d0e0e4737";
    let (receiver, otlp) = Receiver::start().await;
    let endpoint = format!("http://{otlp}");
    let tmp = temp_dir("polyglot-traces");
    let mut m = mesh_traced(tmp.path(), 1, 0, Some(&endpoint)).await;
    let mut request = tonic::Request::new(RunRequest {
        spec: Some(three_languages(0)),
        stream: None,
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE}-00f067aa0ba902b7-01").parse().unwrap(),
    );
    let events: Vec<RunEvent> = m
        .client
        .run(request)
        .await
        .unwrap()
        .into_inner()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(finished(&events).state(), RunState::Completed);

    let tasks_from = |spans: &[agentmesh_e2e::otlp::Received], service: &str| {
        spans
            .iter()
            .filter(|s| s.service == service && s.span.name == "task")
            .count()
    };
    let spans = receiver
        .wait_for(TRACE, Duration::from_secs(60), |spans| {
            spans.iter().any(|s| s.span.name == "run")
                && ["data-agent", "forecast-agent", "quality-agent"]
                    .iter()
                    .all(|svc| tasks_from(spans, svc) == 1)
        })
        .await;
    for (service, agent) in [("forecast-agent", "forecast"), ("quality-agent", "quality")] {
        let task = spans
            .iter()
            .find(|s| s.service == service && s.span.name == "task")
            .unwrap();
        let attempt = spans
            .iter()
            .find(|s| s.span.name == "attempt" && s.span_id() == task.parent_id())
            .unwrap_or_else(|| panic!("{service}'s task is not under an attempt: {task:?}"));
        assert_eq!(attempt.service, "orchestrator");
        assert_eq!(attempt.attr("agent").as_deref(), Some(agent));
        assert_eq!(task.attr("task_id"), attempt.attr("task_id"));
        assert_eq!(task.attr("attempt").as_deref(), Some("1"));
        assert_eq!(task.attr("outcome").as_deref(), Some("completed"));
        assert_eq!(task.span.kind, 2, "a server span");
    }

    // The TypeScript agent's registration is one trace with the registry's.
    let all = receiver.all();
    let register = all
        .iter()
        .find(|s| s.service == "quality-agent" && s.span.name == "register")
        .expect("the quality agent traced its registration");
    assert!(
        all.iter().any(|s| s.service == "orchestrator"
            && s.span.name == "register"
            && s.parent_id() == register.span_id()
            && s.trace_id() == register.trace_id()),
        "the registry continued the agent's registration trace"
    );
}
