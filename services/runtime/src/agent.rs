//! What an agent author implements: [`Agent`], and the types it sees.
//!
//! An agent holds only its skills. The runtime validates input, numbers
//! events, sends heartbeats, enforces deadlines, cancellation and concurrency,
//! and turns results and errors into protocol events.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use agentmesh_proto::error::ErrorReason;
use agentmesh_proto::json::to_pb_value;
use agentmesh_proto::prost_types::Struct;
use agentmesh_proto::v1::{AgentCard, Skill, SkillHints, SkillPlanning};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A JSON object: task input and output.
pub type JsonObject = Map<String, Value>;

/// A sub-agent: a card and a way to run one task of one of its skills.
pub trait Agent: Send + Sync + 'static {
    /// The agent's card. Called once by [`crate::serve`]; skill schemas are
    /// compiled then, and an invalid schema stops the server from starting.
    fn card(&self) -> AgentCard;

    /// Runs `task`. Input has already been validated against the skill's
    /// input schema. Long work should watch [`TaskContext::cancelled`] and
    /// move CPU-bound parts to `tokio::task::spawn_blocking`; the runtime
    /// stops waiting on cancellation or at the deadline either way.
    fn execute(
        &self,
        task: Task,
        ctx: TaskContext,
    ) -> impl Future<Output = Result<TaskOutput, TaskError>> + Send;
}

/// An input artifact handed to a task.
#[derive(Debug, Clone, PartialEq)]
pub struct InputArtifact {
    /// Artifact id as the producing task named it.
    pub artifact_id: String,
    /// Name, e.g. `"dataset.csv"`.
    pub name: String,
    /// Media type of the content.
    pub media_type: String,
    /// The bytes (text parts are UTF-8 encoded).
    pub data: Vec<u8>,
}

/// One task as the agent sees it.
#[derive(Debug, Clone)]
pub struct Task {
    /// Id chosen by the caller.
    pub task_id: String,
    /// Run the task belongs to.
    pub run_id: String,
    /// Skill to run.
    pub skill_id: String,
    /// Validated input.
    pub input: JsonObject,
    /// Artifacts from earlier steps.
    pub input_artifacts: Vec<InputArtifact>,
    /// Attempt number, from 1.
    pub attempt: u32,
}

/// What a task produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskOutput {
    /// Output, valid against the skill's output schema.
    pub output: JsonObject,
}

impl TaskOutput {
    /// Output from a JSON object.
    pub fn new(output: JsonObject) -> Self {
        Self { output }
    }
}

/// Why a task failed. The message is shown to callers: keep internals out.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {message}", reason.name())]
pub struct TaskError {
    /// Machine-readable reason.
    pub reason: ErrorReason,
    /// For people.
    pub message: String,
    /// Whether trying again may succeed.
    pub retryable: bool,
    /// Suggested wait before a retry.
    pub retry_after: Option<Duration>,
}

impl TaskError {
    /// A non-retryable failure.
    pub fn new(reason: ErrorReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            retryable: false,
            retry_after: None,
        }
    }

    /// Bad input (`INVALID_INPUT`), not retryable.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorReason::InvalidInput, message)
    }

    /// The agent failed doing the work (`AGENT_FAILED`).
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(ErrorReason::AgentFailed, message)
    }

    /// Marks the failure retryable, optionally after a delay.
    #[must_use]
    pub fn retryable(mut self, after: Option<Duration>) -> Self {
        self.retryable = true;
        self.retry_after = after;
        self
    }
}

/// Events an agent emits while working; the runtime numbers them.
#[derive(Debug)]
pub(crate) enum AgentEvent {
    Progress {
        message: String,
        fraction: f64,
        text_delta: String,
        tokens_used: u32,
    },
    Artifact(OutArtifact),
    /// The task asks its caller; the answer (or why there is none) goes
    /// back on `reply`.
    Ask {
        question: Question,
        reply: oneshot::Sender<Result<JsonObject, TaskError>>,
    },
}

/// A question a task asks its caller (a person, through the orchestrator):
/// see [`TaskContext::ask`].
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    /// Names the question within the skill, stable across attempts (an
    /// answer given to one attempt reaches the next under this id).
    pub input_id: String,
    /// The question, for people.
    pub text: String,
    /// JSON Schema the answer (a JSON object) must satisfy.
    pub answer_schema: Value,
}

impl Question {
    /// A question whose answer is any object matching `answer_schema`.
    pub fn new(input_id: impl Into<String>, text: impl Into<String>, answer_schema: Value) -> Self {
        Self {
            input_id: input_id.into(),
            text: text.into(),
            answer_schema,
        }
    }
}

/// An output artifact, streamed in chunks by the runtime.
#[derive(Debug, Clone, PartialEq)]
pub struct OutArtifact {
    /// Unique within the task.
    pub artifact_id: String,
    /// Name, e.g. `"revenue_by_region"`.
    pub name: String,
    /// Caption.
    pub description: String,
    /// Media type, e.g. `"image/svg+xml"`.
    pub media_type: String,
    /// Metadata such as title and alt text.
    pub metadata: JsonObject,
    /// The content.
    pub data: Vec<u8>,
}

/// The handle a running task gets: events out, cancellation and deadline in.
#[derive(Debug, Clone)]
pub struct TaskContext {
    events: mpsc::Sender<AgentEvent>,
    cancel: CancellationToken,
    deadline: Instant,
    /// Answers given to earlier attempts, by question id.
    answers: Arc<HashMap<String, JsonObject>>,
}

impl TaskContext {
    pub(crate) fn new(
        events: mpsc::Sender<AgentEvent>,
        cancel: CancellationToken,
        deadline: Instant,
        answers: Arc<HashMap<String, JsonObject>>,
    ) -> Self {
        Self {
            events,
            cancel,
            deadline,
            answers,
        }
    }

    /// Asks the caller a question and waits for the answer, which has been
    /// checked against `question.answer_schema`. The task's status goes
    /// INPUT_REQUIRED with the question, its deadline pauses (heartbeats go
    /// on), and when `ProvideInput` answers it goes WORKING again. An answer
    /// given to an earlier attempt of the same step (same `input_id`)
    /// returns at once, without asking. Fails with CANCELED when the task is
    /// cancelled while waiting (the caller gave up, or nobody answered in
    /// time), and with AGENT_FAILED when the schema does not compile or the
    /// task already waits for another answer.
    pub async fn ask(&self, question: Question) -> Result<JsonObject, TaskError> {
        if let Some(answer) = self.answers.get(&question.input_id) {
            return Ok(answer.clone());
        }
        let (reply, answered) = oneshot::channel();
        self.send(AgentEvent::Ask { question, reply }).await;
        tokio::select! {
            answer = answered => answer.unwrap_or_else(|_| {
                Err(TaskError::new(ErrorReason::Canceled, "the task ended while it waited for an answer"))
            }),
            () = self.cancel.cancelled() => Err(TaskError::new(
                ErrorReason::Canceled,
                "task was cancelled while it waited for an answer",
            )),
        }
    }

    /// Reports progress; `fraction` in [0, 1] or negative when unknown.
    pub async fn progress(&self, message: impl Into<String>, fraction: f64) {
        self.send(AgentEvent::Progress {
            message: message.into(),
            fraction,
            text_delta: String::new(),
            tokens_used: 0,
        })
        .await;
    }

    /// Reports language-model tokens used since the last report; the
    /// orchestrator counts them against the run's token budget.
    pub async fn tokens_used(&self, tokens: u32, message: impl Into<String>) {
        self.send(AgentEvent::Progress {
            message: message.into(),
            fraction: -1.0,
            text_delta: String::new(),
            tokens_used: tokens,
        })
        .await;
    }

    /// Streams generated text (for example tokens from a language model).
    pub async fn text_delta(&self, delta: impl Into<String>) {
        self.send(AgentEvent::Progress {
            message: String::new(),
            fraction: -1.0,
            text_delta: delta.into(),
            tokens_used: 0,
        })
        .await;
    }

    /// Emits an output artifact; the runtime splits it into chunks.
    pub async fn artifact(&self, artifact: OutArtifact) {
        self.send(AgentEvent::Artifact(artifact)).await;
    }

    /// True once the task is cancelled (CancelTask, caller gone, shutdown).
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Resolves when the task is cancelled.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }

    /// A token that is cancelled with the task, for blocking work to poll.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// The task's deadline.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    async fn send(&self, event: AgentEvent) {
        // The receiver lives as long as the task; a closed channel means the
        // task already ended and the event has nowhere to go.
        let _ = self.events.send(event).await;
    }
}

/// Builder for a card's [`Skill`], with schemas written as JSON.
#[derive(Debug, Clone)]
pub struct SkillSpec {
    skill: Skill,
}

impl SkillSpec {
    /// A skill with an id and a description.
    pub fn new(id: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            skill: Skill {
                id: id.into(),
                description: description.into(),
                hints: Some(SkillHints {
                    idempotent: true,
                    read_only: true,
                }),
                ..Skill::default()
            },
        }
    }

    /// Search tags.
    #[must_use]
    pub fn tags(mut self, tags: &[&str]) -> Self {
        self.skill.tags = tags.iter().map(|s| (*s).to_string()).collect();
        self
    }

    /// Example inputs or goals.
    #[must_use]
    pub fn examples(mut self, examples: &[&str]) -> Self {
        self.skill.examples = examples.iter().map(|s| (*s).to_string()).collect();
        self
    }

    /// Input JSON Schema.
    #[must_use]
    pub fn input_schema(mut self, schema: &Value) -> Self {
        self.skill.input_schema = Some(schema_struct(schema));
        self
    }

    /// Output JSON Schema.
    #[must_use]
    pub fn output_schema(mut self, schema: &Value) -> Self {
        self.skill.output_schema = Some(schema_struct(schema));
        self
    }

    /// Kinds consumed.
    #[must_use]
    pub fn consumes(mut self, kinds: &[&str]) -> Self {
        self.skill.consumes = kinds.iter().map(|s| (*s).to_string()).collect();
        self
    }

    /// Kinds produced.
    #[must_use]
    pub fn produces(mut self, kinds: &[&str]) -> Self {
        self.skill.produces = kinds.iter().map(|s| (*s).to_string()).collect();
        self
    }

    /// Execution hints.
    #[must_use]
    pub fn hints(mut self, idempotent: bool, read_only: bool) -> Self {
        self.skill.hints = Some(SkillHints {
            idempotent,
            read_only,
        });
        self
    }

    /// How goals reach the skill (`SkillPlanning`: phrases, future
    /// periods, what it needs upstream).
    #[must_use]
    pub fn planning(mut self, planning: SkillPlanning) -> Self {
        self.skill.planning = Some(planning);
        self
    }

    /// The finished skill.
    pub fn build(self) -> Skill {
        self.skill
    }
}

fn schema_struct(schema: &Value) -> Struct {
    match to_pb_value(schema).kind {
        Some(agentmesh_proto::prost_types::value::Kind::StructValue(s)) => s,
        _ => Struct::default(),
    }
}
