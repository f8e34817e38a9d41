//! A run's token budget (`RunParameters.token_budget`): tokens agents
//! report in their progress events count against it, and the step that
//! spends it fails with TOKEN_BUDGET_EXCEEDED, once, not retried.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use agentmesh_e2e::mesh::*;
use agentmesh_proto::v1::{RunParameters, RunSpec, RunState, run_event};
use serde_json::json;

fn with_budget(budget: u32) -> RunSpec {
    let a = step("a", "work", json!({"tokens": 400, "sleep_ms": 50}));
    let mut b = step("b", "work", json!({"tokens": 400, "sleep_ms": 50}));
    b.depends_on = vec!["a".into()];
    RunSpec {
        parameters: Some(RunParameters {
            token_budget: Some(budget),
            ..RunParameters::default()
        }),
        ..spec(vec![a, b])
    }
}

#[tokio::test]
async fn the_step_that_spends_the_budget_fails_once_and_a_budget_that_holds_lets_it_run() {
    let agent = TestAgent::new("work", &["work"]);
    let seen = std::sync::Arc::clone(&agent.seen);
    let addr = agentmesh_e2e::spawn_agent(agent).await;
    let mut client = orchestrator(spawn_orchestrator(test_config(&[addr])).await).await;
    wait_serving_agents(&mut client, 1).await;

    let events = run_all(&mut client, with_budget(1_000)).await;
    assert_eq!(finished(&events).state(), RunState::Completed);

    let events = run_all(&mut client, with_budget(600)).await;
    let f = finished(&events);
    assert_eq!(f.state(), RunState::Failed, "{f:?}");
    let failed: Vec<_> = kinds(&events)
        .into_iter()
        .filter_map(|e| match e {
            run_event::Event::StepFailed(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].step_id, "b");
    assert_eq!(failed[0].reason, "TOKEN_BUDGET_EXCEEDED");
    assert_eq!(failed[0].attempts, 1, "not retried");
    assert!(
        failed[0].message.contains("800 tokens used"),
        "{}",
        failed[0].message
    );
    // The task was stopped, not left running.
    assert!(seen.cancelled.load(std::sync::atomic::Ordering::SeqCst) >= 1);
}
