//! Submit's idempotency key: a repeat gets the run the first request made,
//! before planning, draining or admission could refuse it; the same key
//! with a different request is refused with ALREADY_EXISTS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use agentmesh_e2e::mesh::*;
use agentmesh_proto::error::{ErrorReason, MeshError};
use agentmesh_proto::v1::{RunEvent, RunSpec, RunState, SubmitRequest, run_event::Event};
use agentmesh_runtime::ServerConfig;
use serde_json::json;

fn keyed(key: &str, sleep_ms: u64) -> RunSpec {
    let mut s = spec(vec![step("s", "work", json!({"sleep_ms": sleep_ms}))]);
    s.idempotency_key = key.into();
    s
}

fn fingerprint(events: &[RunEvent]) -> String {
    match events.first().and_then(|e| e.event.as_ref()) {
        Some(Event::Planned(p)) => p.request_fingerprint.clone(),
        other => panic!("first event: {other:?}"),
    }
}

#[tokio::test]
async fn a_repeat_gets_the_first_run_even_when_a_new_run_would_be_refused() {
    let (agent, _stop) = spawn_agent_at(
        TestAgent::new("work", &["work"]),
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::default(),
    )
    .await;
    let mut cfg = test_config(&[agent]);
    cfg.execution.max_active_runs = 1;
    let orch = spawn_orchestrator(cfg).await;
    let mut client = orchestrator(orch).await;
    wait_serving_agents(&mut client, 1).await;

    let first = submit(&mut client, keyed("order-42", 500)).await;
    // The orchestrator is full: a new run is refused...
    let full = client
        .submit(SubmitRequest {
            spec: Some(keyed("other", 10)),
        })
        .await
        .unwrap_err();
    assert_eq!(
        MeshError::from_status(&full).reason,
        ErrorReason::ResourceExhausted
    );
    // ...but the repeat is answered with the first run.
    let again = submit(&mut client, keyed("order-42", 500)).await;
    assert_eq!(again, first);

    // The same key for another request is refused, naming the run.
    let clash = client
        .submit(SubmitRequest {
            spec: Some(keyed("order-42", 10)),
        })
        .await
        .unwrap_err();
    assert_eq!(clash.code(), tonic::Code::AlreadyExists, "{clash:?}");
    let err = MeshError::from_status(&clash);
    assert_eq!(err.reason, ErrorReason::InvalidInput);
    assert_eq!(err.metadata.get("run_id"), Some(&first));
    assert_eq!(
        err.metadata.get("field").map(String::as_str),
        Some("spec.idempotency_key")
    );

    let events = watch_to_end(&mut client, &first, 0).await;
    assert_eq!(finished(&events).state(), RunState::Completed);
    assert_eq!(fingerprint(&events).len(), 64, "the plan event carries it");
    // After it finished, a repeat still gets it.
    assert_eq!(submit(&mut client, keyed("order-42", 500)).await, first);
}
