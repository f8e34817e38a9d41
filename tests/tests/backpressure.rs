//! A burst of runs against one busy replica: steps wait their turn in the
//! skill's queue instead of failing, the wait shows in the runs' events and
//! in ListAgents, and past the admission limit a run is refused up front
//! with RESOURCE_EXHAUSTED and when to try again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use agentmesh_e2e::mesh::*;
use agentmesh_proto::error::{ErrorReason, MeshError};
use agentmesh_proto::v1::{ListAgentsRequest, RunState, SubmitRequest, run_event::Event};
use agentmesh_runtime::ServerConfig;
use serde_json::json;

/// One replica that runs two tasks at once, each taking `sleep_ms`.
async fn busy_agent() -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    spawn_agent_at(
        TestAgent::new("work", &["work"]),
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig {
            max_concurrent_tasks: 2,
            ..ServerConfig::default()
        },
    )
    .await
}

#[tokio::test]
async fn a_burst_of_200_runs_queues_for_one_busy_replica_and_every_run_completes() {
    let (agent, _stop) = busy_agent().await;
    let orch = spawn_orchestrator(test_config(&[agent])).await;
    let mut client = orchestrator(orch).await;
    wait_serving_agents(&mut client, 1).await;

    // The queue is watched while the burst is sent and drains.
    let watching = {
        let mut client = client.clone();
        tokio::spawn(async move {
            let mut most = 0;
            for _ in 0..500 {
                let listed = client
                    .list_agents(ListAgentsRequest {})
                    .await
                    .unwrap()
                    .into_inner();
                let waiting: u32 = listed
                    .queues
                    .iter()
                    .filter(|q| q.skill == "work")
                    .map(|q| q.waiting)
                    .sum();
                most = most.max(waiting);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            most
        })
    };
    // 200 runs submitted by 32 clients at once.
    let mut submitters = Vec::new();
    for c in 0..32 {
        let mut client = client.clone();
        submitters.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in (c..200).step_by(32) {
                let spec = spec(vec![step("s", "work", json!({"sleep_ms": 20}))]);
                ids.push(submit(&mut client, spec).await);
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for s in submitters {
        ids.extend(s.await.unwrap());
    }
    assert_eq!(ids.len(), 200);
    let mut queued_runs = 0;
    for id in &ids {
        let events = watch_to_end(&mut client, id, 0).await;
        let f = finished(&events);
        assert_eq!(f.state(), RunState::Completed, "run {id}: {f:?}");
        let queued: Vec<_> = events
            .iter()
            .filter_map(|e| match &e.event {
                Some(Event::StepQueued(q)) => Some(q.clone()),
                _ => None,
            })
            .collect();
        if let Some(q) = queued.first() {
            queued_runs += 1;
            assert_eq!((q.skill.as_str(), q.attempt), ("work", 1));
            assert!(q.waiting >= 1);
        }
        assert!(
            !events
                .iter()
                .any(|e| matches!(e.event, Some(Event::StepRetrying(_)))),
            "run {id}: nobody retried for a busy replica"
        );
    }
    assert!(
        queued_runs > 100,
        "most runs waited their turn: {queued_runs}"
    );
    let most = watching.await.unwrap();
    assert!(most > 0, "ListAgents showed the queue while it was there");
    let after = client
        .list_agents(ListAgentsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        after.queues.is_empty(),
        "the queue drained: {:?}",
        after.queues
    );
}

#[tokio::test]
async fn past_the_admission_limit_runs_are_refused_up_front_with_when_to_retry() {
    let (agent, _stop) = busy_agent().await;
    let mut cfg = test_config(&[agent]);
    cfg.execution.max_active_runs = 10;
    cfg.execution.admission_retry_after = Duration::from_millis(700);
    let orch = spawn_orchestrator(cfg).await;
    let mut client = orchestrator(orch).await;
    wait_serving_agents(&mut client, 1).await;

    let mut accepted = Vec::new();
    let mut refused = 0;
    for _ in 0..30 {
        let spec = spec(vec![step("s", "work", json!({"sleep_ms": 300}))]);
        match client.submit(SubmitRequest { spec: Some(spec) }).await {
            Ok(r) => accepted.push(r.into_inner().run_id),
            Err(status) => {
                let err = MeshError::from_status(&status);
                assert_eq!(err.reason, ErrorReason::ResourceExhausted, "{err:?}");
                assert_eq!(err.retry_after, Some(Duration::from_millis(700)));
                assert_eq!(
                    err.metadata.get("limit").map(String::as_str),
                    Some("execution.max_active_runs")
                );
                refused += 1;
            }
        }
    }
    assert_eq!(accepted.len(), 10, "the limit admits exactly its number");
    assert_eq!(refused, 20);
    for id in &accepted {
        let events = watch_to_end(&mut client, id, 0).await;
        assert_eq!(finished(&events).state(), RunState::Completed);
    }
}
