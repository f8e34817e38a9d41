//! Task bookkeeping every agent gets for free.
//!
//! [`TaskTable`] admits tasks (draining, idempotency, the concurrency cap),
//! and [`drive`] runs one: it owns the task's sequence numbers, sends
//! SUBMITTED and WORKING, forwards the agent's events, sends heartbeats,
//! enforces cancellation and the deadline, validates the output, and ends the
//! stream with exactly one terminal status.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use agentmesh_proto::error::{ErrorReason, MeshError};
use agentmesh_proto::json::to_struct;
use agentmesh_proto::json::value_to_struct;
use agentmesh_proto::prost::Message as _;
use agentmesh_proto::prost_types::{self, Timestamp};
use agentmesh_proto::v1::{
    ArtifactChunk, Heartbeat, InputAnswer, InputRequest, TaskEvent, TaskFailure, TaskProgress,
    TaskResult, TaskState, TaskStatusUpdate, task_event::Event,
};
use futures_util::FutureExt;
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span, error, info, warn};

use crate::agent::{
    Agent, AgentEvent, JsonObject, OutArtifact, Question, Task, TaskContext, TaskError,
};
use crate::event_log::EventLog;
use crate::schema::{AnswerSchema, SkillSchemas};

/// A task's event log.
pub type TaskLog = EventLog<TaskEvent>;

/// Limits of the task table, from [`crate::config::ServerConfig`].
#[derive(Debug, Clone)]
pub struct TaskLimits {
    /// Tasks running at once; more get RESOURCE_EXHAUSTED.
    pub max_concurrency: usize,
    /// Artifact chunk size in bytes.
    pub chunk_bytes: usize,
    /// Completed tasks remembered for idempotent repeats.
    pub idempotency_entries: usize,
    /// Encoded bytes of the remembered tasks' events.
    pub idempotency_bytes: u64,
    /// How long a completed task is remembered for idempotent repeats.
    pub idempotency_ttl: Duration,
    /// Finished task states remembered for CancelTask.
    pub finished_entries: usize,
}

struct Live {
    cancel: CancellationToken,
    log: Arc<TaskLog>,
    input: Arc<InputSlot>,
}

/// The question a task waits on, if any: filled by its driver when the
/// agent asks, emptied by the answer.
#[derive(Default)]
pub struct InputSlot(Mutex<Option<Pending>>);

/// A question waiting for its answer.
struct Pending {
    input_id: String,
    schema: AnswerSchema,
    answer: oneshot::Sender<JsonObject>,
}

struct Remembered {
    log: Arc<TaskLog>,
    at: Instant,
    /// Encoded size of its events, counted once the task completed.
    bytes: u64,
}

#[derive(Default)]
struct TableState {
    live: HashMap<String, Live>,
    idempotency: HashMap<String, Remembered>,
    idempotency_order: VecDeque<String>,
    /// Sum of the remembered tasks' `bytes`.
    idempotency_bytes: u64,
    finished: HashMap<String, TaskState>,
    finished_order: VecDeque<String>,
}

/// The tasks of one agent server.
pub struct TaskTable {
    limits: TaskLimits,
    permits: Arc<Semaphore>,
    state: Mutex<TableState>,
    shutdown: CancellationToken,
    draining: CancellationToken,
    live_count: watch::Sender<usize>,
}

/// How an admitted ExecuteTask call is answered.
pub enum Admission {
    /// A new task was started; the caller owns it.
    Started {
        /// The task's events.
        log: Arc<TaskLog>,
        /// Cancels the task.
        cancel: CancellationToken,
        /// Keeps the concurrency slot until the driver ends.
        permit: OwnedSemaphorePermit,
        /// Where the task's question waits for its answer.
        input: Arc<InputSlot>,
    },
    /// The idempotency key was seen: follow or replay that task.
    Repeat(Arc<TaskLog>),
}

impl TaskTable {
    /// An empty table.
    pub fn new(limits: TaskLimits) -> Arc<Self> {
        let (live_count, _) = watch::channel(0);
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(limits.max_concurrency.max(1))),
            limits,
            state: Mutex::new(TableState::default()),
            shutdown: CancellationToken::new(),
            draining: CancellationToken::new(),
            live_count,
        })
    }

    fn lock(&self) -> MutexGuard<'_, TableState> {
        self.state.lock()
    }

    /// The table's limits.
    pub fn limits(&self) -> &TaskLimits {
        &self.limits
    }

    /// Admits a task, or says why not.
    pub fn admit(&self, task_id: &str, idempotency_key: &str) -> Result<Admission, MeshError> {
        if self.draining.is_cancelled() {
            return Err(MeshError::new(
                ErrorReason::AgentUnavailable,
                "agent is shutting down; send the task to another replica",
            ));
        }
        let mut state = self.lock();
        if !idempotency_key.is_empty() {
            let ttl = self.limits.idempotency_ttl;
            if let Some(seen) = state.idempotency.get(idempotency_key)
                && seen.at.elapsed() <= ttl
            {
                return Ok(Admission::Repeat(Arc::clone(&seen.log)));
            }
        }
        if task_id.is_empty() {
            return Err(
                MeshError::new(ErrorReason::InvalidInput, "task_id is required")
                    .with_meta("field", "task_id"),
            );
        }
        if state.live.contains_key(task_id) {
            return Err(MeshError::new(
                ErrorReason::InvalidInput,
                format!("task {task_id} is already running; use a new task id per attempt"),
            )
            .with_meta("field", "task_id")
            .with_code(tonic::Code::AlreadyExists));
        }
        let permit = Arc::clone(&self.permits).try_acquire_owned().map_err(|_| {
            MeshError::new(
                ErrorReason::ResourceExhausted,
                format!(
                    "agent is running its maximum of {} tasks; retry later or elsewhere",
                    self.limits.max_concurrency
                ),
            )
            .with_meta("limit", "max_concurrency")
            .with_meta("max_concurrency", self.limits.max_concurrency.to_string())
        })?;
        let log = TaskLog::new();
        let cancel = self.shutdown.child_token();
        let input = Arc::new(InputSlot::default());
        state.live.insert(
            task_id.to_string(),
            Live {
                cancel: cancel.clone(),
                log: Arc::clone(&log),
                input: Arc::clone(&input),
            },
        );
        if !idempotency_key.is_empty() {
            remember(
                &mut state,
                idempotency_key,
                &log,
                self.limits.idempotency_entries,
            );
        }
        self.live_count.send_replace(state.live.len());
        Ok(Admission::Started {
            log,
            cancel,
            permit,
            input,
        })
    }

    /// Answers the question task `task_id` waits on: NOT_FOUND for an
    /// unknown task, NOT_WAITING when it waits for no answer or for
    /// another question, INVALID_INPUT (naming the field) when the answer
    /// does not match the question's schema.
    pub fn provide(&self, task_id: &str, answer: InputAnswer) -> Result<(), MeshError> {
        let slot = {
            let state = self.lock();
            match state.live.get(task_id) {
                Some(live) => Arc::clone(&live.input),
                None if state.finished.contains_key(task_id) => {
                    return Err(not_waiting(format!("task {task_id} has ended")));
                }
                None => {
                    return Err(MeshError::new(
                        ErrorReason::NotFound,
                        format!("no task {task_id} on this agent"),
                    ));
                }
            }
        };
        let mut pending = slot.0.lock();
        let Some(waiting) = pending.as_ref() else {
            return Err(not_waiting(format!(
                "task {task_id} is not waiting for input"
            )));
        };
        if waiting.input_id != answer.input_id {
            return Err(not_waiting(format!(
                "task {task_id} waits for an answer to {:?}, not {:?}",
                waiting.input_id, answer.input_id
            )));
        }
        let value = agentmesh_proto::json::from_opt_struct(answer.answer.as_ref());
        waiting.schema.check(&value)?;
        if let Some(p) = pending.take() {
            // The driver may have ended meanwhile; then nobody waits.
            let _ = p.answer.send(value);
        }
        Ok(())
    }

    fn finish(&self, task_id: &str, idempotency_key: &str, final_state: TaskState) {
        let mut state = self.lock();
        state.live.remove(task_id);
        // Only a completed task answers repeats; after a failure or a cancel
        // a retry with the same key must really run again.
        if final_state != TaskState::Completed && !idempotency_key.is_empty() {
            forget(&mut state, idempotency_key);
        }
        if final_state == TaskState::Completed
            && let Some(seen) = state.idempotency.get_mut(idempotency_key)
            && seen.bytes == 0
        {
            let bytes = seen.log.fold(0u64, |n, e| n + e.encoded_len() as u64);
            seen.bytes = bytes;
            state.idempotency_bytes += bytes;
            // The oldest completed go first while the remembered tasks hold
            // too much; tasks still running (nothing counted yet) stay.
            let mut i = 0;
            while state.idempotency_bytes > self.limits.idempotency_bytes
                && i < state.idempotency_order.len()
            {
                let key = &state.idempotency_order[i];
                if state.idempotency.get(key).is_some_and(|r| r.bytes == 0) {
                    i += 1;
                    continue;
                }
                if let Some(old) = state.idempotency_order.remove(i) {
                    forget(&mut state, &old);
                }
            }
        }
        if state
            .finished
            .insert(task_id.to_string(), final_state)
            .is_none()
        {
            state.finished_order.push_back(task_id.to_string());
        }
        while state.finished_order.len() > self.limits.finished_entries {
            if let Some(old) = state.finished_order.pop_front() {
                state.finished.remove(&old);
            }
        }
        self.live_count.send_replace(state.live.len());
    }

    /// Cancels a task and waits (bounded) for its final state.
    pub async fn cancel(&self, task_id: &str) -> Result<TaskState, MeshError> {
        let live = {
            let state = self.lock();
            if let Some(done) = state.finished.get(task_id) {
                return Ok(*done);
            }
            state
                .live
                .get(task_id)
                .map(|l| (l.cancel.clone(), Arc::clone(&l.log)))
        };
        let Some((cancel, log)) = live else {
            return Err(MeshError::new(
                ErrorReason::NotFound,
                format!("no task {task_id} on this agent"),
            ));
        };
        cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), log.closed()).await;
        Ok(final_state_of(&log).unwrap_or(TaskState::Canceled))
    }

    /// Stops admitting tasks (health goes NOT_SERVING at the same time).
    pub fn begin_drain(&self) {
        self.draining.cancel();
    }

    /// Resolves when no task is running.
    pub async fn drained(&self) {
        let mut rx = self.live_count.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Cancels every running task (end of the shutdown grace period).
    pub fn cancel_all(&self) {
        self.shutdown.cancel();
    }

    /// Whether [`TaskTable::cancel_all`] was called.
    pub fn shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Tasks running now.
    pub fn running(&self) -> usize {
        *self.live_count.borrow()
    }
}

fn remember(state: &mut TableState, key: &str, log: &Arc<TaskLog>, max: usize) {
    let now = Instant::now();
    if state
        .idempotency
        .insert(
            key.to_string(),
            Remembered {
                log: Arc::clone(log),
                at: now,
                bytes: 0,
            },
        )
        .is_none()
    {
        state.idempotency_order.push_back(key.to_string());
    }
    while state.idempotency_order.len() > max {
        if let Some(old) = state.idempotency_order.pop_front() {
            forget(state, &old);
        }
    }
    // Keys removed on failure stay in the order queue; drop them lazily.
    while let Some(front) = state.idempotency_order.front() {
        if state.idempotency.contains_key(front) {
            break;
        }
        state.idempotency_order.pop_front();
    }
}

/// Forgets the task remembered under `key`, and its bytes.
fn forget(state: &mut TableState, key: &str) {
    if let Some(old) = state.idempotency.remove(key) {
        state.idempotency_bytes = state.idempotency_bytes.saturating_sub(old.bytes);
    }
}

fn not_waiting(message: String) -> MeshError {
    MeshError::new(ErrorReason::NotWaiting, message)
}

/// What a panic said, for the task's failure and the log.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// The terminal state of a closed task log.
pub fn final_state_of(log: &TaskLog) -> Option<TaskState> {
    match log.last()?.event? {
        Event::Status(s) if s.r#final => TaskState::try_from(s.state).ok(),
        _ => None,
    }
}

/// Everything [`drive`] needs for one task.
pub struct DriveSpec<A> {
    /// The agent.
    pub agent: Arc<A>,
    /// The table the task is registered in.
    pub table: Arc<TaskTable>,
    /// The task.
    pub task: Task,
    /// Its idempotency key ("" for none).
    pub idempotency_key: String,
    /// When it must end.
    pub deadline: Instant,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Its skill's compiled schemas.
    pub schemas: Arc<SkillSchemas>,
    /// The log, cancel token and permit from [`Admission::Started`].
    pub log: Arc<TaskLog>,
    /// Cancels the task.
    pub cancel: CancellationToken,
    /// The concurrency slot, released when the task ends.
    pub permit: OwnedSemaphorePermit,
    /// Where the task's question waits, from [`Admission::Started`].
    pub input: Arc<InputSlot>,
    /// Answers to questions earlier attempts asked, by question id.
    pub answers: HashMap<String, JsonObject>,
    /// Injected delay before the agent's work starts (fault injection).
    pub fault_delay: Duration,
    /// Attempts up to this number fail, retryably, without running the
    /// agent's work (fault injection; 0 = off).
    pub fault_fail_attempts: u32,
}

/// A question the task waits on.
struct Waiting {
    answer: oneshot::Receiver<JsonObject>,
    reply: oneshot::Sender<Result<JsonObject, TaskError>>,
    since: Instant,
}

enum Outcome {
    Done(Result<crate::agent::TaskOutput, TaskError>),
    Panicked(String),
    Canceled,
    DeadlineExceeded,
}

/// Runs one admitted task to its terminal event.
pub async fn drive<A: Agent>(spec: DriveSpec<A>, span: Span) {
    drive_inner(spec).instrument(span).await;
}

async fn drive_inner<A: Agent>(spec: DriveSpec<A>) {
    let DriveSpec {
        agent,
        table,
        task,
        idempotency_key,
        deadline,
        heartbeat,
        schemas,
        log,
        cancel,
        permit,
        input,
        answers,
        fault_delay,
        fault_fail_attempts,
    } = spec;
    let mut deadline = deadline;
    let task_id = task.task_id.clone();
    let skill = task.skill_id.clone();
    let started = Instant::now();
    let metrics = crate::metrics::tasks::tasks();
    metrics.in_flight.inc();
    let emitter = Emitter {
        log: &log,
        task_id: &task_id,
        chunk_bytes: table.limits().chunk_bytes.max(1024),
    };
    emitter.status(TaskState::Submitted, "accepted", false);
    emitter.status(TaskState::Working, "started", false);

    let (tx, mut rx) = mpsc::channel(64);
    let ctx = TaskContext::new(tx, cancel.clone(), deadline, Arc::new(answers));
    let work = async move {
        if !fault_delay.is_zero() {
            tokio::time::sleep(fault_delay).await;
        }
        if task.attempt <= fault_fail_attempts {
            return Err(TaskError::new(
                ErrorReason::AgentFailed,
                format!(
                    "injected fault: attempt {} fails (server.fault_fail_attempts = {fault_fail_attempts})",
                    task.attempt
                ),
            )
            .retryable(None));
        }
        agent.execute(task, ctx).await
    };
    // A panic in the agent's code ends this task with a failure; the task's
    // stream still ends, and the agent serves on. Nothing the work touched
    // is shared with other tasks, so unwinding past it leaves no broken
    // state behind.
    let work = std::panic::AssertUnwindSafe(work).catch_unwind();
    tokio::pin!(work);
    let mut beat = interval_at(Instant::now() + heartbeat, heartbeat);
    beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut artifact_ids = Vec::new();
    // The question the task waits on: its answer, where the agent's code
    // waits for it, and since when (the deadline pauses meanwhile).
    let mut waiting: Option<Waiting> = None;

    let outcome = loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break Outcome::Canceled,
            () = sleep_until(deadline), if waiting.is_none() => break Outcome::DeadlineExceeded,
            answer = async {
                match waiting.as_mut() {
                    Some(w) => (&mut w.answer).await,
                    None => std::future::pending().await,
                }
            }, if waiting.is_some() => {
                if let Some(w) = waiting.take() {
                    deadline += w.since.elapsed();
                    match answer {
                        Ok(answer) => {
                            emitter.status(TaskState::Working, "answered", false);
                            let _ = w.reply.send(Ok(answer));
                        }
                        // The slot was emptied without an answer: the task
                        // is ending.
                        Err(_) => drop(w),
                    }
                }
            }
            Some(event) = rx.recv() => match event {
                AgentEvent::Ask { question, reply } => {
                    if waiting.is_some() {
                        let _ = reply.send(Err(TaskError::failed(
                            "the task asked a second question before the first was answered",
                        )));
                    } else {
                        match emitter.ask(&input, question) {
                            Ok(answer) => {
                                waiting = Some(Waiting { answer, reply, since: Instant::now() });
                            }
                            Err(e) => {
                                let _ = reply.send(Err(e));
                            }
                        }
                    }
                }
                event => emitter.agent_event(event, &mut artifact_ids),
            },
            result = &mut work => {
                while let Ok(event) = rx.try_recv() {
                    emitter.agent_event(event, &mut artifact_ids);
                }
                break match result {
                    Ok(result) => Outcome::Done(result),
                    Err(panic) => Outcome::Panicked(panic_message(panic.as_ref())),
                };
            }
            _ = beat.tick() => emitter.emit(Event::Heartbeat(Heartbeat {}), false),
        }
    };

    let mut ended = ErrorReason::Unspecified;
    let mut fail = |err: &TaskError, state: TaskState| {
        ended = err.reason;
        emitter.fail(err, state)
    };
    let final_state = match outcome {
        Outcome::Done(Ok(output)) => match schemas.check_output(&output.output) {
            Ok(()) => {
                emitter.emit(
                    Event::Result(TaskResult {
                        output: Some(to_struct(&output.output)),
                        artifact_ids,
                    }),
                    false,
                );
                emitter.status(TaskState::Completed, "completed", true);
                TaskState::Completed
            }
            Err(err) => {
                warn!(%err, "agent output violates its output schema");
                fail(
                    &TaskError::new(ErrorReason::OutputInvalid, err.message).retryable(None),
                    TaskState::Failed,
                )
            }
        },
        Outcome::Panicked(what) => {
            error!(panic = %what, "the agent panicked; the task fails, the agent serves on");
            // Retryable elsewhere: another replica may not hit the same bug;
            // the failure counts against this one.
            fail(
                &TaskError::new(
                    ErrorReason::AgentFailed,
                    format!("the agent failed unexpectedly (panic: {what})"),
                )
                .retryable(None),
                TaskState::Failed,
            )
        }
        Outcome::Done(Err(err)) => {
            info!(reason = err.reason.name(), error = %err.message, "task failed");
            fail(&err, TaskState::Failed)
        }
        // Cancelled because the agent is shutting down (the end of its
        // drain grace), not by the caller: the work is not done and another
        // replica can do it, so the failure says so (retryable).
        Outcome::Canceled if table.shutting_down() => fail(
            &TaskError::new(
                ErrorReason::AgentUnavailable,
                "the agent shut down before the task finished; send it to another replica",
            )
            .retryable(None),
            TaskState::Canceled,
        ),
        Outcome::Canceled => fail(
            &TaskError::new(ErrorReason::Canceled, "task was cancelled"),
            TaskState::Canceled,
        ),
        Outcome::DeadlineExceeded => fail(
            &TaskError::new(
                ErrorReason::DeadlineExceeded,
                "task deadline passed before it finished",
            )
            .retryable(None),
            TaskState::Failed,
        ),
    };
    drop(input.0.lock().take());
    table.finish(&task_id, &idempotency_key, final_state);
    drop(permit);
    let outcome = if final_state == TaskState::Completed {
        "completed".to_string()
    } else {
        ended.name().to_ascii_lowercase()
    };
    let span = Span::current();
    span.record("outcome", outcome.as_str());
    if final_state != TaskState::Completed {
        span.record("otel.status_code", "ERROR");
    }
    let labels = crate::metrics::tasks::TaskLabels { skill, outcome };
    metrics.finished.get_or_create(&labels).inc();
    metrics
        .duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    metrics.in_flight.dec();
}

struct Emitter<'a> {
    log: &'a TaskLog,
    task_id: &'a str,
    chunk_bytes: usize,
}

impl Emitter<'_> {
    fn emit(&self, event: Event, close: bool) {
        let time = Timestamp::from(SystemTime::now());
        // The driver is the only writer and closes the log once, at the end.
        let _ = self.log.append_with(close, |seq| TaskEvent {
            task_id: self.task_id.to_string(),
            seq,
            time: Some(time),
            event: Some(event),
        });
    }

    fn status(&self, state: TaskState, message: &str, last: bool) {
        self.emit(
            Event::Status(TaskStatusUpdate {
                state: state.into(),
                message: message.to_string(),
                r#final: last,
                input: None,
            }),
            last,
        );
    }

    /// Puts the question in the task's input slot and tells the caller
    /// (INPUT_REQUIRED); the receiver gets the answer.
    fn ask(
        &self,
        slot: &InputSlot,
        question: Question,
    ) -> Result<oneshot::Receiver<JsonObject>, TaskError> {
        let schema =
            AnswerSchema::from_value(&question.answer_schema).map_err(TaskError::failed)?;
        let (tx, rx) = oneshot::channel();
        *slot.0.lock() = Some(Pending {
            input_id: question.input_id.clone(),
            schema,
            answer: tx,
        });
        self.emit(
            Event::Status(TaskStatusUpdate {
                state: TaskState::InputRequired.into(),
                message: question.text.clone(),
                r#final: false,
                input: Some(InputRequest {
                    input_id: question.input_id,
                    question: question.text,
                    answer_schema: Some(value_to_struct(&question.answer_schema)),
                }),
            }),
            false,
        );
        Ok(rx)
    }

    fn fail(&self, err: &TaskError, state: TaskState) -> TaskState {
        self.emit(
            Event::Failure(TaskFailure {
                reason: err.reason.name().to_string(),
                message: err.message.clone(),
                retryable: err.retryable,
                retry_after: err
                    .retry_after
                    .and_then(|d| prost_types::Duration::try_from(d).ok()),
            }),
            false,
        );
        self.status(state, &err.message, true);
        state
    }

    fn agent_event(&self, event: AgentEvent, artifact_ids: &mut Vec<String>) {
        match event {
            AgentEvent::Progress {
                message,
                fraction,
                text_delta,
                tokens_used,
            } => self.emit(
                Event::Progress(TaskProgress {
                    message,
                    fraction,
                    text_delta,
                    tokens_used,
                }),
                false,
            ),
            AgentEvent::Artifact(artifact) => {
                artifact_ids.push(artifact.artifact_id.clone());
                self.artifact(artifact);
            }
            // Taken by the driver before it gets here.
            AgentEvent::Ask { reply, .. } => {
                let _ = reply.send(Err(TaskError::failed("the question was not taken")));
            }
        }
    }

    fn artifact(&self, artifact: OutArtifact) {
        let OutArtifact {
            artifact_id,
            name,
            description,
            media_type,
            metadata,
            data,
        } = artifact;
        let mut chunks = data.chunks(self.chunk_bytes).peekable();
        let mut first = true;
        if chunks.peek().is_none() {
            // An empty artifact is still one (last) chunk.
            self.emit(
                Event::ArtifactChunk(ArtifactChunk {
                    artifact_id,
                    name,
                    description,
                    media_type,
                    metadata: Some(to_struct(&metadata)),
                    data: Vec::new(),
                    append: false,
                    last_chunk: true,
                }),
                false,
            );
            return;
        }
        while let Some(chunk) = chunks.next() {
            let last_chunk = chunks.peek().is_none();
            let head = first;
            first = false;
            self.emit(
                Event::ArtifactChunk(ArtifactChunk {
                    artifact_id: artifact_id.clone(),
                    name: if head { name.clone() } else { String::new() },
                    description: if head {
                        description.clone()
                    } else {
                        String::new()
                    },
                    media_type: if head {
                        media_type.clone()
                    } else {
                        String::new()
                    },
                    metadata: head.then(|| to_struct(&metadata)),
                    data: chunk.to_vec(),
                    append: !head,
                    last_chunk,
                }),
                false,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(bytes: u64) -> TaskLimits {
        TaskLimits {
            max_concurrency: 8,
            chunk_bytes: 1024,
            idempotency_entries: 100,
            idempotency_ttl: Duration::from_secs(600),
            idempotency_bytes: bytes,
            finished_entries: 100,
        }
    }

    /// Runs task `id` under `key` to completion with an event of `size`
    /// bytes of progress text.
    fn complete(table: &TaskTable, id: &str, key: &str, size: usize) {
        let Ok(Admission::Started { log, .. }) = table.admit(id, key) else {
            panic!("{id} was not started")
        };
        let _ = log.append_with(false, |seq| TaskEvent {
            task_id: id.into(),
            seq,
            event: Some(Event::Progress(TaskProgress {
                message: "x".repeat(size),
                ..TaskProgress::default()
            })),
            ..TaskEvent::default()
        });
        let _ = log.append_with(true, |seq| TaskEvent {
            task_id: id.into(),
            seq,
            event: Some(Event::Status(TaskStatusUpdate {
                state: TaskState::Completed.into(),
                r#final: true,
                ..TaskStatusUpdate::default()
            })),
            ..TaskEvent::default()
        });
        table.finish(id, key, TaskState::Completed);
    }

    fn repeats(table: &TaskTable, key: &str) -> bool {
        matches!(
            table.admit(&format!("probe-{key}"), key),
            Ok(Admission::Repeat(_))
        )
    }

    #[test]
    fn completed_tasks_are_remembered_within_the_byte_limit_oldest_forgotten_first() {
        // Room for two tasks of about 1 KB.
        let table = TaskTable::new(limits(2_500));
        // A task still running is never forgotten for the bytes of others.
        let Ok(Admission::Started { .. }) = table.admit("live", "k-live") else {
            panic!("not started")
        };
        for i in 0..4 {
            complete(&table, &format!("t{i}"), &format!("k{i}"), 1_000);
        }
        assert!(
            !repeats(&table, "k0") && !repeats(&table, "k1"),
            "forgotten"
        );
        assert!(repeats(&table, "k2") && repeats(&table, "k3"), "remembered");
        assert!(repeats(&table, "k-live"), "a running task is followed");
        assert!(table.lock().idempotency_bytes <= 2_500);
    }
}
