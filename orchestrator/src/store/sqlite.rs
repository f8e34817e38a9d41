//! Runs kept in an SQLite file as well as in memory, so that they outlive
//! the orchestrator process.
//!
//! Every event of a run is written to the file by one writer thread, in a
//! transaction per batch (WAL journal, `synchronous=NORMAL`: a committed
//! event survives the process being killed; an OS crash may lose the last
//! batches). A run's log is gated: a client sees an event only once it is
//! committed, so a client that reconnects after a restart never holds an
//! event the store does not have, and `WatchRun(after_seq)` continues
//! without a gap. A second thread checkpoints the WAL into the database
//! file, so that its syncs never hold up the writer.
//!
//! On start the store reads its file back: finished runs are served as
//! they were (`GetRun`, `WatchRun`, `ListRuns`, and their idempotency keys
//! still name them); a run that was executing when the process stopped is
//! kept open and handed to the engine, which resumes it
//! ([`RunStore::unfinished`]); its new events are stored as before.
//! Retention is the same as in memory: the newest `retained_runs` runs stay.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, MutexGuard};

use agentmesh_proto::error::ErrorReason;
use agentmesh_proto::prost::Message;
use agentmesh_proto::v1::{RunEvent, run_event};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tracing::{error, info, warn};

use agentmesh_proto::error::MeshError;
use agentmesh_proto::v1::{RunState, RunSummary};
use tokio::sync::mpsc;

use super::{Evicted, MemoryStore, Persister, Retention, RunRecord, RunStore, summaries};
use crate::events;

/// The file layout this orchestrator reads and writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 2;

/// Runs are numbered in admission order (`row`) and events are keyed by
/// that number, so that new rows land at the right edge of both B-trees
/// and a commit touches few pages.
const SCHEMA: &str = "
CREATE TABLE runs (
    row             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL,
    goal            TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    created_ms      INTEGER NOT NULL,
    finished        INTEGER NOT NULL DEFAULT 0,
    owner           TEXT NOT NULL DEFAULT ''
);
CREATE TABLE events (
    run   INTEGER NOT NULL REFERENCES runs(row) ON DELETE CASCADE,
    seq   INTEGER NOT NULL,
    event BLOB NOT NULL,
    PRIMARY KEY (run, seq)
) WITHOUT ROWID;
PRAGMA user_version = 2;
";

/// From layout 1 (before runs had owners): runs stored then belong to no
/// one, as they did.
const MIGRATE_1_TO_2: &str = "
ALTER TABLE runs ADD COLUMN owner TEXT NOT NULL DEFAULT '';
PRAGMA user_version = 2;
";

/// The checkpoint thread copies the WAL into the database file after this
/// many commits.
const CHECKPOINT_EVERY: u32 = 256;

/// The message of the final event of a run the process stopped in before
/// its plan was stored (nothing to resume from).
const INTERRUPTED: &str = "the orchestrator stopped before this run's plan was stored; \
     submit the run again";

/// Why the run store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused an operation.
    #[error("run store {path}: {source}")]
    Sqlite {
        /// The store's file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// Another process holds the file.
    #[error("run store {path} is in use by another orchestrator (one file per orchestrator)")]
    Locked {
        /// The store's file.
        path: PathBuf,
    },
    /// The file was written by another version of the orchestrator.
    #[error(
        "run store {path} has layout version {found}; this orchestrator reads version {SCHEMA_VERSION}"
    )]
    Version {
        /// The store's file.
        path: PathBuf,
        /// The version found in the file.
        found: i64,
    },
    /// The folder, the lock file or a thread could not be created.
    #[error("run store {path}: {source}")]
    Io {
        /// The store's file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// Runs in memory, written through to an SQLite file.
pub struct SqliteStore {
    memory: MemoryStore,
    /// Reads runs that memory no longer holds back from the file.
    reader: Mutex<Connection>,
    writer: Arc<Writer>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Runs read back unfinished, until the engine takes them to resume.
    unfinished: Mutex<Option<Vec<Arc<RunRecord>>>>,
    /// `<path>.lock`, locked for as long as the store is open.
    _lock: std::fs::File,
}

/// The state shared by the store, its runs and the writer thread.
struct Writer {
    /// Capacity 1: a wake-up that is already pending covers every later
    /// append, since the writer reads each run's log from its cursor.
    wake: SyncSender<()>,
    /// Runs with events not yet written (their logs' published count is
    /// the cursor).
    tracked: Mutex<Vec<Tracked>>,
    stopping: AtomicBool,
}

/// A run the writer has events of to write.
#[derive(Clone)]
struct Tracked {
    run: Arc<RunRecord>,
    /// Its `runs.row`, once the row is written.
    row: Option<i64>,
    /// Events written (and published) so far.
    written: u64,
}

impl Persister for Writer {
    fn appended(&self) {
        let _ = self.wake.try_send(());
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock()
}

impl SqliteStore {
    /// Opens (or creates) the store at `path`, keeping up to
    /// `retention.runs` runs in the file and what `retention` allows in
    /// memory, and starts its writer and checkpoint threads.
    pub fn open(path: &Path, retention: Retention) -> Result<Arc<Self>, StoreError> {
        let retained = retention.runs;
        let sqlite = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let io = |source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        // One orchestrator per file: the first one holds a lock on
        // `<path>.lock` for as long as it runs; a second one fails at once.
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io)?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    path: path.to_path_buf(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let mut conn = Connection::open(path).map_err(sqlite)?;
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))
            .map_err(sqlite)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sqlite)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sqlite)?;
        // Checkpoints run on their own thread (`checkpoint_loop`).
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(sqlite)?;
        let found: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sqlite)?;
        match found {
            0 => conn.execute_batch(SCHEMA).map_err(sqlite)?,
            1 => {
                info!(path = %path.display(), "run store: upgrading the file from layout 1 to 2 (run owners)");
                let tx = conn.transaction().map_err(sqlite)?;
                tx.execute_batch(MIGRATE_1_TO_2).map_err(sqlite)?;
                tx.commit().map_err(sqlite)?;
            }
            SCHEMA_VERSION => {}
            found => {
                return Err(StoreError::Version {
                    path: path.to_path_buf(),
                    found,
                });
            }
        }
        let restored = restore(&mut conn, retained).map_err(sqlite)?;
        let count = restored.len();
        let (wake, woken) = sync_channel(1);
        let writer = Arc::new(Writer {
            wake,
            tracked: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
        });
        let memory = MemoryStore::new(retention);
        let mut unfinished = Vec::new();
        for read in restored {
            match read {
                ReadBack::Finished(run) => memory.restore(Arc::new(*run)),
                ReadBack::Unfinished(stored, log) => {
                    let (row, written) = (stored.row, log.len() as u64);
                    let created = stored.created();
                    let persister: Arc<dyn Persister> = writer.clone();
                    let run = Arc::new(RunRecord::resumable(
                        stored.id,
                        stored.goal,
                        stored.key,
                        Arc::from(stored.owner),
                        created,
                        log,
                        persister,
                    ));
                    memory.restore(Arc::clone(&run));
                    lock(&writer.tracked).push(Tracked {
                        run: Arc::clone(&run),
                        row: Some(row),
                        written,
                    });
                    unfinished.push(run);
                }
            }
        }
        // Memory keeps the newest within its limits; the file has the rest.
        memory.trim();
        let reader = Connection::open(path).map_err(sqlite)?;

        let checkpoints = Connection::open(path).map_err(sqlite)?;
        let (checkpoint, checkpoint_woken) = sync_channel(1);
        std::thread::Builder::new()
            .name("run-store-checkpoint".into())
            .spawn(move || checkpoint_loop(&checkpoints, &checkpoint_woken))
            .map_err(io)?;
        let thread = {
            let writer = Arc::clone(&writer);
            std::thread::Builder::new()
                .name("run-store".into())
                .spawn(move || write_loop(&mut conn, &writer, &woken, &checkpoint, retained))
                .map_err(io)?
        };
        info!(path = %path.display(), runs = count, "run store opened");
        Ok(Arc::new(Self {
            memory,
            reader: Mutex::new(reader),
            writer,
            thread: Mutex::new(Some(thread)),
            unfinished: Mutex::new(Some(unfinished)),
            _lock: lock_file,
        }))
    }

    /// Writes what is left and stops the writer thread. Blocks until it
    /// has; call it once the server has stopped (runs finished or
    /// canceled), from a blocking context.
    pub fn close(&self) {
        let Some(thread) = lock(&self.thread).take() else {
            return;
        };
        self.writer.stopping.store(true, Ordering::Release);
        // A full channel means a wake-up is pending; the writer reads
        // `stopping` after receiving it.
        let _ = self.writer.wake.try_send(());
        if thread.join().is_err() {
            error!("the run store's writer thread panicked");
        }
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.close();
    }
}

#[async_trait::async_trait]
impl RunStore for SqliteStore {
    fn new_run(&self, goal: String, idempotency_key: String, owner: Arc<str>) -> RunRecord {
        let persister: Arc<dyn Persister> = self.writer.clone();
        RunRecord::persisted(goal, idempotency_key, owner, persister)
    }

    async fn insert(&self, run: Arc<RunRecord>) -> Result<Arc<RunRecord>, MeshError> {
        let stored = self.memory.insert(Arc::clone(&run));
        if Arc::ptr_eq(&stored, &run) {
            lock(&self.writer.tracked).push(Tracked {
                run,
                row: None,
                written: 0,
            });
        }
        Ok(stored)
    }

    async fn get(&self, id: &str) -> Result<Option<Arc<RunRecord>>, MeshError> {
        if let Some(run) = self.memory.get(id) {
            return Ok(Some(run));
        }
        // Only runs memory let go of are looked for in the file; they are
        // read for the caller and not kept.
        if self.memory.evicted(id).is_none() {
            return Ok(None);
        }
        match load(&lock(&self.reader), id) {
            Ok(run) => Ok(run.map(Arc::new)),
            Err(e) => {
                error!(run_id = id, error = %e, "run store: reading a run back failed");
                Ok(None)
            }
        }
    }

    async fn by_key(&self, key: &str) -> Result<Option<Arc<RunRecord>>, MeshError> {
        Ok(self.memory.by_key(key))
    }

    async fn list(
        &self,
        limit: usize,
        owner: Option<&str>,
        states: &[RunState],
    ) -> Result<Vec<RunSummary>, MeshError> {
        Ok(summaries(&self.memory.list(limit, owner, states)))
    }

    fn finished(&self, run: &RunRecord) {
        self.memory.finished(run);
    }

    async fn evicted(&self, id: &str) -> Result<Option<Evicted>, MeshError> {
        Ok(self.memory.evicted(id))
    }

    fn local(&self) -> Vec<Arc<RunRecord>> {
        self.memory.all()
    }

    fn unfinished(&self) -> Option<mpsc::UnboundedReceiver<Arc<RunRecord>>> {
        let runs = lock(&self.unfinished).take()?;
        let (tx, rx) = mpsc::unbounded_channel();
        for run in runs {
            let _ = tx.send(run);
        }
        Some(rx)
    }

    fn durable(&self) -> bool {
        true
    }
}

/// The `runs` columns [`StoredRun::from_row`] reads, in its order.
const RUN_COLUMNS: &str = "row, id, goal, idempotency_key, created_ms, finished, owner";

/// One stored run as read back.
struct StoredRun {
    row: i64,
    id: String,
    goal: String,
    key: String,
    created_ms: i64,
    finished: bool,
    owner: String,
}

impl StoredRun {
    /// A row of `SELECT {RUN_COLUMNS} FROM runs`.
    fn from_row(r: &rusqlite::Row<'_>) -> Result<Self, rusqlite::Error> {
        Ok(Self {
            row: r.get(0)?,
            id: r.get(1)?,
            goal: r.get(2)?,
            key: r.get(3)?,
            created_ms: r.get(4)?,
            finished: r.get(5)?,
            owner: r.get(6)?,
        })
    }

    /// When the run was accepted (stored as milliseconds since the Unix
    /// epoch).
    fn created(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(u64::try_from(self.created_ms).unwrap_or(0))
    }

    /// The run as memory holds it, with its events `log`.
    fn into_record(self, log: Vec<RunEvent>) -> RunRecord {
        let created = self.created();
        RunRecord::restored(
            self.id,
            self.goal,
            self.key,
            Arc::from(self.owner),
            created,
            log,
        )
    }
}

/// A run read back from the file.
enum ReadBack {
    /// It finished: served as it was.
    Finished(Box<RunRecord>),
    /// It was executing when the process stopped: the engine resumes it.
    Unfinished(StoredRun, Vec<RunEvent>),
}

/// Reads the stored runs back (oldest first), after dropping those beyond
/// retention. A run that never finished is kept open for the engine to
/// resume, unless nothing of it was stored but its row (no plan): that one
/// is finished as interrupted.
fn restore(conn: &mut Connection, retained: usize) -> Result<Vec<ReadBack>, rusqlite::Error> {
    let tx = conn.transaction()?;
    retire(&tx, retained)?;
    let stored = tx
        .prepare(&format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY row"))?
        .query_map([], StoredRun::from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    let mut runs = Vec::with_capacity(stored.len());
    for run in stored {
        let mut log = read_events(&tx, &run)?;
        let ended = matches!(
            log.last().and_then(|e| e.event.as_ref()),
            Some(run_event::Event::Finished(_))
        );
        if !ended && !log.is_empty() {
            info!(run_id = %run.id, events = log.len(), "run store: the run was executing when the orchestrator stopped; it will be resumed");
            runs.push(ReadBack::Unfinished(run, log));
            continue;
        }
        if !ended {
            let final_event = RunEvent {
                run_id: run.id.clone(),
                seq: log.len() as u64 + 1,
                time: Some(SystemTime::now().into()),
                event: Some(run_event::Event::Finished(events::run_failed(
                    ErrorReason::Interrupted,
                    INTERRUPTED,
                ))),
            };
            insert_event(&tx, run.row, &final_event)?;
            log.push(final_event);
            warn!(run_id = %run.id, "run store: the orchestrator stopped before the run's plan was stored; ended as INTERRUPTED");
        }
        if !ended || !run.finished {
            tx.prepare_cached("UPDATE runs SET finished = 1 WHERE row = ?1")?
                .execute([run.row])?;
        }
        runs.push(ReadBack::Finished(Box::new(run.into_record(log))));
    }
    tx.commit()?;
    Ok(runs)
}

/// Run `id` as the file holds it (a finished run memory let go of), its
/// events up to the first that cannot be read.
fn load(conn: &Connection, id: &str) -> Result<Option<RunRecord>, rusqlite::Error> {
    let Some(run) = conn
        .prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"))?
        .query_row([id], StoredRun::from_row)
        .optional()?
    else {
        return Ok(None);
    };
    // An unreadable event is cut off when the store next opens the file.
    let (log, _) = stored_events(conn, &run)?;
    Ok(Some(run.into_record(log)))
}

/// The events of `run`, in order, up to the first one that cannot be read
/// or is out of sequence, and that one's seq.
fn stored_events(
    conn: &Connection,
    run: &StoredRun,
) -> Result<(Vec<RunEvent>, Option<i64>), rusqlite::Error> {
    let rows = conn
        .prepare_cached("SELECT seq, event FROM events WHERE run = ?1 ORDER BY seq")?
        .query_map([run.row], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut log: Vec<RunEvent> = Vec::with_capacity(rows.len());
    for (seq, body) in rows {
        let expected = log.len() as u64 + 1;
        match RunEvent::decode(body.as_slice()) {
            Ok(ev)
                if ev.seq == expected
                    && ev.run_id == run.id
                    && u64::try_from(seq) == Ok(expected) =>
            {
                log.push(ev);
            }
            _ => return Ok((log, Some(seq))),
        }
    }
    Ok((log, None))
}

/// The events of `run` up to the first one that cannot be read or is out
/// of sequence; that one and those after it are deleted.
fn read_events(tx: &Transaction<'_>, run: &StoredRun) -> Result<Vec<RunEvent>, rusqlite::Error> {
    let (log, bad) = stored_events(tx, run)?;
    if let Some(seq) = bad {
        warn!(run_id = %run.id, seq, "run store: unreadable or out-of-order event; the run is read up to the event before it");
        tx.prepare_cached("DELETE FROM events WHERE run = ?1 AND seq >= ?2")?
            .execute(params![run.row, seq])?;
    }
    Ok(log)
}

fn insert_event(tx: &Transaction<'_>, row: i64, ev: &RunEvent) -> Result<(), rusqlite::Error> {
    tx.prepare_cached("INSERT INTO events (run, seq, event) VALUES (?1, ?2, ?3)")?
        .execute(params![
            row,
            i64::try_from(ev.seq).unwrap_or(i64::MAX),
            ev.encode_to_vec()
        ])?;
    Ok(())
}

/// Drops the oldest finished runs (and their events) beyond the newest
/// `retained`; a run still executing is never dropped.
fn retire(tx: &Transaction<'_>, retained: usize) -> Result<usize, rusqlite::Error> {
    // Rows are numbered densely in admission order.
    let keep = i64::try_from(retained).unwrap_or(i64::MAX);
    tx.prepare_cached(
        "DELETE FROM runs WHERE finished = 1 AND row <= (SELECT max(row) FROM runs) - ?1",
    )?
    .execute([keep])
}

/// The writer thread: on every wake-up, writes each tracked run's new
/// events in one transaction, then lets clients see them.
fn write_loop(
    conn: &mut Connection,
    writer: &Writer,
    woken: &Receiver<()>,
    checkpoint: &SyncSender<()>,
    retained: usize,
) {
    let mut commits = 0_u32;
    loop {
        // `writer` holds the sender, so this only ends by `stopping`.
        if woken.recv().is_err() {
            return;
        }
        let stopping = writer.stopping.load(Ordering::Acquire);
        let mut runs = lock(&writer.tracked).clone();
        if !runs.is_empty() {
            match write_batch(conn, &mut runs, retained) {
                Ok(closed) => {
                    let mut tracked = lock(&writer.tracked);
                    for t in &runs {
                        t.run.log.publish(t.written);
                    }
                    // Runs added meanwhile stay; the others take their new
                    // cursors, and finished ones go.
                    tracked.retain_mut(|t| {
                        match runs.iter().find(|r| Arc::ptr_eq(&r.run, &t.run)) {
                            Some(r) => {
                                t.row = r.row;
                                t.written = r.written;
                                !closed.iter().any(|c| Arc::ptr_eq(c, &t.run))
                            }
                            None => true,
                        }
                    });
                }
                Err(e) => {
                    // The runs go on in memory; their clients must not wait
                    // for a write that is not coming.
                    error!(error = %e, runs = runs.len(), "run store: writing failed; these runs continue without being stored");
                    for t in &runs {
                        t.run.log.ungate();
                    }
                    lock(&writer.tracked)
                        .retain(|t| !runs.iter().any(|r| Arc::ptr_eq(&r.run, &t.run)));
                }
            }
            commits += 1;
            if commits >= CHECKPOINT_EVERY {
                commits = 0;
                let _ = checkpoint.try_send(());
            }
        }
        if stopping {
            // Leave a compact file behind: the WAL copied in and emptied.
            if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
                warn!(error = %e, "run store: final checkpoint failed");
            }
            return;
        }
    }
}

/// Writes the events of `runs` past their cursors, giving new runs their
/// rows; returns the runs now fully stored.
fn write_batch(
    conn: &mut Connection,
    runs: &mut [Tracked],
    retained: usize,
) -> Result<Vec<Arc<RunRecord>>, rusqlite::Error> {
    let started = std::time::Instant::now();
    let tx = conn.transaction()?;
    let mut closed = Vec::new();
    for t in runs.iter_mut() {
        let run = &t.run;
        // Read `closed` first: once closed, the snapshot holds every event.
        let is_closed = run.log.is_closed();
        let row = match t.row {
            Some(row) => row,
            None => {
                let created_ms = run
                    .created
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                tx.prepare_cached(
                    "INSERT INTO runs (id, goal, idempotency_key, created_ms, owner) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![run.id, run.goal, run.idempotency_key, created_ms, &*run.owner])?;
                tx.last_insert_rowid()
            }
        };
        t.row = Some(row);
        let events = run.log.snapshot_after(t.written);
        for ev in &events {
            insert_event(&tx, row, ev)?;
        }
        t.written += events.len() as u64;
        if is_closed {
            tx.prepare_cached("UPDATE runs SET finished = 1 WHERE row = ?1")?
                .execute([row])?;
            closed.push(Arc::clone(run));
        }
    }
    if !closed.is_empty() {
        retire(&tx, retained)?;
    }
    tx.commit()?;
    crate::metrics::metrics()
        .store_commit
        .observe(started.elapsed().as_secs_f64());
    Ok(closed)
}

/// The checkpoint thread: copies the WAL into the database file when the
/// writer asks, without blocking the writer (PASSIVE).
fn checkpoint_loop(conn: &Connection, woken: &Receiver<()>) {
    // Ends when the writer thread (the only sender) is gone.
    while woken.recv().is_ok() {
        if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE);") {
            warn!(error = %e, "run store: checkpoint failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentmesh_proto::v1::{RunFinished, RunState};
    use futures_util::StreamExt;

    fn completed() -> RunFinished {
        RunFinished {
            state: RunState::Completed.into(),
            ..RunFinished::default()
        }
    }

    /// The runs the store hands out to resume.
    fn taken(store: &SqliteStore) -> Vec<Arc<RunRecord>> {
        let mut rx = store.unfinished().unwrap();
        let mut runs = Vec::new();
        while let Ok(run) = rx.try_recv() {
            runs.push(run);
        }
        runs
    }

    async fn finish(store: &SqliteStore, key: &str) -> Arc<RunRecord> {
        let run = store
            .insert(Arc::new(store.new_run(
                "goal".into(),
                key.into(),
                Arc::from(""),
            )))
            .await
            .unwrap();
        run.append(run_event::Event::Planned(Default::default()));
        run.finish(completed());
        // A follower ends once every event is written and published.
        let seen: Vec<Arc<RunEvent>> = run.log.follow(0).collect().await;
        assert_eq!(seen.len(), 2);
        store.finished(&run);
        run
    }

    #[tokio::test]
    async fn runs_outlive_the_store_and_unfinished_ones_are_handed_out_to_resume() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.db");
        let (done, running) = {
            let store = SqliteStore::open(&path, Retention::runs(10)).unwrap();
            let done = finish(&store, "k1").await;
            let running = store
                .insert(Arc::new(store.new_run(
                    "g2".into(),
                    "k2".into(),
                    Arc::from("alice"),
                )))
                .await
                .unwrap();
            running.append(run_event::Event::Planned(Default::default()));
            tokio::time::timeout(Duration::from_secs(5), async {
                while running.log.visible_len() < 1 {
                    tokio::task::yield_now().await;
                }
            })
            .await
            .unwrap();
            (done.id.clone(), running.id.clone())
        };
        // Dropped without finishing `running`, as a killed process would.
        let store = SqliteStore::open(&path, Retention::runs(10)).unwrap();
        let back = store.get(&done).await.unwrap().unwrap();
        assert_eq!(back.state(), RunState::Completed);
        assert_eq!(back.log.len(), 2);
        let again = store
            .insert(Arc::new(store.new_run(
                "goal".into(),
                "k1".into(),
                Arc::from(""),
            )))
            .await
            .unwrap();
        assert_eq!(again.id, done, "the idempotency key still names the run");

        // The unfinished run is open, handed out once, and what is appended
        // to it is stored and published as for a new run.
        let open = taken(&store);
        assert_eq!(open.len(), 1);
        assert!(store.unfinished().is_none(), "handed out once");
        let cut = &open[0];
        assert_eq!(cut.id, running);
        assert!(Arc::ptr_eq(
            cut,
            &store.get(&running).await.unwrap().unwrap()
        ));
        assert_eq!((&*cut.owner, cut.goal.as_str()), ("alice", "g2"));
        assert_eq!(
            store.by_key("k2").await.unwrap().map(|r| r.id.clone()),
            Some(running.clone())
        );
        assert_eq!(cut.state(), RunState::Running);
        assert_eq!(cut.log.visible_len(), 1);
        cut.append(run_event::Event::Resumed(Default::default()));
        cut.finish(completed());
        let seen: Vec<Arc<RunEvent>> = cut.log.follow(0).collect().await;
        assert_eq!(seen.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
        store.finished(cut);
        drop(open);
        drop(store);
        let store = SqliteStore::open(&path, Retention::runs(10)).unwrap();
        assert!(taken(&store).is_empty());
        let stored = store.get(&running).await.unwrap().unwrap();
        assert_eq!(stored.state(), RunState::Completed);
        assert_eq!(
            stored.log.len(),
            3,
            "the events after the restart were stored"
        );
        assert_eq!(store.list(10, None, &[]).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_run_without_a_stored_plan_ends_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            conn.execute(
                "INSERT INTO runs (id, goal, idempotency_key, created_ms) VALUES ('bare', 'g', '', 0)",
                [],
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path, Retention::runs(10)).unwrap();
        assert!(taken(&store).is_empty());
        let (f, ev) = store
            .get("bare")
            .await
            .unwrap()
            .unwrap()
            .finished()
            .unwrap();
        assert_eq!(f.reason, "INTERRUPTED");
        assert_eq!(ev.seq, 1);
    }

    #[tokio::test]
    async fn a_layout_1_file_is_upgraded_and_its_runs_belong_to_no_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.db");
        {
            // The layout before owners, as an earlier orchestrator wrote it.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE runs (row INTEGER PRIMARY KEY, id TEXT NOT NULL, goal TEXT NOT NULL,
                     idempotency_key TEXT NOT NULL, created_ms INTEGER NOT NULL,
                     finished INTEGER NOT NULL DEFAULT 0);
                 CREATE TABLE events (run INTEGER NOT NULL REFERENCES runs(row) ON DELETE CASCADE,
                     seq INTEGER NOT NULL, event BLOB NOT NULL, PRIMARY KEY (run, seq)) WITHOUT ROWID;
                 INSERT INTO runs (id, goal, idempotency_key, created_ms) VALUES ('old', 'g', 'k', 0);
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path, Retention::runs(10)).unwrap();
        let old = store.get("old").await.unwrap().unwrap();
        assert_eq!(&*old.owner, "");
        assert_eq!(
            old.finished().map(|(f, _)| f.reason),
            Some("INTERRUPTED".into())
        );
        let mine = finish(&store, "k2").await;
        drop(store);
        let version: i64 = Connection::open(&path)
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let store = SqliteStore::open(&path, Retention::runs(10)).unwrap();
        assert!(store.get(&mine.id).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn owners_are_stored_and_scope_idempotency_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.db");
        let id = {
            let store = SqliteStore::open(&path, Retention::runs(10)).unwrap();
            let key = crate::store::scoped_key("alice", "nightly");
            let run = store
                .insert(Arc::new(store.new_run(
                    "goal".into(),
                    key,
                    Arc::from("alice"),
                )))
                .await
                .unwrap();
            run.append(run_event::Event::Planned(Default::default()));
            run.finish(completed());
            let _: Vec<Arc<RunEvent>> = run.log.follow(0).collect().await;
            store.finished(&run);
            run.id.clone()
        };
        let store = SqliteStore::open(&path, Retention::runs(10)).unwrap();
        assert_eq!(
            store.get(&id).await.unwrap().map(|r| r.owner.to_string()),
            Some("alice".into())
        );
        let alices = crate::store::scoped_key("alice", "nightly");
        assert_eq!(
            store.by_key(&alices).await.unwrap().map(|r| r.id.clone()),
            Some(id.clone())
        );
        let bobs = crate::store::scoped_key("bob", "nightly");
        assert!(
            store.by_key(&bobs).await.unwrap().is_none(),
            "keys are per owner"
        );
        assert_eq!(store.list(10, Some("alice"), &[]).await.unwrap().len(), 1);
        assert!(store.list(10, Some("bob"), &[]).await.unwrap().is_empty());
    }
}
