//! The writer: on every wake-up, the new events of every run driven here go
//! to the database in one transaction, fenced by this replica's epoch;
//! clients see them once it commits.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use agentmesh_proto::prost::Message;
use agentmesh_proto::v1::{RunEvent, RunState, run_event};
use tracing::{error, warn};

use super::{Shared, Tracked, pending, stored_bytes};

/// A whole batch in one statement (one round trip, one commit): lock the
/// batch's runs if they still carry the writer's epoch and its lease is
/// live (the fence; an adopter skips locked rows), and only then add the
/// events (each recording the epoch that wrote it), move each run's
/// summary on (last event, size, final state) and notify followers.
/// Returns whether the fence held.
const BATCH: &str = "WITH locked AS (
         SELECT r.row FROM agentmesh_runs r
         WHERE r.row = ANY($1) AND r.epoch = $6
           AND EXISTS (SELECT 1 FROM agentmesh_leases l
                       WHERE l.epoch = $6 AND l.expires > clock_timestamp())
         FOR SHARE OF r),
     fence AS (SELECT count(*) = cardinality($1::bigint[]) AS ok FROM locked),
     added AS (
         INSERT INTO agentmesh_events (run, seq, epoch, event)
         SELECT e.run, e.seq, $6, e.event
         FROM UNNEST($7::bigint[], $8::bigint[], $9::bytea[]) AS e(run, seq, event)
         WHERE (SELECT ok FROM fence)
         RETURNING 1),
     moved AS (
         UPDATE agentmesh_runs r SET last_seq = v.last_seq, bytes = r.bytes + v.bytes,
             state = COALESCE(v.state, r.state), finished = COALESCE(v.finished, r.finished)
         FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::int[], $5::timestamptz[])
             AS v(row, last_seq, bytes, state, finished)
         WHERE r.row = v.row AND (SELECT ok FROM fence)
         RETURNING r.id),
     notified AS (SELECT pg_notify('agentmesh_events', id) FROM moved)
     SELECT (SELECT ok FROM fence), (SELECT count(*) FROM added), (SELECT count(*) FROM notified)";

/// Wait before writing a batch again after the database failed.
const RETRY: Duration = Duration::from_millis(250);

/// How long the last batch at a stop is tried while the database fails.
const FLUSH_AT_STOP: Duration = Duration::from_secs(5);

/// Why a batch was not written.
enum Refused {
    /// This replica's lease is gone, or a run now carries another epoch:
    /// another replica may drive its runs.
    Fenced(String),
    /// The database failed or could not be reached; the batch is tried
    /// again.
    Failed(String),
}

impl From<tokio_postgres::Error> for Refused {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Failed(e.to_string())
    }
}

impl From<deadpool_postgres::PoolError> for Refused {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Failed(e.to_string())
    }
}

/// Writes until the store shuts down, then writes what is left.
pub(super) async fn run(shared: Arc<Shared>) {
    loop {
        let stopping = tokio::select! {
            () = shared.wake.notified() => false,
            () = shared.shutdown.cancelled() => true,
        };
        // At the stop there is no later wake-up: keep trying for a while.
        let give_up = stopping.then(|| Instant::now() + FLUSH_AT_STOP);
        loop {
            match write(&shared).await {
                Ok(()) => break,
                Err(Refused::Fenced(why)) => {
                    warn!(reason = %why, "run store: write refused");
                    crate::metrics::metrics().store_fenced_writes.inc();
                    shared.step_down(&why);
                    break;
                }
                Err(Refused::Failed(e)) => {
                    // Events stay unpublished (clients wait) and are tried
                    // again; if the lease lapses meanwhile, the next try is
                    // refused and this replica steps down.
                    error!(error = %e, "run store: writing events failed; trying again");
                    if give_up.is_some_and(|at| Instant::now() >= at) {
                        warn!(
                            "run store: events still unwritten at the stop; the run's next owner resumes it from what is stored"
                        );
                        break;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(RETRY) => {}
                        // Tried again as the stop's last batch.
                        () = shared.shutdown.cancelled(), if !stopping => break,
                    }
                }
            }
        }
        if stopping {
            return;
        }
    }
}

/// One run's part of a batch.
struct Part {
    row: i64,
    events: Vec<Arc<RunEvent>>,
    /// The final event's state, if the batch holds it.
    finished: Option<(i32, SystemTime)>,
    /// The run's state after the batch.
    state: i32,
}

/// Writes every tracked run's new events in one statement, then publishes
/// them; finished runs stop being tracked.
async fn write(shared: &Shared) -> Result<(), Refused> {
    let epoch = shared.epoch.load(Ordering::Acquire);
    if epoch == 0 {
        return Ok(());
    }
    let parts: Vec<Part> = shared
        .tracked
        .lock()
        .iter()
        .filter(|t| pending(t) > 0)
        .map(part)
        .collect();
    if parts.is_empty() {
        forget_suspended(shared);
        return Ok(());
    }
    let started = Instant::now();
    let rows: Vec<i64> = parts.iter().map(|p| p.row).collect();
    let mut run_col = Vec::new();
    let mut seq_col = Vec::new();
    let mut body_col = Vec::new();
    for p in &parts {
        for ev in &p.events {
            run_col.push(p.row);
            seq_col.push(i64::try_from(ev.seq).unwrap_or(i64::MAX));
            body_col.push(ev.encode_to_vec());
        }
    }
    let mut last_col = Vec::with_capacity(parts.len());
    let mut bytes_col = Vec::with_capacity(parts.len());
    let mut state_col: Vec<Option<i32>> = Vec::with_capacity(parts.len());
    let mut finished_col: Vec<Option<SystemTime>> = Vec::with_capacity(parts.len());
    for p in &parts {
        let last = p.events.last().map_or(0, |e| e.seq);
        last_col.push(i64::try_from(last).unwrap_or(i64::MAX));
        bytes_col.push(p.events.iter().map(|e| stored_bytes(e)).sum::<i64>());
        state_col.push(Some(p.state));
        finished_col.push(p.finished.map(|(_, at)| at));
    }
    let client = shared.pool.get().await?;
    let batch = client.prepare_cached(BATCH).await?;
    let done = client
        .query_one(
            &batch,
            &[
                &rows,
                &last_col,
                &bytes_col,
                &state_col,
                &finished_col,
                &epoch,
                &run_col,
                &seq_col,
                &body_col,
            ],
        )
        .await?;
    let held: bool = done.try_get(0)?;
    if !held {
        return Err(Refused::Fenced(format!(
            "lease {epoch} expired, or runs of this batch carry another epoch"
        )));
    }
    crate::metrics::metrics()
        .store_commit
        .observe(started.elapsed().as_secs_f64());
    publish(shared, &parts);
    Ok(())
}

/// A tracked run's events past its cursor.
fn part(t: &Tracked) -> Part {
    // Read `closed` first: once closed, the snapshot holds every event.
    let closed = t.run.log.is_closed();
    let events = t.run.log.snapshot_after(t.written);
    let finished = if closed {
        events.last().and_then(|ev| match &ev.event {
            Some(run_event::Event::Finished(f)) => Some((
                f.state,
                ev.time
                    .and_then(|t| SystemTime::try_from(t).ok())
                    .unwrap_or_else(SystemTime::now),
            )),
            _ => None,
        })
    } else {
        None
    };
    // An unfinished run's state column says whether a step waits for a
    // person (for ListRuns' filter on every replica).
    let state = finished.map_or_else(
        || {
            if t.run.waits.is_waiting() {
                RunState::Waiting as i32
            } else {
                RunState::Running as i32
            }
        },
        |(state, _)| state,
    );
    Part {
        row: t.row,
        events,
        finished,
        state,
    }
}

/// Lets clients see what was committed; runs that finished (or were left
/// to another replica) stop being tracked.
fn publish(shared: &Shared, parts: &[Part]) {
    let mut tracked = shared.tracked.lock();
    for t in tracked.iter_mut() {
        if let Some(p) = parts.iter().find(|p| p.row == t.row) {
            t.written += p.events.len() as u64;
            t.run.log.publish(t.written);
        }
    }
    tracked.retain(|t| {
        let done = t.run.log.is_closed() || t.run.is_suspended();
        !(done && pending(t) == 0)
    });
}

/// Runs left to another orchestrator with nothing more to write stop being
/// tracked.
fn forget_suspended(shared: &Shared) {
    shared
        .tracked
        .lock()
        .retain(|t| !(t.run.is_suspended() && pending(t) == 0));
}
