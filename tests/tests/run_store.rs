//! The durable run store (`store.path`): runs outlive the orchestrator
//! process. The orchestrator is the real binary, stopped with SIGTERM or
//! killed with SIGKILL and started again on the same file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use agentmesh_e2e::mesh::*;
use agentmesh_e2e::process::terminate as stop;
use agentmesh_e2e::start_orchestrator_on as orchestrator_on;
use agentmesh_e2e::{start_agents, temp_dir};
use agentmesh_proto::v1::{
    GetRunRequest, ListRunsRequest, RunEvent, RunRequest, RunState, SubmitRequest, run_event::Event,
};
use serde_json::json;
use tokio_stream::StreamExt;

const GOAL: &str =
    "Generate a Q2 sales performance report with visualizations and an executive summary";

fn finished(ev: &RunEvent) -> &agentmesh_proto::v1::RunFinished {
    match &ev.event {
        Some(Event::Finished(f)) => f,
        other => panic!("not a final event: {other:?}"),
    }
}

#[tokio::test]
async fn a_finished_report_outlives_a_restart_of_the_orchestrator() {
    let tmp = temp_dir("store-restart");
    let dir = tmp.path();
    let store = dir.join("state/runs.db");
    let (_children, data, analytics, summary) = start_agents(dir).await;
    let agents = [data, analytics, summary];

    let (first, addr) = orchestrator_on(&store, &agents, dir).await;
    let mut client = orchestrator(addr).await;
    wait_serving_agents(&mut client, 3).await;
    let mut spec = goal(GOAL);
    spec.idempotency_key = "q2-report-1".into();
    let seen = run_all(&mut client, spec.clone()).await;
    let last = seen.last().unwrap();
    assert_eq!(finished(last).state(), RunState::Completed, "{last:?}");
    let run_id = last.run_id.clone();
    stop(first).await;

    // A new process on the same file answers as the first one did.
    let (_second, addr) = orchestrator_on(&store, &agents, dir).await;
    let mut client = orchestrator(addr).await;
    let got = client
        .get_run(GetRunRequest {
            run_id: run_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let summary = got.run.unwrap();
    assert_eq!(summary.state(), RunState::Completed);
    assert_eq!(summary.last_seq, last.seq);
    assert_eq!(summary.goal, GOAL);
    assert_eq!(
        got.finished.as_ref(),
        Some(finished(last)),
        "the same report"
    );
    let replayed = watch_to_end(&mut client, &run_id, 0).await;
    assert_eq!(replayed, seen, "every event, as the client saw it live");
    let tail = watch_to_end(&mut client, &run_id, last.seq - 2).await;
    assert_eq!(tail.as_slice(), &seen[seen.len() - 2..]);

    // The idempotency key still names the run: no second run is made.
    let again = client
        .submit(SubmitRequest { spec: Some(spec) })
        .await
        .unwrap()
        .into_inner()
        .run_id;
    assert_eq!(again, run_id);
    let listed = client
        .list_runs(ListRunsRequest {
            limit: 10,
            states: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .runs;
    assert_eq!(listed.len(), 1, "{listed:?}");
}

/// How the first orchestrator goes away mid-run.
#[derive(Clone, Copy)]
enum Stop {
    /// SIGKILL: nothing more is written.
    Kill,
    /// SIGTERM: after its (short) grace, the run is left to the next
    /// process instead of being canceled.
    Term,
}

#[tokio::test]
async fn a_run_cut_by_a_kill_is_resumed_by_the_next_process_without_a_gap() {
    resumed_after(Stop::Kill).await;
}

#[tokio::test]
async fn a_run_still_executing_at_a_graceful_stop_is_resumed_not_canceled() {
    resumed_after(Stop::Term).await;
}

async fn resumed_after(how: Stop) {
    let tmp = temp_dir("store-kill");
    let dir = tmp.path();
    let store = dir.join("runs.db");
    // One agent per step, so that each step's work can be counted.
    let (agents, addrs) = chain_agents(1).await;
    let seen = |i: usize, what: fn(&agentmesh_e2e::mesh::Seen) -> &std::sync::atomic::AtomicU32| {
        what(&agents[i].seen).load(std::sync::atomic::Ordering::SeqCst)
    };

    let (first, addr) = orchestrator_on(&store, &addrs, dir).await;
    let mut client = orchestrator(addr).await;
    wait_serving_agents(&mut client, 3).await;
    let plan = chain([json!({"value": 1}), json!({"sleep_ms": 1_500}), json!({})]);
    let mut stream = client
        .run(RunRequest {
            spec: Some(plan),
            stream: None,
        })
        .await
        .unwrap()
        .into_inner();
    // Read until the second step is running on its agent (the first is
    // done), then kill the process.
    let mut live = Vec::new();
    while let Some(ev) = stream.next().await {
        let ev = ev.unwrap();
        let second = matches!(&ev.event, Some(Event::StepStarted(s)) if s.step_id == "second");
        live.push(ev);
        if second {
            break;
        }
    }
    let run_id = live[0].run_id.clone();
    until_counted(&agents[1].seen.started, "the second agent starts its task").await;
    match how {
        // No drain, no final event written by this process.
        Stop::Kill => drop(first),
        Stop::Term => stop(first).await,
    }
    // Events already on the wire may still arrive; they count as seen.
    // Then the stream breaks with the process.
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(Ok(ev)) = stream.next().await {
            assert!(
                !matches!(ev.event, Some(Event::Finished(_))),
                "a killed process sends no final event: {ev:?}"
            );
            live.push(ev);
        }
    })
    .await;
    assert!(ended.is_ok(), "the live stream breaks with the process");
    let last_seen = live.last().unwrap().seq;

    // The next process on the same file takes the run up again.
    let (_second, addr) = orchestrator_on(&store, &addrs, dir).await;
    let mut client = orchestrator(addr).await;
    let rest = watch_to_end(&mut client, &run_id, last_seen).await;
    let seqs: Vec<u64> = rest.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = (last_seen + 1..=last_seen + rest.len() as u64).collect();
    assert_eq!(
        seqs, expected,
        "continues after the last event seen, no gap"
    );
    let resumed = rest
        .iter()
        .find_map(|e| match &e.event {
            Some(Event::Resumed(r)) => Some(r.clone()),
            _ => None,
        })
        .expect("the run says it was resumed");
    assert_eq!(resumed.completed_steps, ["first"]);
    assert_eq!(resumed.resumed_steps, ["second"]);
    assert!(!resumed.orchestrator.is_empty());
    let end = finished(rest.last().unwrap());
    assert_eq!(end.state(), RunState::Completed, "{end:?}");

    // The first step's work was not done again; the second's completed
    // once, its attempts numbered on under the same idempotency key; the
    // third ran once.
    assert_eq!((seen(0, |s| &s.started), seen(0, |s| &s.completed)), (1, 1));
    assert_eq!(seen(1, |s| &s.completed), 1);
    assert_eq!((seen(2, |s| &s.started), seen(2, |s| &s.completed)), (1, 1));
    let all = watch_to_end(&mut client, &run_id, 0).await;
    assert_eq!(
        &all[..live.len()],
        live.as_slice(),
        "what the client saw is kept"
    );
    let second_tasks: Vec<&str> = all
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::StepStarted(s)) if s.step_id == "second" => Some(s.task_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        second_tasks,
        [
            format!("{run_id}/second/1").as_str(),
            format!("{run_id}/second/2").as_str()
        ]
    );
    let report = end.report.as_ref().unwrap();
    let by_step: std::collections::BTreeMap<&str, u32> = report
        .provenance
        .iter()
        .map(|p| (p.step_id.as_str(), p.attempts))
        .collect();
    assert_eq!(
        by_step,
        [("first", 1), ("second", 2), ("third", 1)]
            .into_iter()
            .collect()
    );
    let got = client
        .get_run(GetRunRequest { run_id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.run.unwrap().state(), RunState::Completed);
}
