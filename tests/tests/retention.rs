//! Retention by bytes: an orchestrator with a tiny `store.retained_bytes`
//! keeps the newest finished runs that fit, drops the oldest, never a
//! running one, and says of a dropped run that it was evicted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use agentmesh_e2e::mesh::*;
use agentmesh_proto::error::{ErrorReason, MeshError};
use agentmesh_proto::v1::{
    CancelRunRequest, GetRunRequest, ListRunsRequest, RunState, WatchRunRequest,
};
use agentmesh_runtime::ServerConfig;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oldest_finished_runs_go_beyond_the_byte_limit_and_say_so() {
    let (agent, _stop) = spawn_agent_at(
        TestAgent::new("work", &["work"]),
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::default(),
    )
    .await;
    let mut cfg = test_config(&[agent]);
    // Room for a few dozen of the runs below (each about 1.5 KB encoded).
    cfg.store.retained_bytes = 40_000;
    let orch = spawn_orchestrator(cfg).await;
    let mut client = orchestrator(orch).await;
    wait_serving_agents(&mut client, 1).await;

    // The oldest run of all is still running when the others finish.
    let long = submit(
        &mut client,
        spec(vec![step("slow", "work", json!({"sleep_ms": 120_000}))]),
    )
    .await;
    let pad = "x".repeat(200);
    let mut ids = Vec::new();
    for i in 0..300 {
        let events = run_all(
            &mut client,
            spec(vec![step(
                "s",
                "work",
                json!({"value": format!("{i} {pad}")}),
            )]),
        )
        .await;
        assert_eq!(finished(&events).state(), RunState::Completed);
        ids.push(events[0].run_id.clone());
    }

    let getter = client.clone();
    let get = |id: &str| {
        let mut client = getter.clone();
        let id = id.to_string();
        async move { client.get_run(GetRunRequest { run_id: id }).await }
    };
    // The running run is kept, though it is the oldest.
    let running = get(&long).await.unwrap().into_inner();
    assert_eq!(running.run.unwrap().state(), RunState::Running);

    // The newest finished runs are kept, the oldest are gone: a contiguous
    // newest suffix, well short of all 300.
    let listed: Vec<String> = client
        .list_runs(ListRunsRequest {
            limit: 1_000,
            states: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .runs
        .into_iter()
        .map(|r| r.run_id)
        .filter(|id| *id != long)
        .collect();
    let kept = listed.len();
    assert!((5..100).contains(&kept), "{kept} runs kept");
    let newest: Vec<String> = ids.iter().rev().take(kept).cloned().collect();
    assert_eq!(listed, newest, "the newest runs, newest first");

    // A dropped run answers NOT_FOUND with a reason of its own and the
    // limit; an id never seen answers plain NOT_FOUND.
    for id in [&ids[0], &ids[300 - kept - 1]] {
        let status = get(id).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound);
        let e = MeshError::from_status(&status);
        assert_eq!(e.reason, ErrorReason::RunEvicted, "{status:?}");
        assert_eq!(
            e.metadata.get("limit").map(String::as_str),
            Some("store.retained_bytes")
        );
        let watched = client
            .watch_run(WatchRunRequest {
                run_id: id.clone(),
                after_seq: 0,
                stream: None,
            })
            .await
            .unwrap_err();
        assert_eq!(
            MeshError::from_status(&watched).reason,
            ErrorReason::RunEvicted
        );
    }
    let unknown = get("no-such-run").await.unwrap_err();
    assert_eq!(
        MeshError::from_status(&unknown).reason,
        ErrorReason::NotFound
    );
    assert!(get(&ids[299]).await.is_ok());

    client
        .cancel_run(CancelRunRequest {
            run_id: long,
            reason: "done".into(),
        })
        .await
        .unwrap();
}
