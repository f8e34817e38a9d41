//! One step on an A2A agent: `SendStreamingMessage`, its events turned
//! into the mesh's task events as they come.
//!
//! | A2A | mesh task event |
//! |---|---|
//! | task / status SUBMITTED | status SUBMITTED |
//! | status WORKING (with a message) | progress (the message's text) |
//! | artifact update (each part) | artifact chunk (text as UTF-8, data as JSON) |
//! | status COMPLETED, or a direct message | result: `text` (artifact and message texts), `data` (data parts), `a2a_task_id` |
//! | status FAILED / REJECTED | failure AGENT_FAILED (not retried) |
//! | status CANCELED | failure CANCELED (done again, as a mesh agent's own cancel) |
//! | status INPUT_REQUIRED / AUTH_REQUIRED | status INPUT_REQUIRED with the question; the step waits |
//!
//! The input object goes as a message: its `text` as a text part, the
//! rest as one data part, input artifacts as file parts; the message's
//! metadata (and the request's) names the mesh run, skill, attempt and
//! idempotency key under `agentmesh`.
//!
//! A task that asks for input pauses the step: its question is shown in
//! the run, and the orchestrator polls `GetTask` until someone answers on
//! the A2A side (or the step's deadline passes), then subscribes again.
//! Cancelling the step sends `CancelTask`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use a2a::{
    A2AError, CancelTaskRequest, GetTaskRequest, Message, Part, PartContent, Role,
    SendMessageConfiguration, SendMessageRequest, StreamResponse, SubscribeToTaskRequest,
    TaskState, error_code,
};
use agentmesh_proto::error::ErrorReason;
use agentmesh_proto::json::value_to_struct;
use agentmesh_proto::json::{from_opt_struct, to_struct};
use agentmesh_proto::v1::{
    ArtifactChunk, ExecuteTaskRequest, InputAnswer, InputRequest, TaskEvent, TaskFailure,
    TaskProgress, TaskResult, TaskState as MeshState, TaskStatusUpdate, part, task_event,
};
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tracing::debug;

use super::{Connected, Peer};
use crate::run::attempt::{Events, RemoteTask, answer_lost};
use crate::run::failure::Failure;

/// How often a task waiting for input is looked at.
const INPUT_POLL: Duration = Duration::from_millis(500);
/// How long a `CancelTask` may take.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(1);
/// Streams in a row that may end without a new state before the step
/// gives up on the agent.
const MAX_EMPTY_RESUBSCRIBES: u32 = 3;

/// A task on an A2A agent.
pub struct A2aTask {
    peer: Arc<Peer>,
    /// The A2A task id, once the agent named it.
    remote_id: Arc<Mutex<Option<String>>>,
    pump: Option<tokio::task::JoinHandle<()>>,
}

impl A2aTask {
    pub(super) fn new(peer: Arc<Peer>) -> Self {
        Self {
            peer,
            remote_id: Arc::new(Mutex::new(None)),
            pump: None,
        }
    }
}

impl Drop for A2aTask {
    fn drop(&mut self) {
        if let Some(pump) = self.pump.take() {
            pump.abort();
        }
    }
}

/// The A2A error of a call as a step failure.
fn failure(error: &A2AError) -> Failure {
    let reason = match error.code {
        error_code::INVALID_PARAMS
        | error_code::INVALID_REQUEST
        | error_code::CONTENT_TYPE_NOT_SUPPORTED => ErrorReason::InvalidInput,
        error_code::UNSUPPORTED_OPERATION
        | error_code::METHOD_NOT_FOUND
        | error_code::VERSION_NOT_SUPPORTED
        | error_code::TASK_NOT_FOUND
        | error_code::INVALID_AGENT_RESPONSE => ErrorReason::AgentFailed,
        _ => ErrorReason::AgentUnavailable,
    };
    Failure::new(reason, format!("A2A: {}", error.message))
}

/// The message a step's request becomes.
fn message(req: &ExecuteTaskRequest) -> Message {
    let mut input = from_opt_struct(req.input.as_ref());
    let mut parts = Vec::new();
    if let Some(Value::String(text)) = input.remove("text") {
        parts.push(Part::text(text));
    }
    if !input.is_empty() {
        parts.push(Part::data(Value::Object(input)));
    }
    for artifact in &req.input_artifacts {
        for p in &artifact.parts {
            let bytes = match &p.content {
                Some(part::Content::Raw(b)) => b.clone(),
                Some(part::Content::Text(t)) => t.clone().into_bytes(),
                _ => continue,
            };
            let mut file = Part::raw(bytes);
            file.filename = Some(if p.filename.is_empty() {
                artifact.name.clone()
            } else {
                p.filename.clone()
            });
            file.media_type = (!p.media_type.is_empty()).then(|| p.media_type.clone());
            parts.push(file);
        }
    }
    if parts.is_empty() {
        parts.push(Part::data(json!({})));
    }
    let mut message = Message::new(Role::User, parts);
    message.message_id = req.task_id.clone();
    message.metadata = Some(HashMap::from([(
        "agentmesh".to_string(),
        json!({
            "runId": req.run_id,
            "skill": req.skill_id,
            "attempt": req.attempt,
            "idempotencyKey": req.idempotency_key,
        }),
    )]));
    message
}

impl RemoteTask for A2aTask {
    fn heartbeats(&self) -> bool {
        false
    }

    async fn start(
        &mut self,
        request: ExecuteTaskRequest,
        _deadline: Instant,
    ) -> Result<Events, Failure> {
        let Some(connected) = self.peer.connected() else {
            return Err(Failure::new(
                ErrorReason::AgentUnavailable,
                "the A2A agent's card has not been read",
            ));
        };
        let message = message(&request);
        let send = SendMessageRequest {
            metadata: message.metadata.clone(),
            message,
            configuration: Some(SendMessageConfiguration {
                accepted_output_modes: None,
                task_push_notification_config: None,
                history_length: Some(0),
                return_immediately: None,
            }),
            tenant: None,
        };
        let stream = connected
            .client
            .send_streaming_message(&send)
            .await
            .map_err(|e| failure(&e))?;
        let (tx, rx) = mpsc::channel(64);
        let mut emitter = Emitter {
            tx,
            task_id: request.task_id.clone(),
            seq: 0,
            remote_id: Arc::clone(&self.remote_id),
            state: TaskState::Unspecified,
            texts: Vec::new(),
            data: Vec::new(),
            artifacts_seen: HashSet::new(),
        };
        self.pump = Some(tokio::spawn(async move {
            pump(connected, stream, &mut emitter).await;
        }));
        Ok(ReceiverStream::new(rx).boxed())
    }

    async fn cancel(&mut self, task_id: &str, reason: &str) {
        let Some(remote) = self.remote_id.lock().clone() else {
            return;
        };
        let Some(connected) = self.peer.connected() else {
            return;
        };
        let req = CancelTaskRequest {
            id: remote.clone(),
            metadata: Some(HashMap::from([("reason".to_string(), json!(reason))])),
            tenant: None,
        };
        match tokio::time::timeout(CANCEL_TIMEOUT, connected.client.cancel_task(&req)).await {
            Ok(Ok(_)) => debug!(task_id, remote, reason, "A2A task canceled"),
            Ok(Err(e)) => debug!(task_id, remote, error = %e, "A2A CancelTask failed"),
            Err(_) => debug!(task_id, remote, "A2A CancelTask timed out"),
        }
    }

    async fn provide(&mut self, task_id: &str, answer: InputAnswer) -> Result<(), Failure> {
        let lost = |why: &str| answer_lost(Failure::new(ErrorReason::AgentUnavailable, why));
        let Some(remote) = self.remote_id.lock().clone() else {
            return Err(lost("the A2A agent named no task"));
        };
        let Some(connected) = self.peer.connected() else {
            return Err(lost("the A2A agent's card has not been read"));
        };
        let answer = from_opt_struct(answer.answer.as_ref());
        let text = answer
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut message = Message::new(Role::User, vec![Part::text(text)]);
        message.message_id = format!("{task_id}/answer");
        message.task_id = Some(remote);
        let send = SendMessageRequest {
            metadata: None,
            message,
            configuration: Some(SendMessageConfiguration {
                accepted_output_modes: None,
                task_push_notification_config: None,
                history_length: Some(0),
                return_immediately: Some(true),
            }),
            tenant: None,
        };
        match tokio::time::timeout(Duration::from_secs(5), connected.client.send_message(&send))
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(answer_lost(failure(&e))),
            Err(_) => Err(lost("the A2A agent took no answer within 5 s")),
        }
    }
}

/// The question id of an A2A agent's input-required state.
const A2A_INPUT: &str = "a2a-input";

type A2aStream = futures_util::stream::BoxStream<'static, Result<StreamResponse, A2AError>>;

/// Reads the agent's streams until the task ends: the first, then after
/// each pause for input (or a stream that ended early) a new one.
async fn pump(connected: Arc<Connected>, mut stream: A2aStream, out: &mut Emitter) {
    let mut empty = 0;
    loop {
        let before = out.seq;
        while let Some(item) = stream.next().await {
            match item {
                Ok(event) => {
                    if out.take(event).await {
                        return;
                    }
                }
                Err(e) => return out.fail(failure(&e)).await,
            }
        }
        let Some(id) = out.remote_id.lock().clone() else {
            return out
                .fail(Failure::new(
                    ErrorReason::AgentUnavailable,
                    "the A2A agent's stream ended before it named a task",
                ))
                .await;
        };
        empty = if out.seq == before { empty + 1 } else { 0 };
        if empty > MAX_EMPTY_RESUBSCRIBES {
            return out
                .fail(Failure::new(
                    ErrorReason::AgentUnavailable,
                    "the A2A agent's streams end without news of the task",
                ))
                .await;
        }
        // Paused for input: look until someone has answered.
        while matches!(
            out.state,
            TaskState::InputRequired | TaskState::AuthRequired
        ) {
            tokio::time::sleep(INPUT_POLL).await;
            let get = GetTaskRequest {
                id: id.clone(),
                history_length: Some(0),
                tenant: None,
            };
            match connected.client.get_task(&get).await {
                Ok(task) => {
                    if out.take(StreamResponse::Task(task)).await {
                        return;
                    }
                }
                Err(e) => return out.fail(failure(&e)).await,
            }
        }
        let sub = SubscribeToTaskRequest {
            id: id.clone(),
            tenant: None,
        };
        stream = match connected.client.subscribe_to_task(&sub).await {
            Ok(s) => s,
            Err(e) => return out.fail(failure(&e)).await,
        };
    }
}

/// Turns A2A events into task events.
struct Emitter {
    tx: mpsc::Sender<Result<TaskEvent, Failure>>,
    task_id: String,
    seq: u64,
    remote_id: Arc<Mutex<Option<String>>>,
    state: TaskState,
    texts: Vec<String>,
    data: Vec<Value>,
    artifacts_seen: HashSet<String>,
}

fn texts_of(parts: &[Part]) -> impl Iterator<Item = &str> {
    parts.iter().filter_map(|p| p.as_text())
}

impl Emitter {
    async fn send(&mut self, event: task_event::Event) -> bool {
        self.seq += 1;
        let ev = TaskEvent {
            task_id: self.task_id.clone(),
            seq: self.seq,
            time: Some(std::time::SystemTime::now().into()),
            event: Some(event),
        };
        self.tx.send(Ok(ev)).await.is_ok()
    }

    async fn fail(&mut self, failure: Failure) {
        let _ = self.tx.send(Err(failure)).await;
    }

    fn name(&self, id: &str) {
        let mut remote = self.remote_id.lock();
        if remote.is_none() {
            *remote = Some(id.to_string());
        }
    }

    /// Takes one A2A event; true when the task has ended (or nobody
    /// listens any more).
    async fn take(&mut self, event: StreamResponse) -> bool {
        match event {
            StreamResponse::Task(task) => {
                self.name(&task.id);
                for artifact in task.artifacts.into_iter().flatten() {
                    if self.artifacts_seen.contains(&artifact.artifact_id) {
                        continue;
                    }
                    if !self.artifact(artifact, false, true).await {
                        return true;
                    }
                }
                self.status(task.status).await
            }
            StreamResponse::StatusUpdate(update) => {
                self.name(&update.task_id);
                self.status(update.status).await
            }
            StreamResponse::ArtifactUpdate(update) => {
                self.name(&update.task_id);
                let append = update.append.unwrap_or(false);
                let last = update.last_chunk.unwrap_or(true);
                !self.artifact(update.artifact, append, last).await
            }
            StreamResponse::Message(message) => {
                // A direct answer, without a task.
                self.texts
                    .extend(texts_of(&message.parts).map(str::to_string));
                self.collect_data(&message.parts);
                self.complete().await;
                true
            }
        }
    }

    fn collect_data(&mut self, parts: &[Part]) {
        for p in parts {
            if let PartContent::Data(v) = &p.content {
                self.data.push(v.clone());
            }
        }
    }

    async fn artifact(&mut self, artifact: a2a::Artifact, append: bool, last: bool) -> bool {
        self.artifacts_seen.insert(artifact.artifact_id.clone());
        self.texts
            .extend(texts_of(&artifact.parts).map(str::to_string));
        self.collect_data(&artifact.parts);
        let name = artifact
            .name
            .clone()
            .unwrap_or_else(|| artifact.artifact_id.clone());
        for (i, p) in artifact.parts.iter().enumerate() {
            let (bytes, default_type) = match &p.content {
                PartContent::Text(t) => (t.clone().into_bytes(), "text/plain"),
                PartContent::Data(v) => (v.to_string().into_bytes(), "application/json"),
                PartContent::Raw(b) => (b.clone(), "application/octet-stream"),
                PartContent::Url(_) => continue,
            };
            let id = if i == 0 {
                artifact.artifact_id.clone()
            } else {
                format!("{}-{i}", artifact.artifact_id)
            };
            let chunk = ArtifactChunk {
                artifact_id: id,
                name: p.filename.clone().unwrap_or_else(|| name.clone()),
                description: artifact.description.clone().unwrap_or_default(),
                media_type: p
                    .media_type
                    .clone()
                    .unwrap_or_else(|| default_type.to_string()),
                metadata: None,
                data: bytes,
                append,
                last_chunk: last,
            };
            if !self.send(task_event::Event::ArtifactChunk(chunk)).await {
                return false;
            }
        }
        true
    }

    async fn status(&mut self, status: a2a::TaskStatus) -> bool {
        let text = status
            .message
            .as_ref()
            .map(|m| texts_of(&m.parts).collect::<Vec<_>>().join("\n"))
            .unwrap_or_default();
        let changed = status.state != self.state;
        self.state = status.state.clone();
        let status_event = |state: MeshState, message: String| {
            task_event::Event::Status(TaskStatusUpdate {
                state: state.into(),
                message,
                r#final: false,
                input: None,
            })
        };
        match status.state {
            TaskState::Submitted | TaskState::Unspecified => {
                changed && !self.send(status_event(MeshState::Submitted, text)).await
            }
            TaskState::Working => {
                let event = if text.is_empty() {
                    if !changed {
                        return false;
                    }
                    status_event(MeshState::Working, String::new())
                } else {
                    task_event::Event::Progress(TaskProgress {
                        message: text,
                        fraction: -1.0,
                        text_delta: String::new(),
                        tokens_used: 0,
                    })
                };
                !self.send(event).await
            }
            TaskState::InputRequired | TaskState::AuthRequired => {
                if !changed {
                    return false;
                }
                let what = if status.state == TaskState::AuthRequired {
                    "authorization required"
                } else {
                    "input required"
                };
                let question = if text.is_empty() {
                    what.to_string()
                } else {
                    text
                };
                // Where to answer: the A2A task, on the agent's side.
                let remote = self.remote_id.lock().clone().unwrap_or_default();
                let question = format!("{question} [A2A task {remote}]");
                // Answered through the mesh (ProvideInput), the text goes to
                // the A2A task as a message; it may be answered on the
                // agent's side as well.
                let input = (status.state == TaskState::InputRequired).then(|| InputRequest {
                    input_id: A2A_INPUT.to_string(),
                    question: question.clone(),
                    answer_schema: Some(value_to_struct(&json!({
                        "type": "object",
                        "properties": {"text": {"type": "string", "minLength": 1}},
                        "required": ["text"],
                        "additionalProperties": false
                    }))),
                });
                !self
                    .send(task_event::Event::Status(TaskStatusUpdate {
                        state: MeshState::InputRequired.into(),
                        message: question,
                        r#final: false,
                        input,
                    }))
                    .await
            }
            TaskState::Completed => {
                if let Some(m) = &status.message {
                    self.texts.extend(texts_of(&m.parts).map(str::to_string));
                    self.collect_data(&m.parts);
                }
                self.complete().await;
                true
            }
            TaskState::Failed | TaskState::Rejected => {
                let what = if status.state == TaskState::Rejected {
                    "rejected the task"
                } else {
                    "failed"
                };
                let message = if text.is_empty() {
                    format!("the A2A agent {what}")
                } else {
                    format!("the A2A agent {what}: {text}")
                };
                self.end_failed(ErrorReason::AgentFailed, message, MeshState::Failed)
                    .await;
                true
            }
            TaskState::Canceled => {
                let message = if text.is_empty() {
                    "canceled by the A2A agent".to_string()
                } else {
                    text
                };
                self.end_failed(ErrorReason::Canceled, message, MeshState::Canceled)
                    .await;
                true
            }
        }
    }

    async fn complete(&mut self) {
        let mut output = serde_json::Map::new();
        output.insert("text".into(), Value::String(self.texts.join("\n")));
        match self.data.len() {
            0 => {}
            1 => {
                output.insert("data".into(), self.data[0].clone());
            }
            _ => {
                output.insert("data".into(), Value::Array(self.data.clone()));
            }
        }
        if let Some(id) = self.remote_id.lock().clone() {
            output.insert("a2a_task_id".into(), Value::String(id));
        }
        let result = task_event::Event::Result(TaskResult {
            output: Some(to_struct(&output)),
            artifact_ids: self.artifacts_seen.iter().cloned().collect(),
        });
        if self.send(result).await {
            self.send(task_event::Event::Status(TaskStatusUpdate {
                state: MeshState::Completed.into(),
                message: String::new(),
                r#final: true,
                input: None,
            }))
            .await;
        }
    }

    async fn end_failed(&mut self, reason: ErrorReason, message: String, state: MeshState) {
        let failure = task_event::Event::Failure(TaskFailure {
            reason: reason.name().to_string(),
            message: message.clone(),
            retryable: false,
            retry_after: None,
        });
        if self.send(failure).await {
            self.send(task_event::Event::Status(TaskStatusUpdate {
                state: state.into(),
                message,
                r#final: true,
                input: None,
            }))
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentmesh_proto::v1::{Artifact as MeshArtifact, Part as MeshPart};

    #[test]
    fn input_becomes_text_data_and_file_parts() {
        let req = ExecuteTaskRequest {
            task_id: "t-1".into(),
            run_id: "r-1".into(),
            skill_id: "translate".into(),
            input: Some(to_struct(
                json!({"text": "hello", "lang": "fr"}).as_object().unwrap(),
            )),
            input_artifacts: vec![MeshArtifact {
                artifact_id: "a".into(),
                name: "dataset.csv".into(),
                parts: vec![MeshPart {
                    content: Some(part::Content::Raw(b"x,y".to_vec())),
                    media_type: "text/csv".into(),
                    filename: String::new(),
                }],
                ..MeshArtifact::default()
            }],
            ..ExecuteTaskRequest::default()
        };
        let m = message(&req);
        assert_eq!(m.message_id, "t-1");
        assert_eq!(m.parts[0].as_text(), Some("hello"));
        assert_eq!(m.parts[1].content, PartContent::Data(json!({"lang": "fr"})));
        assert_eq!(m.parts[2].filename.as_deref(), Some("dataset.csv"));
        assert_eq!(m.parts[2].media_type.as_deref(), Some("text/csv"));
        assert_eq!(m.metadata.unwrap()["agentmesh"]["skill"], "translate");
    }
}
