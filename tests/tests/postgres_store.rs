//! The shared run store on a real PostgreSQL server: migrations, one run per
//! idempotency key across replicas, runs followed and canceled from a
//! replica that does not drive them, and fencing: a replica whose lease
//! lapsed has its next write refused and steps down while another takes
//! its run over.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentmesh_e2e::postgres::Postgres;
use agentmesh_orchestrator::store::postgres::{PgOptions, PostgresStore, schema};
use agentmesh_orchestrator::store::{Retention, RunRecord, RunStore};
use agentmesh_proto::prost::Message;
use agentmesh_proto::v1::{
    RunEvent, RunFinished, RunPlanned, RunResumed, RunState, StepStarted, run_event::Event,
};

fn options(url: &str, instance: &str, lease_ms: u64) -> PgOptions {
    PgOptions {
        url: url.to_string(),
        ca_file: None,
        instance: Arc::from(instance),
        lease: Duration::from_millis(lease_ms),
        poll: Duration::from_millis(200),
        pool_size: 4,
        retention: Retention::runs(100),
        stored_bytes: 1 << 30,
    }
}

async fn open(url: &str, instance: &str, lease_ms: u64) -> Arc<PostgresStore> {
    PostgresStore::open(options(url, instance, lease_ms))
        .await
        .unwrap()
}

/// Waits (bounded) until `f` holds.
async fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A new run on `store` holding its plan, stored (published).
async fn planned_run(store: &PostgresStore, key: &str) -> Arc<RunRecord> {
    let run = store
        .insert(Arc::new(store.new_run(
            "goal".into(),
            key.into(),
            Arc::from("alice"),
        )))
        .await
        .unwrap();
    run.append(Event::Planned(RunPlanned {
        goal: "goal".into(),
        ..RunPlanned::default()
    }));
    eventually("the plan is stored", || run.log.visible_len() == 1).await;
    run
}

fn completed() -> RunFinished {
    RunFinished {
        state: RunState::Completed.into(),
        ..RunFinished::default()
    }
}

#[tokio::test]
async fn migrations_run_on_an_empty_database_and_upgrade_the_previous_layout() {
    let pg = Postgres::start().await;

    // An empty database gets the current layout.
    let fresh = pg.database("fresh").await;
    let store = open(&fresh, "a", 5_000).await;
    store.close().await;
    let version: i32 = pg
        .client("fresh")
        .await
        .unwrap()
        .query_one("SELECT max(version) FROM agentmesh_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, schema::CURRENT);

    // A database at layout 1, holding a finished run as a version-1
    // orchestrator wrote it, is upgraded and its run still read.
    let old = pg.database("old").await;
    let mut client = pg.client("old").await.unwrap();
    schema::runner(1)
        .unwrap()
        .run_async(&mut client)
        .await
        .unwrap();
    let events: Vec<RunEvent> = vec![
        RunEvent {
            run_id: "r1".into(),
            seq: 1,
            time: None,
            event: Some(Event::Planned(RunPlanned::default())),
        },
        RunEvent {
            run_id: "r1".into(),
            seq: 2,
            time: None,
            event: Some(Event::Finished(completed())),
        },
    ];
    client
        .batch_execute(
            "INSERT INTO agentmesh_runs (id, goal, idempotency_key, owner, fingerprint, created,
                 state, finished, last_seq, epoch, instance)
             VALUES ('r1', 'old goal', 'k1', 'alice', '', now(), 3, now(), 2, 1, 'old')",
        )
        .await
        .unwrap();
    for ev in &events {
        client
            .execute(
                "INSERT INTO agentmesh_events (run, seq, epoch, event)
                 SELECT row, $1, 1, $2 FROM agentmesh_runs WHERE id = 'r1'",
                &[&i64::try_from(ev.seq).unwrap(), &ev.encode_to_vec()],
            )
            .await
            .unwrap();
    }
    let store = open(&old, "a", 5_000).await;
    let run = store.get("r1").await.unwrap().expect("the old run is read");
    assert_eq!(run.state(), RunState::Completed);
    assert_eq!(run.log.len(), 2);
    assert_eq!(
        store.by_key("k1").await.unwrap().map(|r| r.id.clone()),
        Some("r1".into())
    );
    let listed = store.list(10, Some("alice"), &[]).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state(), RunState::Completed);
    let version: i32 = client
        .query_one("SELECT max(version) FROM agentmesh_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, schema::CURRENT, "upgraded to the current layout");
    store.close().await;

    // A layout newer than this orchestrator knows stops it.
    client
        .batch_execute(
            "INSERT INTO agentmesh_migrations (version, name, applied_on, checksum)
             VALUES (99, 'from_the_future', '2030-01-01T00:00:00Z', '1')",
        )
        .await
        .unwrap();
    let refused = PostgresStore::open(options(&old, "a", 5_000)).await;
    assert!(refused.is_err(), "a newer layout is refused");
}

#[tokio::test]
async fn replicas_make_one_run_per_key_follow_each_others_runs_and_cancel_them() {
    let pg = Postgres::start().await;
    let url = pg.database("shared").await;
    let a = open(&url, "a", 5_000).await;
    let b = open(&url, "b", 5_000).await;

    // The same key on both replicas at once: one run.
    let (ra, rb) = tokio::join!(
        a.insert(Arc::new(a.new_run(
            "g".into(),
            "same".into(),
            Arc::from("")
        ))),
        b.insert(Arc::new(b.new_run(
            "g".into(),
            "same".into(),
            Arc::from("")
        ))),
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.id, rb.id, "one run for one key");
    let count: i64 = pg
        .client("shared")
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM agentmesh_runs WHERE idempotency_key = 'same'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1);

    // A run driven by A, followed on B as A commits its events.
    let run = planned_run(&a, "followed").await;
    let followed = b.get(&run.id).await.unwrap().expect("B reads A's run");
    assert!(!Arc::ptr_eq(&run, &followed));
    assert_eq!(followed.state(), RunState::Running);
    let sent = Instant::now();
    run.append(Event::StepStarted(StepStarted {
        step_id: "s".into(),
        ..StepStarted::default()
    }));
    eventually("B sees the step start", || followed.log.len() == 2).await;
    let lag = sent.elapsed();
    assert!(lag < Duration::from_secs(2), "followed within {lag:?}");
    run.finish(completed());
    eventually("B sees the run finish", || {
        followed.state() == RunState::Completed
    })
    .await;
    assert_eq!(followed.log.len(), 3);
    let again = b.get(&run.id).await.unwrap().unwrap();
    assert_eq!(again.state(), RunState::Completed);

    // A cancel asked on B stops the run on A.
    let victim = planned_run(&a, "victim").await;
    let seen_on_b = b.get(&victim.id).await.unwrap().unwrap();
    assert!(b.cancel_elsewhere(&seen_on_b, "enough").await.unwrap());
    eventually("A stops the run", || victim.stop.is_cancelled()).await;
    let cause = victim.stop_cause().unwrap();
    assert_eq!(cause.reason.name(), "CANCELED");
    assert!(cause.message.contains("enough"), "{}", cause.message);
    assert!(
        !a.cancel_elsewhere(&victim, "x").await.unwrap(),
        "the driving replica cancels its runs itself"
    );

    // Either replica lists every run.
    let on_b = b.list(10, None, &[]).await.unwrap();
    assert_eq!(on_b.len(), 3);
    assert_eq!(on_b[0].run_id, victim.id, "newest first");
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn retention_deletes_the_oldest_finished_runs_by_count_and_by_bytes() {
    let pg = Postgres::start().await;
    let url = pg.database("retention").await;
    // Keep 3 runs.
    let mut opts = options(&url, "a", 400);
    opts.retention = Retention::runs(3);
    let store = PostgresStore::open(opts.clone()).await.unwrap();
    let mut done = Vec::new();
    for i in 0..5 {
        let run = planned_run(&store, &format!("k{i}")).await;
        run.finish(completed());
        eventually("stored", || run.log.visible_len() == 2).await;
        // As the engine tells the store once a run's final event is out.
        store.finished(&run);
        done.push(run);
    }
    let running = planned_run(&store, "running").await;
    let gone = |id: String| {
        let store = Arc::clone(&store);
        async move { store.evicted(&id).await.unwrap() }
    };
    // Retention runs with every lease pass (every 100 ms here).
    let deadline = Instant::now() + Duration::from_secs(10);
    while gone(done[2].id.clone()).await.is_none() {
        assert!(Instant::now() < deadline, "nothing retired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for old in &done[..3] {
        let evicted = gone(old.id.clone()).await.expect("retired");
        assert_eq!(evicted.limit, "store.retained_runs");
        assert_eq!(&*evicted.owner, "alice");
    }
    assert!(gone(done[3].id.clone()).await.is_none());
    assert!(
        store.get(&running.id).await.unwrap().is_some(),
        "a running run is never retired"
    );
    let listed: Vec<String> = store
        .list(10, None, &[])
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(
        listed,
        [running.id.clone(), done[4].id.clone(), done[3].id.clone()]
    );
    store.close().await;

    // By bytes: room for the running run and one finished run (the
    // running run's plan is smaller than a finished run's events).
    let one: i64 = pg
        .client("retention")
        .await
        .unwrap()
        .query_one(
            "SELECT bytes FROM agentmesh_runs WHERE id = $1",
            &[&done[4].id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(one > 0, "a run's stored size is kept");
    let mut opts = options(&url, "b", 400);
    opts.stored_bytes = u64::try_from(one * 2).unwrap();
    let store = PostgresStore::open(opts).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let e = store.evicted(&done[3].id).await.unwrap();
        if let Some(e) = e {
            assert_eq!(e.limit, "store.retained_stored_bytes");
            break;
        }
        assert!(Instant::now() < deadline, "nothing retired by bytes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        store.get(&done[4].id).await.unwrap().is_some(),
        "the newest stays"
    );
    store.close().await;
}

#[tokio::test]
async fn a_replica_whose_lease_lapsed_has_its_writes_refused_and_steps_down() {
    let pg = Postgres::start().await;
    let url = pg.database("fenced").await;
    // A renews rarely, so its next write (not its renewal) finds the lease
    // gone; B looks for runs to take over every 100 ms.
    let a = open(&url, "a", 60_000).await;
    let b = open(&url, "b", 400).await;
    let mut adopted = b.unfinished().unwrap();
    let run = planned_run(&a, "k").await;
    let old_epoch = a.epoch();
    let db = pg.client("fenced").await.unwrap();
    // A stalls past its lease (as if paused): its lease is over.
    db.execute(
        "UPDATE agentmesh_leases SET expires = clock_timestamp() - interval '1 second'
         WHERE epoch = $1",
        &[&old_epoch],
    )
    .await
    .unwrap();
    let taken = tokio::time::timeout(Duration::from_secs(10), adopted.recv())
        .await
        .expect("B takes the run over")
        .unwrap();
    assert_eq!(taken.id, run.id);
    assert_eq!(taken.log.visible_len(), 1, "with what A had stored");

    // A wakes up and writes: refused; A gives the run up.
    run.append(Event::StepStarted(StepStarted {
        step_id: "late".into(),
        ..StepStarted::default()
    }));
    eventually("A steps down from the run", || run.is_suspended()).await;
    assert_eq!(
        run.log.visible_len(),
        1,
        "A's late event is never published"
    );
    eventually("A takes a new lease", || a.epoch() > old_epoch).await;
    assert!(
        a.get(&run.id)
            .await
            .unwrap()
            .is_some_and(|r| !Arc::ptr_eq(&r, &run)),
        "A now reads the run from the database"
    );

    // B drives it on; only B's events follow A's.
    taken.append(Event::Resumed(RunResumed {
        orchestrator: "b".into(),
        ..RunResumed::default()
    }));
    taken.finish(completed());
    eventually("B's events are stored", || {
        taken.log.is_closed() && taken.log.visible_len() == 3
    })
    .await;
    let rows = db
        .query(
            "SELECT e.seq, e.epoch FROM agentmesh_events e JOIN agentmesh_runs r ON r.row = e.run
             WHERE r.id = $1 ORDER BY e.seq",
            &[&run.id],
        )
        .await
        .unwrap();
    let written: Vec<(i64, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        written,
        [(1, old_epoch), (2, b.epoch()), (3, b.epoch())],
        "nothing of A's after B took over"
    );
    let stored = db
        .query_one(
            "SELECT r.state, r.finished IS NOT NULL FROM agentmesh_runs r WHERE r.id = $1",
            &[&run.id],
        )
        .await
        .unwrap();
    assert_eq!(
        (stored.get::<_, i32>(0), stored.get::<_, bool>(1)),
        (RunState::Completed as i32, true)
    );
    a.close().await;
    b.close().await;
}
