//! An agent that shuts down with a task in flight: once its drain grace
//! is over it cancels the task, says so as a retryable failure, and the
//! orchestrator runs the step again on another replica.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use agentmesh_e2e::mesh::*;
use agentmesh_proto::v1::{RunRequest, RunState, run_event::Event};
use agentmesh_runtime::ServerConfig;
use serde_json::json;
use tokio_stream::StreamExt;

#[tokio::test]
async fn a_task_cancelled_by_a_draining_agent_is_retried_on_another_replica() {
    // A grace shorter than the task: the drain ends by cancelling it.
    let cfg = ServerConfig {
        shutdown_grace: Duration::from_millis(200),
        ..ServerConfig::default()
    };
    let (a, stop_a) = spawn_agent_at(
        TestAgent::new("work", &["work"]),
        "127.0.0.1:0".parse().unwrap(),
        cfg.clone(),
    )
    .await;
    let (b, stop_b) = spawn_agent_at(
        TestAgent::new("work", &["work"]),
        "127.0.0.1:0".parse().unwrap(),
        cfg,
    )
    .await;
    let orch = spawn_orchestrator(test_config(&[a, b])).await;
    let mut client = orchestrator(orch).await;
    wait_serving_agents(&mut client, 2).await;

    let mut stream = client
        .run(RunRequest {
            spec: Some(spec(vec![step("long", "work", json!({"sleep_ms": 1_500}))])),
            stream: None,
        })
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    let busy = read_until_started(&mut stream, &mut events).await;
    let (_keep, other) = if busy == a.to_string() {
        drop(stop_a);
        (stop_b, b)
    } else {
        drop(stop_b);
        (stop_a, a)
    };
    while let Some(ev) = stream.next().await {
        events.push(ev.unwrap());
    }

    let f = finished(&events);
    assert_eq!(f.state(), RunState::Completed, "{f:?}");
    let retry = events
        .iter()
        .find_map(|e| match &e.event {
            Some(Event::StepRetrying(r)) => Some(r.clone()),
            _ => None,
        })
        .expect("the cancelled attempt is retried");
    assert_eq!(retry.reason, "AGENT_UNAVAILABLE", "{retry:?}");
    assert!(retry.message.contains("shut down"), "{retry:?}");
    let p = &f.report.as_ref().unwrap().provenance[0];
    assert_eq!(
        p.endpoint,
        other.to_string(),
        "finished on the other replica"
    );
    assert_eq!(p.earlier_endpoints, vec![busy]);
    assert_eq!(p.attempts, 2);
}
