//! Runs and where they are kept.
//!
//! A run *is* its ordered, append-only list of [`RunEvent`]s: `Run` and
//! `WatchRun` stream it, `GetRun` and `ListRuns` read it. [`RunStore`] is the
//! seam for storage: [`MemoryStore`] keeps runs in memory with a retention
//! bound; [`sqlite::SqliteStore`] adds an SQLite file under it, so that runs
//! outlive the process; [`postgres::PostgresStore`] keeps them in a
//! PostgreSQL database shared by several orchestrator replicas, which own
//! runs under leases and take over each other's.

pub mod postgres;
pub mod sqlite;
pub mod waits;

use std::collections::{HashMap, VecDeque};

use agentmesh_proto::prost::Message;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use agentmesh_proto::error::MeshError;
use agentmesh_proto::v1::{RunEvent, RunFinished, RunPlanned, RunState, RunSummary, run_event};
use agentmesh_runtime::event_log::EventLog;
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One run: identity, its event log, and its stop switch.
pub struct RunRecord {
    /// Server-assigned id.
    pub id: String,
    /// The client's goal (a label when the plan was explicit).
    pub goal: String,
    /// The idempotency key it is stored under, if any: the client's key,
    /// scoped to the owner ([`scoped_key`]).
    pub idempotency_key: String,
    /// The principal that started it ("" when the API is not
    /// authenticated).
    pub owner: Arc<str>,
    /// When the run was accepted.
    pub created: SystemTime,
    /// The events.
    pub log: Arc<EventLog<Arc<RunEvent>>>,
    /// Cancelled to stop every in-flight step (cancel, deadline, fail-fast).
    pub stop: CancellationToken,
    stop_cause: OnceLock<MeshError>,
    fingerprint: OnceLock<String>,
    progress_events: AtomicU64,
    /// Told about every appended event when the run is stored durably.
    persister: Option<Arc<dyn Persister>>,
    /// Language-model tokens the run used, and the most it may.
    tokens: AtomicU64,
    token_budget: OnceLock<u64>,
    /// Encoded size of its events (what retention by bytes counts).
    bytes: AtomicU64,
    /// Held until the run finishes (its owner's active-run slot).
    held: Mutex<Option<Box<dyn Send>>>,
    /// Cancelled when the run is left for another orchestrator on a
    /// durable store: nothing more is recorded here.
    suspended: CancellationToken,
    /// Steps waiting for people, and the answers given.
    pub waits: waits::WaitBook,
}

/// Writes a run's events somewhere durable. The run's log is then gated:
/// the persister publishes each event once it is stored, and only then do
/// clients see it.
pub trait Persister: Send + Sync {
    /// An event was appended to a run's log.
    fn appended(&self);
}

impl RunRecord {
    /// A new, empty run of no one (an API without authentication).
    pub fn new(goal: String, idempotency_key: String) -> Self {
        Self::owned(goal, idempotency_key, Arc::from(""))
    }

    /// A new, empty run started by `owner`.
    pub fn owned(goal: String, idempotency_key: String, owner: Arc<str>) -> Self {
        Self::with(
            new_run_id(),
            goal,
            idempotency_key,
            owner,
            SystemTime::now(),
            EventLog::new(),
            None,
        )
    }

    /// A new, empty run whose events clients see only once `persister`
    /// has stored them.
    pub fn persisted(
        goal: String,
        idempotency_key: String,
        owner: Arc<str>,
        persister: Arc<dyn Persister>,
    ) -> Self {
        Self::with(
            new_run_id(),
            goal,
            idempotency_key,
            owner,
            SystemTime::now(),
            EventLog::gated(),
            Some(persister),
        )
    }

    /// A run read back from storage, holding `events` (closed if the last
    /// one is the final event). Its events are stored already, so its log
    /// is not gated.
    pub fn restored(
        id: String,
        goal: String,
        idempotency_key: String,
        owner: Arc<str>,
        created: SystemTime,
        events: Vec<RunEvent>,
    ) -> Self {
        Self::stored(id, goal, idempotency_key, owner, created, events, None)
    }

    /// An unfinished run read back from storage, holding `events` (all
    /// stored): its log stays open, and what is appended next is stored
    /// by `persister` before clients see it, as for a new run.
    pub fn resumable(
        id: String,
        goal: String,
        idempotency_key: String,
        owner: Arc<str>,
        created: SystemTime,
        events: Vec<RunEvent>,
        persister: Arc<dyn Persister>,
    ) -> Self {
        Self::stored(
            id,
            goal,
            idempotency_key,
            owner,
            created,
            events,
            Some(persister),
        )
    }

    /// A run holding stored `events`: written on by `persister` (its log
    /// open and gated past them), or as read (closed if it finished).
    fn stored(
        id: String,
        goal: String,
        idempotency_key: String,
        owner: Arc<str>,
        created: SystemTime,
        events: Vec<RunEvent>,
        persister: Option<Arc<dyn Persister>>,
    ) -> Self {
        let fingerprint = match events.first().and_then(|e| e.event.as_ref()) {
            Some(run_event::Event::Planned(p)) => p.request_fingerprint.clone(),
            _ => String::new(),
        };
        let bytes: usize = events.iter().map(Message::encoded_len).sum();
        let events: Vec<Arc<RunEvent>> = events.into_iter().map(Arc::new).collect();
        let waits = waits::WaitBook::default();
        for ev in &events {
            waits.observe(ev);
        }
        let log = if persister.is_some() {
            EventLog::resumed(events)
        } else {
            let closed = matches!(
                events.last().and_then(|e| e.event.as_ref()),
                Some(run_event::Event::Finished(_))
            );
            EventLog::restored(events, closed)
        };
        let mut run = Self::with(id, goal, idempotency_key, owner, created, log, persister);
        run.waits = waits;
        run.bytes.store(bytes as u64, Ordering::Relaxed);
        if !fingerprint.is_empty() {
            run.set_fingerprint(fingerprint);
        }
        run
    }

    /// Whether this process writes the run's events (false for a run
    /// another replica drives, followed here from a shared store).
    pub fn driven_here(&self) -> bool {
        self.persister.is_some()
    }

    /// Records the fingerprint of the request that made the run (once).
    pub fn set_fingerprint(&self, fingerprint: String) {
        let _ = self.fingerprint.set(fingerprint);
    }

    /// The fingerprint of the request that made the run, if known (runs
    /// stored before fingerprints were kept have none).
    pub fn fingerprint(&self) -> Option<&str> {
        self.fingerprint.get().map(String::as_str)
    }

    fn with(
        id: String,
        goal: String,
        idempotency_key: String,
        owner: Arc<str>,
        created: SystemTime,
        log: Arc<EventLog<Arc<RunEvent>>>,
        persister: Option<Arc<dyn Persister>>,
    ) -> Self {
        Self {
            id,
            goal,
            idempotency_key,
            owner,
            created,
            log,
            stop: CancellationToken::new(),
            stop_cause: OnceLock::new(),
            fingerprint: OnceLock::new(),
            progress_events: AtomicU64::new(0),
            persister,
            tokens: AtomicU64::new(0),
            token_budget: OnceLock::new(),
            bytes: AtomicU64::new(0),
            held: Mutex::new(None),
            suspended: CancellationToken::new(),
            waits: waits::WaitBook::default(),
        }
    }

    /// The encoded size of the run's events so far, bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Sets the run's token budget and what planning already used.
    pub fn set_token_budget(&self, budget: Option<u32>, planning: u32) {
        self.tokens.store(u64::from(planning), Ordering::Relaxed);
        if let Some(b) = budget {
            let _ = self.token_budget.set(u64::from(b));
        }
    }

    /// Counts `used` tokens; the error says how far over the budget the
    /// run now is.
    pub fn spend_tokens(&self, used: u32) -> Result<u64, (u64, u64)> {
        let total = self.tokens.fetch_add(u64::from(used), Ordering::Relaxed) + u64::from(used);
        match self.token_budget.get() {
            Some(&budget) if total > budget => Err((total, budget)),
            _ => Ok(total),
        }
    }

    /// Appends an event; returns its sequence number (0 if the run has
    /// already finished and the event was not recorded).
    pub fn append(&self, event: run_event::Event) -> u64 {
        self.append_inner(event, false)
    }

    /// Appends a progress event unless the run already holds `cap` of them.
    pub fn append_progress(&self, event: run_event::Event, cap: u64) -> u64 {
        if self.progress_events.fetch_add(1, Ordering::Relaxed) >= cap {
            return 0;
        }
        self.append_inner(event, false)
    }

    /// Appends the final event and closes the log.
    pub fn finish(&self, finished: RunFinished) -> u64 {
        // What the run held is let go before anyone can see it finished,
        // and again after, for a hold that raced with the end.
        drop(self.held.lock().take());
        let seq = self.append_inner(run_event::Event::Finished(finished), true);
        drop(self.held.lock().take());
        seq
    }

    /// Keeps `guard` until the run finishes (at once if it has).
    pub fn hold_until_finished(&self, guard: impl Send + 'static) {
        *self.held.lock() = Some(Box::new(guard));
        if self.log.is_closed() {
            drop(self.held.lock().take());
        }
    }

    /// Stops the run without ending it, for the next orchestrator on a
    /// durable store to resume: from now on nothing more is recorded (the
    /// steps it stops fail no step in its log, and it gets no final event).
    pub fn suspend(&self, cause: MeshError) {
        self.suspended.cancel();
        self.stop(cause);
    }

    /// Whether [`RunRecord::suspend`] was called.
    pub fn is_suspended(&self) -> bool {
        self.suspended.is_cancelled()
    }

    /// Resolves once the run is suspended (never, for most runs); owns
    /// what it waits on.
    pub fn suspended(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.suspended.clone().cancelled_owned()
    }

    fn append_inner(&self, event: run_event::Event, close: bool) -> u64 {
        if self.is_suspended() {
            return 0;
        }
        // The event's payload, plus its run id, number and time.
        let size = event.encoded_len() + self.id.len() + EVENT_FRAME_BYTES;
        let seq = self
            .log
            .append_with(close, |seq| {
                let ev = Arc::new(RunEvent {
                    run_id: self.id.clone(),
                    seq,
                    time: Some(SystemTime::now().into()),
                    event: Some(event),
                });
                self.waits.observe(&ev);
                ev
            })
            .unwrap_or(0);
        if seq != 0 {
            self.bytes.fetch_add(size as u64, Ordering::Relaxed);
            if let Some(persister) = &self.persister {
                persister.appended();
            }
        }
        seq
    }

    /// Stops the run for `cause` (the first cause wins).
    pub fn stop(&self, cause: MeshError) {
        let _ = self.stop_cause.set(cause);
        self.stop.cancel();
    }

    /// Why the run was stopped, if it was.
    pub fn stop_cause(&self) -> Option<&MeshError> {
        self.stop_cause.get()
    }

    /// The plan event (the first event).
    pub fn planned(&self) -> Option<RunPlanned> {
        if self.log.visible_len() == 0 {
            return None;
        }
        match &self.log.get(1)?.event {
            Some(run_event::Event::Planned(p)) => Some(p.clone()),
            _ => None,
        }
    }

    /// The final event, once the run has finished and clients may see it
    /// (in a durable store: once it is stored).
    pub fn finished(&self) -> Option<(RunFinished, Arc<RunEvent>)> {
        let last = self.final_event()?;
        match &last.event {
            Some(run_event::Event::Finished(f)) => Some((f.clone(), last)),
            _ => None,
        }
    }

    /// The final event, shared (no copy of the report).
    fn final_event(&self) -> Option<Arc<RunEvent>> {
        if !self.log.is_closed() || self.log.visible_len() < self.log.len() {
            return None;
        }
        self.log.last()
    }

    /// The run's state as read from its log.
    pub fn state(&self) -> RunState {
        self.state_at(self.final_event().as_deref())
    }

    /// The state given the run's final event, if it has one.
    fn state_at(&self, last: Option<&RunEvent>) -> RunState {
        match last {
            Some(RunEvent {
                event: Some(run_event::Event::Finished(f)),
                ..
            }) => f.state(),
            _ if self.log.is_empty() => RunState::Pending,
            _ if self.waits.is_waiting() => RunState::Waiting,
            _ => RunState::Running,
        }
    }

    /// The run as `ListRuns` shows it.
    pub fn summary(&self) -> RunSummary {
        let last = self.final_event();
        RunSummary {
            run_id: self.id.clone(),
            goal: self.goal.clone(),
            state: self.state_at(last.as_deref()).into(),
            created: Some(self.created.into()),
            finished: last.and_then(|ev| ev.time),
            last_seq: self.log.visible_len(),
            owner: self.owner.to_string(),
            // Empty once it finished: the end closes every wait.
            waiting: self.waits.waiting(),
        }
    }
}

/// The key a run is stored under for the client's idempotency key `key`:
/// keys are per owner, so one principal's key never names (or reveals)
/// another's run. Empty when `key` is.
pub fn scoped_key(owner: &str, key: &str) -> String {
    if key.is_empty() || owner.is_empty() {
        key.to_string()
    } else {
        // NUL cannot appear in a principal's name from a token or a JWT
        // claim that means the same, so two owners never share a key.
        format!("{owner}\u{0}{key}")
    }
}

/// A run dropped from memory under a retention limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evicted {
    /// The limit that dropped it.
    pub limit: &'static str,
    /// Its owner.
    pub owner: Arc<str>,
}

/// A new run id: a random UUID, hyphenated.
fn new_run_id() -> String {
    uuid::Uuid::new_v4()
        .hyphenated()
        .encode_lower(&mut uuid::Uuid::encode_buffer())
        .to_owned()
}

/// Where runs are kept. Reads and inserts may go to a shared database:
/// they are async and fail with `STORE_UNAVAILABLE` when it cannot answer.
#[async_trait::async_trait]
pub trait RunStore: Send + Sync {
    /// A new, empty run of `owner` to pass to [`RunStore::insert`].
    fn new_run(&self, goal: String, idempotency_key: String, owner: Arc<str>) -> RunRecord {
        RunRecord::owned(goal, idempotency_key, owner)
    }
    /// Adds `run`, or returns the run already stored under its idempotency
    /// key (then `run` is not stored).
    async fn insert(&self, run: Arc<RunRecord>) -> Result<Arc<RunRecord>, MeshError>;
    /// The run `id`.
    async fn get(&self, id: &str) -> Result<Option<Arc<RunRecord>>, MeshError>;
    /// The run stored under idempotency key `key`.
    async fn by_key(&self, key: &str) -> Result<Option<Arc<RunRecord>>, MeshError>;
    /// Up to `limit` runs, newest first; only `owner`'s when given, only
    /// those in `states` unless it is empty.
    async fn list(
        &self,
        limit: usize,
        owner: Option<&str>,
        states: &[RunState],
    ) -> Result<Vec<RunSummary>, MeshError>;
    /// `run` has finished (its last event is stored). The store may now
    /// drop older finished runs to stay within its retention bound; this is
    /// called after the run's final event is out, off every request path.
    fn finished(&self, run: &RunRecord);
    /// If run `id` was dropped under a retention limit, which one, and
    /// whose run it was.
    async fn evicted(&self, id: &str) -> Result<Option<Evicted>, MeshError>;
    /// The runs this process holds in memory (those it drives among them).
    fn local(&self) -> Vec<Arc<RunRecord>>;
    /// Asks the orchestrator driving `run` (another replica) to cancel it;
    /// false when no other process drives it (then the caller cancels it
    /// here).
    async fn cancel_elsewhere(&self, run: &RunRecord, reason: &str) -> Result<bool, MeshError> {
        let _ = (run, reason);
        Ok(false)
    }
    /// The runs for this orchestrator to resume: those read back unfinished
    /// at start, and, on a shared store, those taken over from replicas
    /// that lost their leases. Handed out once (None after); none in
    /// memory.
    fn unfinished(&self) -> Option<mpsc::UnboundedReceiver<Arc<RunRecord>>> {
        None
    }
    /// Whether runs outlive the process (then a shutdown leaves executing
    /// runs to the next process instead of canceling them).
    fn durable(&self) -> bool {
        false
    }
}

/// Bytes of an event beyond its payload and run id: seq, time, framing.
const EVENT_FRAME_BYTES: usize = 24;

/// Evicted run ids remembered, so that asking for one says it was evicted
/// (about 1 MiB of ids).
const EVICTED_REMEMBERED: usize = 16_384;

/// How many finished runs a store keeps in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Most runs kept (`store.retained_runs`).
    pub runs: usize,
    /// Most encoded bytes of finished runs' events kept
    /// (`store.retained_bytes`).
    pub bytes: u64,
}

impl Retention {
    /// A retention of `runs` runs and no byte limit.
    pub fn runs(runs: usize) -> Self {
        Self {
            runs,
            bytes: u64::MAX,
        }
    }
}

/// In-memory runs; when a run finishes and more than `retention.runs`
/// runs, or more than `retention.bytes` bytes of finished runs' events,
/// are kept, the oldest finished ones are dropped. Running runs are never
/// dropped (admission bounds their number), so at most
/// `retention.runs + max_active_runs` runs are held. Dropped runs' ids are
/// remembered (the latest [`EVICTED_REMEMBERED`]) so that asking for one
/// says why it is gone.
pub struct MemoryStore {
    inner: Mutex<MemoryInner>,
    retention: Retention,
}

#[derive(Default)]
struct MemoryInner {
    runs: HashMap<String, Arc<RunRecord>>,
    order: VecDeque<String>,
    keys: HashMap<String, String>,
    /// Evicted run id → the limit that evicted it and its owner, oldest
    /// first.
    evicted: HashMap<String, Evicted>,
    evicted_order: VecDeque<String>,
}

impl MemoryStore {
    /// An empty store keeping runs as `retention` says.
    pub fn new(retention: Retention) -> Self {
        Self {
            inner: Mutex::new(MemoryInner::default()),
            retention,
        }
    }

    /// Adds a run read back from storage (oldest first): unlike
    /// [`RunStore::insert`], a later run takes over an idempotency key.
    pub fn restore(&self, run: Arc<RunRecord>) {
        let mut inner = self.lock();
        if !run.idempotency_key.is_empty() {
            inner
                .keys
                .insert(run.idempotency_key.clone(), run.id.clone());
        }
        inner.order.push_back(run.id.clone());
        inner.runs.insert(run.id.clone(), run);
    }

    fn lock(&self) -> MutexGuard<'_, MemoryInner> {
        self.inner.lock()
    }

    /// Drops the oldest finished runs beyond the retention limits (after
    /// [`MemoryStore::restore`]).
    pub fn trim(&self) {
        let evicted = self.lock().evict(self.retention);
        drop(evicted);
    }

    /// The run under idempotency key `key`.
    pub fn by_key(&self, key: &str) -> Option<Arc<RunRecord>> {
        let inner = self.lock();
        inner
            .keys
            .get(key)
            .and_then(|id| inner.runs.get(id))
            .cloned()
    }

    /// Adds `run`, or returns the run already under its idempotency key.
    pub fn insert(&self, run: Arc<RunRecord>) -> Arc<RunRecord> {
        let mut inner = self.lock();
        if !run.idempotency_key.is_empty() {
            if let Some(existing) = inner
                .keys
                .get(&run.idempotency_key)
                .and_then(|id| inner.runs.get(id))
            {
                return Arc::clone(existing);
            }
            inner
                .keys
                .insert(run.idempotency_key.clone(), run.id.clone());
        }
        inner.order.push_back(run.id.clone());
        inner.runs.insert(run.id.clone(), Arc::clone(&run));
        run
    }

    /// A run finished: drops the oldest finished runs beyond retention.
    pub fn finished(&self, _run: &RunRecord) {
        let evicted = self.lock().evict(self.retention);
        // Freed here, outside the lock: a finished run holds every event
        // and output it had.
        drop(evicted);
    }

    /// The run `id`.
    pub fn get(&self, id: &str) -> Option<Arc<RunRecord>> {
        self.lock().runs.get(id).cloned()
    }

    /// Up to `limit` runs, newest first; only `owner`'s when given, only
    /// those in `states` unless it is empty.
    pub fn list(
        &self,
        limit: usize,
        owner: Option<&str>,
        states: &[RunState],
    ) -> Vec<Arc<RunRecord>> {
        let inner = self.lock();
        inner
            .order
            .iter()
            .rev()
            .filter_map(|id| inner.runs.get(id))
            .filter(|r| owner.is_none_or(|o| *r.owner == *o))
            .filter(|r| states.is_empty() || states.contains(&r.state()))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Which limit dropped run `id`, if one did.
    pub fn evicted(&self, id: &str) -> Option<Evicted> {
        self.lock().evicted.get(id).cloned()
    }

    /// Every run held.
    pub fn all(&self) -> Vec<Arc<RunRecord>> {
        self.lock().runs.values().cloned().collect()
    }

    /// Forgets run `id` (another process drives it now).
    pub fn remove(&self, id: &str) -> Option<Arc<RunRecord>> {
        let mut inner = self.lock();
        let run = inner.runs.remove(id)?;
        inner.order.retain(|o| o != id);
        if inner
            .keys
            .get(&run.idempotency_key)
            .is_some_and(|k| k == id)
        {
            inner.keys.remove(&run.idempotency_key);
        }
        Some(run)
    }
}

impl MemoryInner {
    /// Removes the oldest finished runs while more runs or more bytes of
    /// finished runs than `retention` allows are kept, and returns them.
    /// Runs still executing are skipped (admission bounds their number).
    fn evict(&mut self, retention: Retention) -> Vec<Arc<RunRecord>> {
        let mut bytes: u64 = self
            .runs
            .values()
            .filter(|r| r.log.is_closed())
            .map(|r| r.bytes())
            .sum();
        let mut evicted = Vec::new();
        let mut i = 0;
        while i < self.order.len() {
            let limit = if self.runs.len() > retention.runs {
                "store.retained_runs"
            } else if bytes > retention.bytes {
                "store.retained_bytes"
            } else {
                break;
            };
            let finished = self
                .runs
                .get(&self.order[i])
                .is_none_or(|r| r.log.is_closed());
            if !finished {
                i += 1;
                continue;
            }
            if let Some(id) = self.order.remove(i)
                && let Some(run) = self.runs.remove(&id)
            {
                self.keys.remove(&run.idempotency_key);
                bytes = bytes.saturating_sub(run.bytes());
                let owner = Arc::clone(&run.owner);
                self.remember_evicted(id, Evicted { limit, owner });
                evicted.push(run);
            }
        }
        evicted
    }

    fn remember_evicted(&mut self, id: String, evicted: Evicted) {
        self.evicted.insert(id.clone(), evicted);
        self.evicted_order.push_back(id);
        while self.evicted_order.len() > EVICTED_REMEMBERED {
            if let Some(old) = self.evicted_order.pop_front() {
                self.evicted.remove(&old);
            }
        }
    }
}

#[async_trait::async_trait]
impl RunStore for MemoryStore {
    async fn insert(&self, run: Arc<RunRecord>) -> Result<Arc<RunRecord>, MeshError> {
        Ok(MemoryStore::insert(self, run))
    }

    async fn get(&self, id: &str) -> Result<Option<Arc<RunRecord>>, MeshError> {
        Ok(MemoryStore::get(self, id))
    }

    async fn by_key(&self, key: &str) -> Result<Option<Arc<RunRecord>>, MeshError> {
        Ok(MemoryStore::by_key(self, key))
    }

    async fn list(
        &self,
        limit: usize,
        owner: Option<&str>,
        states: &[RunState],
    ) -> Result<Vec<RunSummary>, MeshError> {
        Ok(summaries(&MemoryStore::list(self, limit, owner, states)))
    }

    fn finished(&self, run: &RunRecord) {
        MemoryStore::finished(self, run);
    }

    async fn evicted(&self, id: &str) -> Result<Option<Evicted>, MeshError> {
        Ok(MemoryStore::evicted(self, id))
    }

    fn local(&self) -> Vec<Arc<RunRecord>> {
        self.all()
    }
}

/// The runs as `ListRuns` shows them.
pub fn summaries(runs: &[Arc<RunRecord>]) -> Vec<RunSummary> {
    runs.iter().map(|r| r.summary()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished_run(key: &str) -> Arc<RunRecord> {
        let run = Arc::new(RunRecord::new("g".into(), key.into()));
        run.finish(RunFinished::default());
        run
    }

    #[test]
    fn keeps_at_most_retained_runs_and_never_drops_running_ones() {
        let store = MemoryStore::new(Retention::runs(3));
        let running = store.insert(Arc::new(RunRecord::new("g".into(), String::new())));
        let a = store.insert(finished_run(""));
        store.finished(&a);
        let b = store.insert(finished_run(""));
        store.finished(&b);
        let c = store.insert(finished_run(""));
        assert_eq!(
            store.list(10, None, &[]).len(),
            4,
            "nothing is dropped until a run finishes"
        );
        store.finished(&c);
        assert!(store.get(&running.id).is_some(), "a running run is kept");
        assert!(store.get(&a.id).is_none(), "the oldest finished run goes");
        assert!(store.get(&b.id).is_some() && store.get(&c.id).is_some());
        let listed: Vec<String> = store
            .list(10, None, &[])
            .iter()
            .map(|r| r.id.clone())
            .collect();
        assert_eq!(listed, vec![c.id.clone(), b.id.clone(), running.id.clone()]);
    }

    #[test]
    fn keeps_finished_runs_within_the_byte_limit_and_remembers_the_evicted() {
        let one = finished_run("").bytes();
        assert!(one > 0, "a run's events have a size");
        // Room for two finished runs.
        let store = MemoryStore::new(Retention {
            runs: 100,
            bytes: one * 2 + one / 2,
        });
        let running = store.insert(Arc::new(RunRecord::new("g".into(), String::new())));
        let done: Vec<Arc<RunRecord>> = (0..5)
            .map(|_| {
                let r = store.insert(finished_run(""));
                store.finished(&r);
                r
            })
            .collect();
        assert!(store.get(&running.id).is_some(), "a running run is kept");
        for old in &done[..3] {
            assert!(store.get(&old.id).is_none());
            assert_eq!(
                store.evicted(&old.id).map(|e| e.limit),
                Some("store.retained_bytes")
            );
        }
        for new in &done[3..] {
            assert!(store.get(&new.id).is_some());
            assert_eq!(store.evicted(&new.id).map(|e| e.limit), None);
        }
        assert_eq!(store.evicted("never-existed").map(|e| e.limit), None);
    }

    #[test]
    fn an_idempotency_key_returns_the_first_run() {
        let store = MemoryStore::new(Retention::runs(10));
        let first = store.insert(Arc::new(RunRecord::new("g".into(), "k".into())));
        let second = store.insert(Arc::new(RunRecord::new("g".into(), "k".into())));
        assert_eq!(first.id, second.id);
        assert_eq!(store.list(10, None, &[]).len(), 1);
    }

    #[test]
    fn what_a_run_holds_is_let_go_when_it_finishes() {
        let slot = Arc::new(());
        let run = RunRecord::new("g".into(), String::new());
        run.hold_until_finished(Arc::clone(&slot));
        assert_eq!(Arc::strong_count(&slot), 2, "held while running");
        run.finish(RunFinished::default());
        assert_eq!(Arc::strong_count(&slot), 1, "let go when finished");
        run.hold_until_finished(Arc::clone(&slot));
        assert_eq!(Arc::strong_count(&slot), 1, "a finished run holds nothing");
    }

    #[test]
    fn a_restored_run_knows_the_fingerprint_of_its_request() {
        let planned = RunEvent {
            run_id: "r".into(),
            seq: 1,
            time: None,
            event: Some(run_event::Event::Planned(RunPlanned {
                request_fingerprint: "ab12".into(),
                ..RunPlanned::default()
            })),
        };
        let run = RunRecord::restored(
            "r".into(),
            "g".into(),
            "k".into(),
            Arc::from(""),
            SystemTime::now(),
            vec![planned],
        );
        assert_eq!(run.fingerprint(), Some("ab12"));
        let old = RunRecord::restored(
            "o".into(),
            "g".into(),
            "k".into(),
            Arc::from(""),
            SystemTime::now(),
            vec![],
        );
        assert_eq!(
            old.fingerprint(),
            None,
            "stored before fingerprints were kept"
        );
        let store = MemoryStore::new(Retention::runs(10));
        store.restore(Arc::new(run));
        assert_eq!(store.by_key("k").map(|r| r.id.clone()), Some("r".into()));
        assert!(store.by_key("other").is_none());
    }
}
