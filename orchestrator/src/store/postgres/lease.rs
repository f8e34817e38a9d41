//! This replica's lease, and the runs it takes over: every quarter of
//! `store.lease_ms` the lease is renewed (or, after a step-down, taken
//! anew), runs whose epoch has no live lease are claimed and handed to the
//! engine to resume, and, when runs finished here since it last ran,
//! retention deletes the oldest finished runs.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tracing::{error, info, warn};

use super::{RUN_COLUMNS, Shared, StoredRun, events_after};
use crate::events;
use crate::store::RunRecord;

/// Most runs claimed in one pass (the next pass takes more).
const ADOPT_BATCH: i64 = 64;

/// Retired run ids remembered.
const RETIRED_REMEMBERED: i64 = 16_384;

/// A key for `pg_try_advisory_xact_lock`: one replica retires at a time.
const RETENTION_LOCK: i64 = 0x6167_656e_7472_6574;

/// Takes a new lease: a fresh epoch, live for `store.lease_ms`.
pub(super) async fn acquire(shared: &Shared) -> Result<i64, super::PgStoreError> {
    let client = shared.pool.get().await?;
    let ms = lease_ms(shared);
    let row = client
        .query_one(
            "INSERT INTO agentmesh_leases (epoch, instance, expires)
             VALUES (nextval('agentmesh_epochs'), $1,
                     clock_timestamp() + $2 * interval '1 millisecond')
             RETURNING epoch",
            &[&&*shared.opts.instance, &ms],
        )
        .await?;
    let epoch: i64 = row.try_get(0)?;
    shared.epoch.store(epoch, Ordering::Release);
    Ok(epoch)
}

fn lease_ms(shared: &Shared) -> f64 {
    shared.opts.lease.as_secs_f64() * 1000.0
}

/// Gives the lease up (at a graceful stop): the runs left unfinished move
/// to other replicas at their next pass.
pub(super) async fn release(shared: &Shared) {
    let epoch = shared.epoch.swap(0, Ordering::AcqRel);
    if epoch == 0 {
        return;
    }
    let released = async {
        let client = shared.pool.get().await.map_err(|e| e.to_string())?;
        client
            .execute(
                "UPDATE agentmesh_leases SET expires = clock_timestamp() WHERE epoch = $1",
                &[&epoch],
            )
            .await
            .map_err(|e| e.to_string())
    };
    match released.await {
        Ok(_) => info!(epoch, "run store: lease given up"),
        Err(e) => {
            warn!(epoch, error = %e, "run store: could not give the lease up; it expires on its own")
        }
    }
}

/// Keeps the lease, takes runs over and applies retention until the store
/// shuts down.
pub(super) async fn keep(shared: Arc<Shared>) {
    let every = shared.opts.lease / 4;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut renewed = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shared.stepped_down.notified() => {}
            () = shared.shutdown.cancelled() => return,
        }
        if shared.epoch.load(Ordering::Acquire) == 0 {
            match acquire(&shared).await {
                Ok(epoch) => {
                    renewed = Instant::now();
                    info!(epoch, "run store: took a new lease");
                }
                Err(e) => {
                    error!(error = %e, "run store: could not take a lease");
                    continue;
                }
            }
        } else {
            match renew(&shared).await {
                Ok(true) => renewed = Instant::now(),
                Ok(false) => {
                    shared.step_down("the lease had expired when it was renewed");
                    continue;
                }
                Err(e) => {
                    warn!(error = %e, "run store: could not renew the lease");
                    // Without a renewal, the lease is as good as gone once
                    // it would have lapsed: stop before another replica
                    // could take the runs over.
                    if renewed.elapsed() >= shared.opts.lease {
                        shared.step_down("the lease could not be renewed in time");
                    }
                    continue;
                }
            }
        }
        if let Err(e) = adopt(&shared).await {
            warn!(error = %e, "run store: looking for runs to take over failed");
        }
        if shared.retire_due.swap(false, Ordering::AcqRel)
            && let Err(e) = retire(&shared).await
        {
            shared.retire_due.store(true, Ordering::Release);
            warn!(error = %e, "run store: retention failed");
        }
    }
}

/// Extends the lease; false if it had already expired (then it is not
/// extended: another replica may hold its runs).
async fn renew(shared: &Shared) -> Result<bool, String> {
    let epoch = shared.epoch.load(Ordering::Acquire);
    let client = shared.pool.get().await.map_err(|e| e.to_string())?;
    let n = client
        .execute(
            "UPDATE agentmesh_leases SET expires = clock_timestamp() + $2 * interval '1 millisecond'
             WHERE epoch = $1 AND expires > clock_timestamp()",
            &[&epoch, &lease_ms(shared)],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(n == 1)
}

/// Claims unfinished runs whose epoch has no live lease, and hands them to
/// the engine to resume.
async fn adopt(shared: &Arc<Shared>) -> Result<(), String> {
    let epoch = shared.epoch.load(Ordering::Acquire);
    if epoch == 0 {
        return Ok(());
    }
    let mut client = shared.pool.get().await.map_err(|e| e.to_string())?;
    let tx = client.transaction().await.map_err(|e| e.to_string())?;
    let claimed = tx
        .query(
            &format!(
                "UPDATE agentmesh_runs SET epoch = $1, instance = $2
                 WHERE row IN (
                     SELECT r.row FROM agentmesh_runs r
                     WHERE r.finished IS NULL
                       AND NOT EXISTS (SELECT 1 FROM agentmesh_leases l
                                       WHERE l.epoch = r.epoch AND l.expires > clock_timestamp())
                       AND EXISTS (SELECT 1 FROM agentmesh_leases l
                                   WHERE l.epoch = $1 AND l.expires > clock_timestamp())
                     ORDER BY r.row
                     LIMIT {ADOPT_BATCH}
                     FOR UPDATE SKIP LOCKED)
                 RETURNING {RUN_COLUMNS}"
            ),
            &[&epoch, &&*shared.opts.instance],
        )
        .await
        .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())?;
    for row in claimed {
        let stored = StoredRun::from_row(&row).map_err(|e| e.to_string())?;
        let events = events_after(&client, stored.row, &stored.id, 0)
            .await
            .map_err(|e| e.to_string())?;
        info!(run_id = %stored.id, epoch, events = events.len(), "run store: took the run over");
        crate::metrics::metrics().store_adopted.inc();
        let (row, cancel) = (stored.row, stored.cancel.clone());
        let written = events.len() as u64;
        let run = Arc::new(RunRecord::resumable(
            stored.id,
            stored.goal,
            stored.key,
            Arc::from(stored.owner),
            stored.created,
            events,
            shared.persister(),
        ));
        if !stored.fingerprint.is_empty() {
            run.set_fingerprint(stored.fingerprint);
        }
        if let Some(reason) = cancel {
            // Canceled on some replica while no one drove it.
            run.stop(events::canceled_by_client(&reason));
        }
        shared.memory.restore(Arc::clone(&run));
        shared.track(Arc::clone(&run), row, written);
        if shared.adopted.send(run).is_err() {
            // No engine takes runs (shutting down): the lease goes at close
            // and another replica takes them.
            return Ok(());
        }
    }
    Ok(())
}

/// Deletes the oldest finished runs beyond `store.retained_runs` or
/// `store.retained_stored_bytes` (one replica at a time), remembering
/// their ids; drops leases no run needs any more.
async fn retire(shared: &Shared) -> Result<(), String> {
    let runs = i64::try_from(shared.opts.retention.runs).unwrap_or(i64::MAX);
    let bytes = i64::try_from(shared.opts.stored_bytes).unwrap_or(i64::MAX);
    let mut client = shared.pool.get().await.map_err(|e| e.to_string())?;
    let tx = client.transaction().await.map_err(|e| e.to_string())?;
    let locked: bool = tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&RETENTION_LOCK])
        .await
        .and_then(|r| r.try_get(0))
        .map_err(|e| e.to_string())?;
    if !locked {
        return Ok(());
    }
    tx.execute(
        "WITH ranked AS (
             SELECT row, id, owner, finished,
                    row_number() OVER (ORDER BY row DESC) AS n,
                    (sum(bytes) OVER (ORDER BY row DESC))::bigint AS total
             FROM agentmesh_runs),
         doomed AS (
             SELECT row, id, owner,
                    CASE WHEN n > $1 THEN 'store.retained_runs'
                         ELSE 'store.retained_stored_bytes' END AS limit_name
             FROM ranked WHERE finished IS NOT NULL AND (n > $1 OR total > $2)),
         gone AS (
             DELETE FROM agentmesh_runs r USING doomed d WHERE r.row = d.row
             RETURNING d.id, d.owner, d.limit_name)
         INSERT INTO agentmesh_retired (id, owner, limit_name)
         SELECT id, owner, limit_name FROM gone ON CONFLICT (id) DO NOTHING",
        &[&runs, &bytes],
    )
    .await
    .map_err(|e| e.to_string())?;
    tx.execute(
        "DELETE FROM agentmesh_retired WHERE at < (
             SELECT at FROM agentmesh_retired ORDER BY at DESC OFFSET $1 LIMIT 1)",
        &[&RETIRED_REMEMBERED],
    )
    .await
    .map_err(|e| e.to_string())?;
    tx.execute(
        "DELETE FROM agentmesh_leases l
         WHERE l.expires < clock_timestamp() - interval '1 minute'
           AND NOT EXISTS (SELECT 1 FROM agentmesh_runs r
                           WHERE r.epoch = l.epoch AND r.finished IS NULL)",
        &[],
    )
    .await
    .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())?;
    Ok(())
}
