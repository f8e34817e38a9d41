//! OpenTelemetry traces from the real binaries: the orchestrator and the
//! three agents run as separate processes exporting over OTLP/gRPC to a
//! real OTLP trace receiver (the collector service of `opentelemetry-proto`)
//! on loopback. One run of the Q2 goal, started inside a client's trace, is
//! one trace: the run, its steps and attempts in the orchestrator, a task in
//! an agent for every attempt, each span under its parent, and a retried
//! step visible when an agent fails every first attempt.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use agentmesh_e2e::mesh::{goal, wait_serving_agents};
use agentmesh_e2e::otlp::{Received, Receiver};
use agentmesh_e2e::{free_port, start_process_logged, temp_dir};
use agentmesh_proto::v1::orchestrator_service_client::OrchestratorServiceClient;
use agentmesh_proto::v1::{
    AGENT_SERVICE_NAME, ORCHESTRATOR_SERVICE_NAME, RunRequest, RunState, run_event,
};
use futures_util::StreamExt;
use serde_json::Value;
use tonic::transport::Channel;

const Q2: &str =
    "Generate a Q2 sales performance report with visualizations and an executive summary";
/// The client's own trace, which the run continues.
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
const AGENTS: [&str; 3] = ["data-agent", "analytics-agent", "summary-agent"];
/// Its every first attempt fails (retryably).
const FAULTY: &str = "analytics-agent";

fn named<'a>(spans: &'a [Received], name: &str) -> Vec<&'a Received> {
    spans.iter().filter(|s| s.span.name == name).collect()
}

#[tokio::test]
async fn one_run_is_one_trace_across_every_process() {
    let (receiver, otlp) = Receiver::start().await;
    let endpoint = format!("http://{otlp}");
    let dir = temp_dir("traces-e2e");
    let otel = [
        ("AGENTMESH_TELEMETRY__OTLP__ENDPOINT", endpoint.as_str()),
        ("AGENTMESH_TELEMETRY__OTLP__EXPORT_INTERVAL_MS", "100"),
    ];
    let orch = free_port([127, 0, 0, 1]);
    let store = dir.path().join("runs.db").to_string_lossy().into_owned();
    let mut env = otel.to_vec();
    env.push(("AGENTMESH_STORE__PATH", &store));
    let json = ["--log-format".to_string(), "json".to_string()];
    let orch_log = dir.path().join("orchestrator.log");
    let mut children = vec![
        start_process_logged(
            "orchestrator",
            orch,
            &json,
            &env,
            dir.path(),
            ORCHESTRATOR_SERVICE_NAME,
            Some(&orch_log),
        )
        .await,
    ];
    // The agents register themselves (traced calls to the registry).
    let orch_addr = orch.to_string();
    for name in AGENTS {
        let listen = free_port([127, 0, 0, 1]);
        let advertise = listen.to_string();
        let mut env = otel.to_vec();
        env.push(("AGENTMESH_SERVER__REGISTRATION__ORCHESTRATOR", &orch_addr));
        env.push(("AGENTMESH_SERVER__REGISTRATION__ADVERTISE", &advertise));
        if name == FAULTY {
            env.push(("AGENTMESH_SERVER__FAULT_FAIL_ATTEMPTS", "1"));
        }
        let log = dir.path().join(format!("{name}.log"));
        children.push(
            start_process_logged(
                name,
                listen,
                &json,
                &env,
                dir.path(),
                AGENT_SERVICE_NAME,
                Some(&log),
            )
            .await,
        );
    }
    let channel = Channel::from_shared(format!("http://{orch}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = OrchestratorServiceClient::new(channel).max_decoding_message_size(64 << 20);
    wait_serving_agents(&mut client, 3).await;

    // The client's request carries its own trace context.
    let mut request = tonic::Request::new(RunRequest {
        spec: Some(goal(Q2)),
        stream: None,
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01")
            .parse()
            .unwrap(),
    );
    let mut stream = client.run(request).await.unwrap().into_inner();
    let (mut run_id, mut state, mut planned) = (String::new(), None, Vec::new());
    while let Some(ev) = stream.next().await {
        let ev = ev.unwrap();
        run_id.clone_from(&ev.run_id);
        match ev.event {
            Some(run_event::Event::Planned(p)) => {
                planned = p
                    .steps
                    .iter()
                    .filter_map(|s| s.step.as_ref().map(|s| s.id.clone()))
                    .collect();
            }
            Some(run_event::Event::Finished(f)) => state = Some(f.state()),
            _ => {}
        }
    }
    assert_eq!(state, Some(RunState::Completed));
    assert!(planned.len() >= 3, "{planned:?}");

    // Wait until the run has ended in the trace and every attempt's task
    // has arrived from its agent.
    let spans = receiver
        .wait_for(CLIENT_TRACE, Duration::from_secs(30), |spans| {
            named(spans, "run").len() == 1
                && named(spans, "attempt").len() + named(spans, "catalog").len()
                    == named(spans, "task").len()
        })
        .await;
    let services: BTreeSet<&str> = spans.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(
        services,
        BTreeSet::from([
            "orchestrator",
            "data-agent",
            "analytics-agent",
            "summary-agent"
        ]),
        "spans come from all four processes"
    );

    // The run continues the client's trace.
    let run = named(&spans, "run")[0];
    assert_eq!(run.service, "orchestrator");
    assert_eq!(
        run.parent_id(),
        CLIENT_SPAN,
        "the client's span is the run's parent"
    );
    assert_eq!(run.attr("run_id").as_deref(), Some(run_id.as_str()));
    assert_eq!(run.attr("state").as_deref(), Some("RUN_STATE_COMPLETED"));

    // A step span per planned step, under the run.
    let steps = named(&spans, "step");
    let step_ids: BTreeSet<String> = steps.iter().filter_map(|s| s.attr("step_id")).collect();
    assert_eq!(
        step_ids,
        planned.iter().cloned().collect(),
        "one span per step"
    );
    assert_eq!(steps.len(), planned.len());
    for s in &steps {
        assert_eq!(s.parent_id(), run.span_id(), "{s:?}");
        assert_eq!(s.service, "orchestrator");
        assert_eq!(s.attr("outcome").as_deref(), Some("completed"));
    }

    // Attempts under their steps; the faulty agent's steps took two, the
    // first failed (an error in the trace) and the step shows the retry.
    let step_of: BTreeMap<String, &Received> = steps.iter().map(|s| (s.span_id(), *s)).collect();
    let attempts = named(&spans, "attempt");
    let mut retried = 0;
    for step in &steps {
        let mine: Vec<&&Received> = attempts
            .iter()
            .filter(|a| a.parent_id() == step.span_id())
            .collect();
        let agent = mine[0].attr("agent").unwrap();
        for a in &mine {
            assert_eq!(a.attr("step_id"), step.attr("step_id"));
            assert_eq!(a.attr("skill"), step.attr("skill"));
            assert!(
                a.attr("replica")
                    .is_some_and(|r| r.starts_with("127.0.0.1:"))
            );
        }
        let by_number: BTreeMap<String, Option<String>> = mine
            .iter()
            .map(|a| (a.attr("attempt").unwrap(), a.attr("outcome")))
            .collect();
        if agent == "analytics" {
            retried += 1;
            assert_eq!(
                by_number,
                BTreeMap::from([
                    ("1".to_string(), Some("agent_failed".to_string())),
                    ("2".to_string(), Some("completed".to_string())),
                ]),
                "{:?}",
                step.attr("step_id")
            );
            let failed = mine
                .iter()
                .find(|a| a.attr("attempt").as_deref() == Some("1"));
            let status = failed.unwrap().span.status.as_ref().unwrap();
            assert_eq!(status.code, 2, "the failed attempt is an error: {status:?}");
            assert!(
                step.events().contains(&"step failed; retrying"),
                "the retry is an event of the step: {:?}",
                step.events()
            );
        } else {
            assert_eq!(
                by_number,
                BTreeMap::from([("1".to_string(), Some("completed".to_string()))])
            );
        }
    }
    assert!(retried >= 1, "the analytics agent served a step");
    assert!(
        attempts
            .iter()
            .all(|a| step_of.contains_key(&a.parent_id()))
    );

    // Planning read the data's catalog from the data agent: a call within
    // the run, its task under it.
    let catalog = named(&spans, "catalog");
    assert_eq!(catalog.len(), 1, "the first run fetches the catalog");
    assert_eq!(catalog[0].parent_id(), run.span_id());
    let catalog_task: Vec<_> = named(&spans, "task")
        .into_iter()
        .filter(|t| t.parent_id() == catalog[0].span_id())
        .collect();
    assert_eq!(catalog_task.len(), 1);
    assert_eq!(catalog_task[0].service, "data-agent");
    assert_eq!(catalog_task[0].attr("task_id"), catalog[0].attr("task_id"));

    // Every attempt's task, in the agent that served it, under the attempt.
    let attempt_of: BTreeMap<String, &&Received> =
        attempts.iter().map(|a| (a.span_id(), a)).collect();
    let tasks: Vec<_> = named(&spans, "task")
        .into_iter()
        .filter(|t| t.parent_id() != catalog[0].span_id())
        .collect();
    let mut agents_seen = BTreeSet::new();
    for t in &tasks {
        let a = attempt_of
            .get(&t.parent_id())
            .unwrap_or_else(|| panic!("task without its attempt: {t:?}"));
        assert_eq!(t.attr("task_id"), a.attr("task_id"));
        assert_eq!(t.attr("attempt"), a.attr("attempt"));
        assert_eq!(t.attr("run_id").as_deref(), Some(run_id.as_str()));
        assert_eq!(t.attr("outcome"), a.attr("outcome"), "{t:?}");
        assert_eq!(
            a.attr("agent").unwrap(),
            t.service.trim_end_matches("-agent"),
            "the task ran where the attempt says"
        );
        agents_seen.insert(t.service.clone());
    }
    assert_eq!(agents_seen.len(), 3, "{agents_seen:?}");

    // Registration continues the agent's trace into the registry.
    let all = receiver.all();
    for agent in AGENTS {
        let client_side = all
            .iter()
            .find(|s| s.service == agent && s.span.name == "register")
            .unwrap_or_else(|| panic!("{agent} sent no register span"));
        let server_side = all.iter().find(|s| {
            s.service == "orchestrator"
                && s.span.name == "register"
                && s.parent_id() == client_side.span_id()
        });
        assert!(
            server_side.is_some_and(|s| s.trace_id() == client_side.trace_id()),
            "{agent}'s registration is one trace"
        );
    }

    // Log lines within a span carry its ids: the orchestrator's retry (run,
    // step, trace and span ids) and the faulty agent's failed task (run,
    // task, trace and span ids), the span ids being those of the trace.
    let retry = log_line(&orch_log, "step failed; retrying");
    let step = steps
        .iter()
        .find(|s| s.span_id() == field(&retry, "step", "span_id"))
        .expect("the retry line names its step's span");
    assert_eq!(field(&retry, "step", "trace_id"), CLIENT_TRACE);
    assert_eq!(Some(field(&retry, "step", "step_id")), step.attr("step_id"));
    assert_eq!(field(&retry, "run", "run_id"), run_id);
    assert_eq!(field(&retry, "run", "span_id"), run.span_id());
    let failed = log_line(&dir.path().join("analytics-agent.log"), "task failed");
    let task = tasks
        .iter()
        .find(|t| t.span_id() == field(&failed, "task", "span_id"))
        .expect("the failure line names its task's span");
    assert_eq!(field(&failed, "task", "trace_id"), CLIENT_TRACE);
    assert_eq!(field(&failed, "task", "run_id"), run_id);
    assert_eq!(
        Some(field(&failed, "task", "task_id")),
        task.attr("task_id")
    );
    assert_eq!(failed["reason"], "AGENT_FAILED");
    drop(children);
}

/// The first JSON log line of `path` whose message is `message`.
fn log_line(path: &std::path::Path, message: &str) -> Value {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == message)
        .unwrap_or_else(|| panic!("no {message:?} line in {}", path.display()))
}

/// Field `key` of span `span` among a JSON log line's spans.
fn field(line: &Value, span: &str, key: &str) -> String {
    line["spans"]
        .as_array()
        .and_then(|spans| spans.iter().find(|s| s["name"] == span))
        .and_then(|s| s[key].as_str())
        .unwrap_or_else(|| panic!("no {span}.{key} in {line}"))
        .to_string()
}
