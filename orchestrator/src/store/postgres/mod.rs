//! Runs in a PostgreSQL database shared by several orchestrator replicas
//! (`store.url`).
//!
//! - **Writes.** Each replica writes the events of the runs it drives in
//!   batches, one transaction per batch, and lets clients see an event only
//!   once it is committed (the run's log is gated, as with SQLite).
//! - **Ownership.** Each replica holds a lease (a row with an expiry in
//!   database time) that it renews every quarter of `store.lease_ms`. A
//!   lease's `epoch` (from a sequence, never reused) is the fencing token:
//!   every run names the epoch of the replica driving it, and every batch
//!   locks its runs' rows, checks they still carry its epoch and that its
//!   lease is live, or writes nothing. A replica whose lease is gone (it
//!   could not renew in time, or a write was refused) steps down: it stops
//!   its runs without recording anything more, forgets them, and takes a
//!   new lease.
//! - **Adoption.** Every quarter lease, each replica claims unfinished runs
//!   whose epoch has no live lease (`FOR UPDATE SKIP LOCKED`, so two
//!   replicas never claim one run) and resumes them ([`RunStore::unfinished`]).
//!   A graceful stop gives its lease up at once, so its runs move without
//!   waiting for the expiry.
//! - **Any replica answers.** Runs are read from the database when this
//!   replica does not hold them; a run driven elsewhere is followed live
//!   (`LISTEN`/`NOTIFY` on each commit, and a read every `store.poll_ms`
//!   in case a notification was missed). `CancelRun` on a replica that
//!   does not drive the run records the request and notifies the driver
//!   (or whoever adopts the run next). An idempotency key is unique in the
//!   database, so the same Submit on two replicas at once makes one run.
//! - **Retention** by count (`store.retained_runs`) and bytes
//!   (`store.retained_stored_bytes`): the oldest finished runs are deleted
//!   and their ids remembered, so asking for one says why it is gone.

mod connect;
mod follow;
mod lease;
pub mod schema;
mod writer;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use agentmesh_proto::error::{ErrorReason, MeshError};
use agentmesh_proto::prost::Message;
use agentmesh_proto::v1::{RunEvent, RunState, RunSummary};
use deadpool_postgres::Pool;
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use connect::Database;

use super::{Evicted, MemoryStore, Persister, Retention, RunRecord, RunStore};

/// Why the PostgreSQL store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PgStoreError {
    /// `store.url` is not a PostgreSQL connection URL.
    #[error("store.url: {0}")]
    Url(String),
    /// TLS towards the database could not be set up.
    #[error("store TLS: {0}")]
    Tls(String),
    /// The connection pool could not be built.
    #[error("store pool: {0}")]
    Pool(String),
    /// The database refused or could not be reached.
    #[error("run store database: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// No connection could be had from the pool.
    #[error("run store database: {0}")]
    Connect(#[from] deadpool_postgres::PoolError),
    /// The layout could not be migrated (or is newer than this
    /// orchestrator knows).
    #[error("run store migrations: {0}")]
    Migrate(#[from] refinery::Error),
}

/// How the store is set up.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `store.url`.
    pub url: String,
    /// `store.ca_file`.
    pub ca_file: Option<PathBuf>,
    /// This replica's name in leases and RunResumed events.
    pub instance: Arc<str>,
    /// `store.lease_ms`.
    pub lease: Duration,
    /// `store.poll_ms`.
    pub poll: Duration,
    /// `store.pool_size`.
    pub pool_size: usize,
    /// What memory keeps of the runs driven here (`store.retained_runs`,
    /// `store.retained_bytes`); the database keeps `retention.runs` runs.
    pub retention: Retention,
    /// `store.retained_stored_bytes`.
    pub stored_bytes: u64,
}

/// Runs in a shared PostgreSQL database.
pub struct PostgresStore {
    shared: Arc<Shared>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// What the store's tasks share.
struct Shared {
    pool: Pool,
    db: Database,
    opts: PgOptions,
    /// The runs driven here (and those that finished here, within
    /// retention).
    memory: MemoryStore,
    /// The epoch of this replica's live lease; 0 while it has none.
    epoch: AtomicI64,
    /// Runs driven here with events not yet written.
    tracked: Mutex<Vec<Tracked>>,
    /// Woken on every append to a run driven here.
    wake: Notify,
    /// Runs driven elsewhere that clients here follow, with their rows.
    mirrors: Mutex<HashMap<String, (Weak<RunRecord>, i64)>>,
    /// Runs to resume (adopted, or left by this replica's last process).
    adopted: mpsc::UnboundedSender<Arc<RunRecord>>,
    adopted_rx: Mutex<Option<mpsc::UnboundedReceiver<Arc<RunRecord>>>>,
    /// Stops the store's tasks.
    shutdown: CancellationToken,
    /// Wakes the lease keeper to take a new lease after a step-down.
    stepped_down: Notify,
    /// A run finished here since retention last ran (it runs only then).
    retire_due: AtomicBool,
}

/// A run driven here, and how far it is written.
struct Tracked {
    run: Arc<RunRecord>,
    /// Its `agentmesh_runs.row`.
    row: i64,
    /// Events written (and published) so far.
    written: u64,
}

impl Persister for Shared {
    fn appended(&self) {
        self.wake.notify_one();
    }
}

/// A database failure as callers see it: `STORE_UNAVAILABLE`.
fn unavailable(e: impl std::fmt::Display) -> MeshError {
    MeshError::new(
        ErrorReason::StoreUnavailable,
        format!("the run store cannot answer: {e}"),
    )
}

impl PostgresStore {
    /// Connects, migrates the layout to this version, takes a lease and
    /// starts the writer, the lease keeper and the follower.
    pub async fn open(opts: PgOptions) -> Result<Arc<Self>, PgStoreError> {
        let db = Database::new(&opts.url, opts.ca_file.as_deref())?;
        let pool = db.pool(opts.pool_size)?;
        migrate(&pool).await?;
        let (adopted, adopted_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            pool,
            db,
            memory: MemoryStore::new(opts.retention),
            opts,
            epoch: AtomicI64::new(0),
            tracked: Mutex::new(Vec::new()),
            wake: Notify::new(),
            mirrors: Mutex::new(HashMap::new()),
            adopted,
            adopted_rx: Mutex::new(Some(adopted_rx)),
            shutdown: CancellationToken::new(),
            stepped_down: Notify::new(),
            // Once at start, for what earlier processes left.
            retire_due: AtomicBool::new(true),
        });
        lease::acquire(&shared).await?;
        let tasks = vec![
            tokio::spawn(writer::run(Arc::clone(&shared))),
            tokio::spawn(lease::keep(Arc::clone(&shared))),
            tokio::spawn(follow::run(Arc::clone(&shared))),
        ];
        info!(
            instance = %shared.opts.instance,
            epoch = shared.epoch.load(Ordering::Acquire),
            "run store opened (PostgreSQL)"
        );
        Ok(Arc::new(Self {
            shared,
            tasks: Mutex::new(tasks),
        }))
    }

    /// The epoch of this replica's lease (0 while it has none).
    pub fn epoch(&self) -> i64 {
        self.shared.epoch.load(Ordering::Acquire)
    }

    /// Writes what is left, stops the store's tasks and gives the lease up,
    /// so that other replicas take the runs left unfinished over at once.
    /// Call it once the server has stopped (runs finished or suspended).
    pub async fn close(&self) {
        let shared = &self.shared;
        // The writer writes what is left (trying for a while if the
        // database fails) and ends; so do the other tasks.
        shared.shutdown.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock());
        for task in tasks {
            let _ = task.await;
        }
        lease::release(shared).await;
    }
}

/// Events of `t` not yet written.
fn pending(t: &Tracked) -> u64 {
    t.run.log.len().saturating_sub(t.written)
}

/// Runs the migrations, one replica at a time.
async fn migrate(pool: &Pool) -> Result<(), PgStoreError> {
    let mut client = pool.get().await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&schema::MIGRATION_LOCK])
        .await?;
    let result = schema::runner(schema::CURRENT)?
        .run_async(&mut **client)
        .await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&schema::MIGRATION_LOCK])
        .await?;
    let report = result?;
    for m in report.applied_migrations() {
        info!(
            version = m.version(),
            name = m.name(),
            "run store: migrated the database"
        );
    }
    Ok(())
}

impl Shared {
    /// The live lease's epoch, or STORE_UNAVAILABLE while there is none.
    fn live_epoch(&self) -> Result<i64, MeshError> {
        match self.epoch.load(Ordering::Acquire) {
            0 => Err(MeshError::new(
                ErrorReason::StoreUnavailable,
                "this orchestrator has no store lease at the moment; try again or another replica",
            )),
            epoch => Ok(epoch),
        }
    }

    /// Gives up every run driven here: this replica lost its lease (or
    /// could not renew it in time), so another may already drive them.
    /// Nothing more of them is recorded here; clients following them here
    /// are told the run moved.
    fn step_down(&self, why: &str) {
        let previous = self.epoch.swap(0, Ordering::AcqRel);
        if previous == 0 {
            return;
        }
        self.tracked.lock().clear();
        let mut given_up = 0;
        for run in self.memory.all() {
            if run.log.is_closed() {
                continue;
            }
            run.suspend(MeshError::new(
                ErrorReason::RunMoved,
                "this orchestrator lost its store lease; another replica takes the run over",
            ));
            self.memory.remove(&run.id);
            given_up += 1;
        }
        self.stepped_down.notify_one();
        crate::metrics::metrics().store_step_downs.inc();
        warn!(
            epoch = previous,
            runs = given_up,
            reason = why,
            "run store: lost the store lease; stepping down from the runs driven here"
        );
    }

    /// Starts driving `run` (a new run inserted at `row`, or one adopted
    /// holding `written` stored events).
    fn track(&self, run: Arc<RunRecord>, row: i64, written: u64) {
        self.tracked.lock().push(Tracked { run, row, written });
    }

    /// A persister for the runs driven here.
    fn persister(self: &Arc<Self>) -> Arc<dyn Persister> {
        self.clone()
    }
}

/// A `agentmesh_runs` row as read back, with its events.
struct StoredRun {
    row: i64,
    id: String,
    goal: String,
    key: String,
    owner: String,
    fingerprint: String,
    created: SystemTime,
    cancel: Option<String>,
}

/// The columns [`StoredRun::from_row`] reads, in its order.
const RUN_COLUMNS: &str = "row, id, goal, idempotency_key, owner, fingerprint, created, cancel";

impl StoredRun {
    fn from_row(r: &tokio_postgres::Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            row: r.try_get(0)?,
            id: r.try_get(1)?,
            goal: r.try_get(2)?,
            key: r.try_get(3)?,
            owner: r.try_get(4)?,
            fingerprint: r.try_get(5)?,
            created: r.try_get(6)?,
            cancel: r.try_get(7)?,
        })
    }

    /// The run as read (closed if its last event is the final one; if not,
    /// open, for the follower to extend).
    fn into_record(self, events: Vec<RunEvent>) -> RunRecord {
        let run = RunRecord::restored(
            self.id,
            self.goal,
            self.key,
            Arc::from(self.owner),
            self.created,
            events,
        );
        if !self.fingerprint.is_empty() {
            run.set_fingerprint(self.fingerprint);
        }
        run
    }
}

/// The events of run `row` after `after`, in order, up to the first that
/// cannot be read or is out of sequence.
async fn events_after(
    client: &deadpool_postgres::ClientWrapper,
    row: i64,
    id: &str,
    after: u64,
) -> Result<Vec<RunEvent>, tokio_postgres::Error> {
    let from = i64::try_from(after).unwrap_or(i64::MAX);
    let read = client
        .prepare_cached(
            "SELECT seq, event FROM agentmesh_events WHERE run = $1 AND seq > $2 ORDER BY seq",
        )
        .await?;
    let rows = client.query(&read, &[&row, &from]).await?;
    let mut events = Vec::with_capacity(rows.len());
    for r in rows {
        let seq: i64 = r.try_get(0)?;
        let body: &[u8] = r.try_get(1)?;
        let expected = after + events.len() as u64 + 1;
        match RunEvent::decode(body) {
            Ok(ev)
                if ev.seq == expected && u64::try_from(seq) == Ok(expected) && ev.run_id == id =>
            {
                events.push(ev);
            }
            _ => {
                warn!(
                    run_id = id,
                    seq,
                    "run store: unreadable or out-of-order event; the run is read up to the event before it"
                );
                break;
            }
        }
    }
    Ok(events)
}

/// The state a summary shows for a stored `state` column.
fn stored_state(state: i32, finished: bool, last_seq: i64) -> RunState {
    if finished {
        RunState::try_from(state).unwrap_or(RunState::Failed)
    } else if state == RunState::Waiting as i32 {
        RunState::Waiting
    } else if last_seq == 0 {
        RunState::Pending
    } else {
        RunState::Running
    }
}

/// The retention limit a stored name stands for.
fn limit_name(name: &str) -> &'static str {
    match name {
        "store.retained_stored_bytes" => "store.retained_stored_bytes",
        _ => "store.retained_runs",
    }
}

impl PostgresStore {
    /// Reads run `id` from the database: finished, as it ended; unfinished
    /// (driven elsewhere), followed live for as long as someone holds it.
    async fn load(&self, id: &str) -> Result<Option<Arc<RunRecord>>, MeshError> {
        let shared = &self.shared;
        let client = shared.pool.get().await.map_err(unavailable)?;
        let read = client
            .prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM agentmesh_runs WHERE id = $1"
            ))
            .await
            .map_err(unavailable)?;
        let Some(row) = client.query_opt(&read, &[&id]).await.map_err(unavailable)? else {
            return Ok(None);
        };
        let stored = StoredRun::from_row(&row).map_err(unavailable)?;
        let events = events_after(&client, stored.row, id, 0)
            .await
            .map_err(unavailable)?;
        let row = stored.row;
        let run = Arc::new(stored.into_record(events));
        if run.log.is_closed() {
            return Ok(Some(run));
        }
        Ok(Some(follow::mirror(shared, run, row)))
    }
}

#[async_trait::async_trait]
impl RunStore for PostgresStore {
    fn new_run(&self, goal: String, idempotency_key: String, owner: Arc<str>) -> RunRecord {
        RunRecord::persisted(goal, idempotency_key, owner, self.shared.persister())
    }

    async fn insert(&self, run: Arc<RunRecord>) -> Result<Arc<RunRecord>, MeshError> {
        let shared = &self.shared;
        let epoch = shared.live_epoch()?;
        let client = shared.pool.get().await.map_err(unavailable)?;
        // The row and the events the run has so far (its plan), in one
        // statement: a stored run always has its plan.
        let events = run.log.snapshot_after(0);
        let created = run.created;
        let fingerprint = run.fingerprint().unwrap_or_default().to_string();
        let bytes: i64 = events.iter().map(|e| stored_bytes(e)).sum();
        let last_seq = i64::try_from(events.len()).unwrap_or(i64::MAX);
        let seqs: Vec<i64> = events
            .iter()
            .map(|e| i64::try_from(e.seq).unwrap_or(i64::MAX))
            .collect();
        let bodies: Vec<Vec<u8>> = events.iter().map(|e| e.encode_to_vec()).collect();
        let insert = client
            .prepare_cached(
                "WITH run AS (
                     INSERT INTO agentmesh_runs
                         (id, goal, idempotency_key, owner, fingerprint, created, epoch, instance,
                          last_seq, bytes)
                     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10
                     WHERE EXISTS (SELECT 1 FROM agentmesh_leases
                                   WHERE epoch = $7 AND expires > clock_timestamp())
                     ON CONFLICT (idempotency_key) WHERE idempotency_key <> '' DO NOTHING
                     RETURNING row),
                 added AS (
                     INSERT INTO agentmesh_events (run, seq, epoch, event)
                     SELECT run.row, e.seq, $7, e.event
                     FROM run, UNNEST($11::bigint[], $12::bytea[]) AS e(seq, event)
                     RETURNING 1)
                 SELECT row, (SELECT count(*) FROM added) FROM run",
            )
            .await
            .map_err(unavailable)?;
        let inserted = client
            .query_opt(
                &insert,
                &[
                    &run.id,
                    &run.goal,
                    &run.idempotency_key,
                    &&*run.owner,
                    &fingerprint,
                    &created,
                    &epoch,
                    &&*shared.opts.instance,
                    &last_seq,
                    &bytes,
                    &seqs,
                    &bodies,
                ],
            )
            .await
            .map_err(unavailable)?;
        if let Some(row) = inserted {
            let row: i64 = row.try_get(0).map_err(unavailable)?;
            let written = events.len() as u64;
            run.log.publish(written);
            let kept = shared.memory.insert(Arc::clone(&run));
            shared.track(Arc::clone(&kept), row, written);
            // Events appended meanwhile are the writer's.
            shared.wake.notify_one();
            return Ok(kept);
        }
        drop(client);
        // The key names a run already (made here or on another replica),
        // or the lease lapsed just now.
        if !run.idempotency_key.is_empty()
            && let Some(existing) = self.by_key(&run.idempotency_key).await?
        {
            return Ok(existing);
        }
        shared.live_epoch()?;
        Err(unavailable(
            "the store lease lapsed while the run was being stored",
        ))
    }

    async fn get(&self, id: &str) -> Result<Option<Arc<RunRecord>>, MeshError> {
        let shared = &self.shared;
        if let Some(run) = shared.memory.get(id) {
            return Ok(Some(run));
        }
        if let Some(run) = follow::followed(shared, id) {
            return Ok(Some(run));
        }
        self.load(id).await
    }

    async fn by_key(&self, key: &str) -> Result<Option<Arc<RunRecord>>, MeshError> {
        if let Some(run) = self.shared.memory.by_key(key) {
            return Ok(Some(run));
        }
        let id: Option<String> = {
            let client = self.shared.pool.get().await.map_err(unavailable)?;
            let read = client
                .prepare_cached(
                    "SELECT id FROM agentmesh_runs WHERE idempotency_key = $1 AND idempotency_key <> ''",
                )
                .await
                .map_err(unavailable)?;
            client
                .query_opt(&read, &[&key])
                .await
                .map_err(unavailable)?
                .map(|r| r.try_get(0))
                .transpose()
                .map_err(unavailable)?
        };
        match id {
            Some(id) => self.get(&id).await,
            None => Ok(None),
        }
    }

    async fn list(
        &self,
        limit: usize,
        owner: Option<&str>,
        states: &[RunState],
    ) -> Result<Vec<RunSummary>, MeshError> {
        let client = self.shared.pool.get().await.map_err(unavailable)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let states: Vec<i32> = states.iter().map(|s| *s as i32).collect();
        // The state as `stored_state` reads it, for the filter.
        let read = client
            .prepare_cached(
                "SELECT id, goal, owner, created, finished, state, last_seq FROM agentmesh_runs
                 WHERE ($1::text IS NULL OR owner = $1)
                   AND (cardinality($3::int[]) = 0 OR
                        (CASE WHEN finished IS NOT NULL THEN state
                              WHEN state = 7 THEN 7
                              WHEN last_seq = 0 THEN 1 ELSE 2 END) = ANY($3))
                 ORDER BY row DESC LIMIT $2",
            )
            .await
            .map_err(unavailable)?;
        let rows = client
            .query(&read, &[&owner, &limit, &states])
            .await
            .map_err(unavailable)?;
        rows.iter()
            .map(|r| {
                let finished: Option<SystemTime> = r.try_get(4)?;
                let last_seq: i64 = r.try_get(6)?;
                let created: SystemTime = r.try_get(3)?;
                Ok(RunSummary {
                    run_id: r.try_get(0)?,
                    goal: r.try_get(1)?,
                    owner: r.try_get(2)?,
                    created: Some(created.into()),
                    state: stored_state(r.try_get(5)?, finished.is_some(), last_seq).into(),
                    finished: finished.map(Into::into),
                    last_seq: u64::try_from(last_seq).unwrap_or(0),
                    waiting: Vec::new(),
                })
            })
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()
            .map_err(unavailable)
    }

    fn finished(&self, run: &RunRecord) {
        self.shared.memory.finished(run);
        self.shared.retire_due.store(true, Ordering::Release);
    }

    async fn evicted(&self, id: &str) -> Result<Option<Evicted>, MeshError> {
        let client = self.shared.pool.get().await.map_err(unavailable)?;
        let row = client
            .query_opt(
                "SELECT owner, limit_name FROM agentmesh_retired WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(unavailable)?;
        row.map(|r| {
            let owner: String = r.try_get(0)?;
            let limit: String = r.try_get(1)?;
            Ok(Evicted {
                limit: limit_name(&limit),
                owner: Arc::from(owner),
            })
        })
        .transpose()
        .map_err(|e: tokio_postgres::Error| unavailable(e))
    }

    fn local(&self) -> Vec<Arc<RunRecord>> {
        self.shared.memory.all()
    }

    async fn cancel_elsewhere(&self, run: &RunRecord, reason: &str) -> Result<bool, MeshError> {
        if self.shared.memory.get(&run.id).is_some() {
            return Ok(false);
        }
        let client = self.shared.pool.get().await.map_err(unavailable)?;
        client
            .execute(
                "WITH asked AS (
                     UPDATE agentmesh_runs SET cancel = $2
                     WHERE id = $1 AND finished IS NULL RETURNING id)
                 SELECT pg_notify('agentmesh_cancel', id) FROM asked",
                &[&run.id, &reason],
            )
            .await
            .map_err(unavailable)?;
        Ok(true)
    }

    fn unfinished(&self) -> Option<mpsc::UnboundedReceiver<Arc<RunRecord>>> {
        self.shared.adopted_rx.lock().take()
    }

    fn durable(&self) -> bool {
        true
    }
}

/// Bytes an event counts for in `agentmesh_runs.bytes`.
fn stored_bytes(ev: &RunEvent) -> i64 {
    i64::try_from(ev.encoded_len()).unwrap_or(i64::MAX)
}
