//! Several orchestrator replicas on one PostgreSQL database (`store.url`),
//! as real processes: runs survive a replica killed and restarted again
//! and again, every run completes exactly once, and a replica frozen past
//! its lease (SIGSTOP) finds its runs taken over and its late writes
//! refused when it wakes (SIGCONT).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use agentmesh_e2e::mesh::*;
use agentmesh_e2e::postgres::Postgres;
use agentmesh_e2e::replica::Replica;
use agentmesh_e2e::temp_dir;
use agentmesh_proto::v1::orchestrator_service_client::OrchestratorServiceClient;
use agentmesh_proto::v1::{
    CancelRunRequest, GetRunRequest, ListRunsRequest, RunEvent, RunSpec, RunState, SubmitRequest,
    WatchRunRequest, run_event::Event,
};
use serde_json::json;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

/// Store lease of the replicas in these tests, ms.
const LEASE_MS: u64 = 1_500;

/// The three-step plan of these tests, its second step working
/// `second_ms`.
fn plan(i: u64, second_ms: u64) -> RunSpec {
    chain([
        json!({"value": i, "sleep_ms": 100}),
        json!({"sleep_ms": second_ms}),
        json!({"sleep_ms": 50}),
    ])
}

/// Replicas A and B on database `db` of their own PostgreSQL server, with
/// two replicas of each agent of the chain, all serving.
struct Pair {
    pg: Postgres,
    agents: Vec<TestAgent>,
    a: Replica,
    b: Replica,
    _tmp: tempfile::TempDir,
}

impl Pair {
    async fn start(db: &str) -> Self {
        let tmp = temp_dir(&format!("replicas-{db}"));
        let pg = Postgres::start().await;
        let url = pg.database(db).await;
        let (agents, agent_addrs) = chain_agents(2).await;
        let a = Replica::start("a", &url, &agent_addrs, tmp.path(), LEASE_MS).await;
        let b = Replica::start("b", &url, &agent_addrs, tmp.path(), LEASE_MS).await;
        for r in [&a, &b] {
            wait_serving_agents(&mut orchestrator(r.addr).await, 6).await;
        }
        Self {
            pg,
            agents,
            a,
            b,
            _tmp: tmp,
        }
    }
}

/// Watches run `id` to its final event on `addrs` (in turn when a stream
/// breaks), going on from the last event seen; returns every event.
async fn watch_all(addrs: Vec<SocketAddr>, id: String) -> Vec<RunEvent> {
    let mut events: Vec<RunEvent> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    for addr in addrs.iter().cycle() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "run {id} did not finish; saw {events:?}"
        );
        let Ok(channel) = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut c = OrchestratorServiceClient::new(channel).max_decoding_message_size(64 << 20);
        let after_seq = events.last().map_or(0, |e| e.seq);
        let Ok(stream) = c
            .watch_run(WatchRunRequest {
                run_id: id.clone(),
                after_seq,
                stream: None,
            })
            .await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut stream = stream.into_inner();
        while let Some(Ok(ev)) = stream.next().await {
            let done = matches!(ev.event, Some(Event::Finished(_)));
            events.push(ev);
            if done {
                return events;
            }
        }
    }
    unreachable!()
}

/// Submits `spec` under `key`, starting at replica `first` and trying the
/// next ones while a replica is down: the key makes it one run.
async fn submit_anywhere(addrs: &[SocketAddr], first: usize, key: String, spec: RunSpec) -> String {
    let mut spec = spec;
    spec.idempotency_key = key;
    for attempt in 0..60 {
        let addr = addrs[(first + attempt) % addrs.len()];
        if let Ok(channel) = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            && let Ok(resp) = OrchestratorServiceClient::new(channel)
                .submit(SubmitRequest {
                    spec: Some(spec.clone()),
                })
                .await
        {
            return resp.into_inner().run_id;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no replica accepted {}", spec.idempotency_key);
}

fn finished(events: &[RunEvent]) -> &agentmesh_proto::v1::RunFinished {
    match events.last().and_then(|e| e.event.as_ref()) {
        Some(Event::Finished(f)) => f,
        other => panic!("no final event: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_complete_exactly_once_while_a_replica_is_killed_and_restarted() {
    const RUNS: u64 = 200;
    let tmp = temp_dir("replicas-soak");
    let dir = tmp.path();
    let pg = Postgres::start().await;
    let url = pg.database("soak").await;
    let (agents, agent_addrs) = chain_agents(2).await;
    let mut replicas = Vec::new();
    for name in ["o0", "o1", "o2"] {
        replicas.push(Replica::start(name, &url, &agent_addrs, dir, LEASE_MS).await);
    }
    for r in &replicas {
        wait_serving_agents(&mut orchestrator(r.addr).await, 6).await;
    }
    let addrs: Vec<SocketAddr> = replicas.iter().map(|r| r.addr).collect();
    // Clients watch on the replicas that stay up.
    let survivors = vec![addrs[1], addrs[2]];

    // o0 is killed every couple of seconds and started again while runs
    // are submitted across all three.
    let killer_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut o0 = replicas.remove(0);
    let killer = {
        let done = Arc::clone(&killer_done);
        tokio::spawn(async move {
            let mut kills = 0;
            while !done.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(1_800)).await;
                o0.kill();
                kills += 1;
                tokio::time::sleep(Duration::from_millis(700)).await;
                o0.restart().await;
            }
            (kills, o0)
        })
    };
    let mut watchers = Vec::new();
    for i in 0..RUNS {
        let id = submit_anywhere(&addrs, (i % 3) as usize, format!("soak-{i}"), plan(i, 300)).await;
        let on = if i % 2 == 0 {
            survivors.clone()
        } else {
            vec![survivors[1], survivors[0]]
        };
        watchers.push((i, tokio::spawn(watch_all(on, id))));
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let mut resumed = 0;
    let mut ids = std::collections::BTreeSet::new();
    for (i, w) in watchers {
        let events = w.await.unwrap();
        let id = events[0].run_id.clone();
        assert!(ids.insert(id.clone()), "run {i} is its own run");
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        let expected: Vec<u64> = (1..=events.len() as u64).collect();
        assert_eq!(seqs, expected, "run {i} ({id}): the complete log, no gap");
        let end = finished(&events);
        assert_eq!(end.state(), RunState::Completed, "run {i} ({id}): {end:?}");
        let steps: Vec<&str> = end
            .report
            .as_ref()
            .unwrap()
            .provenance
            .iter()
            .map(|p| p.step_id.as_str())
            .collect();
        assert_eq!(steps, CHAIN, "run {i}: the report says who did each step");
        resumed += events
            .iter()
            .filter(|e| matches!(e.event, Some(Event::Resumed(_))))
            .count();
    }
    killer_done.store(true, Ordering::SeqCst);
    let (kills, _o0) = killer.await.unwrap();
    assert!(kills >= 3, "o0 was killed {kills} times");
    assert!(resumed > 0, "some runs were taken over mid-way");

    // Every step's work was done once: each agent pair completed one task
    // per run (a step cut by a kill was cancelled on its agent and done
    // again; a finished one is replayed from the agent's result).
    for (skill, a) in CHAIN.iter().zip(&agents) {
        assert_eq!(
            a.seen.completed.load(Ordering::SeqCst),
            u32::try_from(RUNS).unwrap(),
            "{skill}: one completed task per run"
        );
    }
    let stored: i64 = pg
        .client("soak")
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM agentmesh_runs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        stored,
        i64::try_from(RUNS).unwrap(),
        "one run per key, none lost"
    );
    eprintln!("{RUNS} runs, o0 killed {kills} times, {resumed} runs resumed");
}

#[tokio::test]
async fn a_replica_frozen_past_its_lease_loses_its_runs_and_its_late_writes() {
    let pair = Pair::start("fence").await;
    let (pg, agents, a, b) = (&pair.pg, &pair.agents, &pair.a, &pair.b);
    let mut ca = orchestrator(a.addr).await;

    // A run on A whose second step works for 3 s.
    let id = submit(&mut ca, plan(7, 3_000)).await;
    until_counted(&agents[1].seen.started, "the second step starts").await;
    // A freezes for longer than its lease: B takes the run over.
    a.signal(nix::sys::signal::Signal::SIGSTOP);
    let events = watch_all(vec![b.addr], id.clone()).await;
    let resumed_at = events
        .iter()
        .position(|e| matches!(&e.event, Some(Event::Resumed(r)) if r.orchestrator == "b"))
        .expect("B resumed the run");
    assert_eq!(finished(&events).state(), RunState::Completed);
    // A wakes: its lease is gone, so it steps down.
    a.signal(nix::sys::signal::Signal::SIGCONT);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !a.logs().contains("stepping down") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "A did not step down:\n{}",
            a.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing A did after B took over reached the database: every event
    // after B's RunResumed was written under B's epoch.
    let db = pg.client("fence").await.unwrap();
    let rows = db
        .query(
            "SELECT e.seq, e.epoch, l.instance FROM agentmesh_events e
             JOIN agentmesh_runs r ON r.row = e.run
             JOIN agentmesh_leases l ON l.epoch = e.epoch
             WHERE r.id = $1 ORDER BY e.seq",
            &[&id],
        )
        .await
        .unwrap();
    let writers: BTreeMap<i64, String> = rows
        .iter()
        .map(|r| (r.get::<_, i64>(0), r.get::<_, String>(2)))
        .collect();
    assert_eq!(
        writers.len(),
        events.len(),
        "the stored log is the log clients saw"
    );
    for (seq, instance) in &writers {
        let by = if usize::try_from(*seq).unwrap() > resumed_at {
            "b"
        } else {
            "a"
        };
        assert_eq!(instance, by, "event {seq} was written by {instance}");
    }
    // A serves on with a new lease: a new run on A completes.
    let id2 = submit(&mut ca, plan(8, 10)).await;
    let events2 = watch_all(vec![a.addr], id2).await;
    assert_eq!(finished(&events2).state(), RunState::Completed);
    assert!(a.logs().contains("took a new lease"), "{}", a.logs());
}

#[tokio::test]
async fn any_replica_reads_lists_watches_and_cancels_a_run_another_drives() {
    let pair = Pair::start("any").await;
    let (agents, a, b) = (&pair.agents, &pair.a, &pair.b);
    let (mut ca, mut cb) = (orchestrator(a.addr).await, orchestrator(b.addr).await);

    // A run on A, its second step working for a minute.
    let id = submit(&mut ca, plan(1, 60_000)).await;
    until_counted(&agents[1].seen.started, "the second step starts").await;
    // B reads it, lists it and follows it.
    let got = cb
        .get_run(GetRunRequest { run_id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.run.unwrap().state(), RunState::Running);
    assert!(got.planned.is_some());
    let listed = cb
        .list_runs(ListRunsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .runs;
    assert_eq!(
        listed.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(),
        [id.as_str()]
    );
    let watching = tokio::spawn(watch_all(vec![b.addr], id.clone()));
    // CancelRun on B stops it on A.
    let state = cb
        .cancel_run(CancelRunRequest {
            run_id: id.clone(),
            reason: "asked on b".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .state();
    assert_eq!(state, RunState::Canceled);
    let events = watching.await.unwrap();
    let end = finished(&events);
    assert_eq!(end.state(), RunState::Canceled);
    assert!(end.message.contains("asked on b"), "{end:?}");
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
    // A's own view agrees (A publishes its commit a moment after B hears
    // of it), and the step's task was stopped on its agent.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let on_a = ca
            .get_run(GetRunRequest { run_id: id.clone() })
            .await
            .unwrap()
            .into_inner();
        let state = on_a.run.unwrap().state();
        if state == RunState::Canceled {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "A still says {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    until_counted(&agents[1].seen.cancelled, "the agent's task is canceled").await;
}
