//! Agents tests control: a runtime agent that sleeps, fails or records
//! what it was sent ([`TestAgent`]), agents written straight on tonic that
//! break the protocol in chosen ways ([`RawAgent`], [`Impostor`]).

use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentmesh_proto::json::{from_opt_struct, to_struct};
use agentmesh_proto::v1::agent_service_server::AgentService;
use agentmesh_proto::v1::{
    AgentCard, CancelTaskRequest, CancelTaskResponse, ExecuteTaskRequest, GetAgentCardRequest,
    GetAgentCardResponse, TaskEvent, TaskResult, TaskState, TaskStatusUpdate, task_event,
};
use agentmesh_runtime::{Agent, ErrorReason, SkillSpec, Task, TaskContext, TaskError, TaskOutput};
use futures_util::Stream;
use serde_json::{Value, json};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

/// What a [`TestAgent`] has seen.
#[derive(Default)]
pub struct Seen {
    /// Tasks started.
    pub started: AtomicU32,
    /// Tasks completed.
    pub completed: AtomicU32,
    /// Tasks whose work was stopped (cancelled, deadline) before the end.
    pub cancelled: AtomicU32,
    /// Next tasks to fail with a retryable AGENT_UNAVAILABLE.
    pub fail_next: AtomicU32,
    /// Next tasks the agent cancels itself (as on its own shutdown).
    pub cancel_next: AtomicU32,
}

/// Waits (up to 30 s) until `counter` (one of a [`Seen`]'s) is non-zero;
/// panics naming `what` otherwise.
pub async fn until_counted(counter: &AtomicU32, what: &str) {
    let counted = tokio::time::timeout(Duration::from_secs(30), async {
        while counter.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(counted.is_ok(), "timed out waiting: {what}");
}

/// An agent whose behaviour follows its input: `sleep_ms` (work time,
/// cancellable), `fail` ("permanent" or "retryable"), `value` (echoed),
/// `tokens` (language-model tokens it reports using).
#[derive(Clone)]
pub struct TestAgent {
    /// Card name.
    pub name: String,
    /// Skill ids it offers.
    pub skills: Vec<String>,
    /// Counters shared with the test.
    pub seen: Arc<Seen>,
}

impl TestAgent {
    /// An agent `name` offering `skills`.
    pub fn new(name: &str, skills: &[&str]) -> Self {
        Self {
            name: name.into(),
            skills: skills.iter().map(|s| (*s).to_string()).collect(),
            seen: Arc::default(),
        }
    }
}

impl Agent for TestAgent {
    fn card(&self) -> AgentCard {
        AgentCard {
            name: self.name.clone(),
            version: "1.2.3".into(),
            description: "test agent".into(),
            skills: self
                .skills
                .iter()
                .map(|s| {
                    SkillSpec::new(s.as_str(), "test skill")
                        .input_schema(&json!({
                            "type": "object", "additionalProperties": false,
                            "properties": {
                                "sleep_ms": {"type": "integer", "minimum": 0},
                                "fail": {"enum": ["permanent", "retryable"]},
                                "value": {},
                                "tokens": {"type": "integer", "minimum": 0}
                            }
                        }))
                        .output_schema(&json!({
                            "type": "object", "required": ["agent", "value"]
                        }))
                        .build()
                })
                .collect(),
            ..AgentCard::default()
        }
    }

    async fn execute(&self, task: Task, ctx: TaskContext) -> Result<TaskOutput, TaskError> {
        /// Counts a task whose work was stopped before it finished (the
        /// runtime drops the work future on cancel and deadline).
        struct StopGuard(Arc<Seen>, bool);
        impl Drop for StopGuard {
            fn drop(&mut self) {
                if !self.1 {
                    self.0.cancelled.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        self.seen.started.fetch_add(1, Ordering::SeqCst);
        let mut guard = StopGuard(Arc::clone(&self.seen), false);
        let flaky = self
            .seen
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if flaky || task.input.get("fail") == Some(&json!("retryable")) {
            guard.1 = true;
            return Err(TaskError::new(ErrorReason::AgentUnavailable, "flaky").retryable(None));
        }
        if self
            .seen
            .cancel_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            guard.1 = true;
            return Err(TaskError::new(
                ErrorReason::Canceled,
                "the agent canceled it",
            ));
        }
        if task.input.get("fail") == Some(&json!("permanent")) {
            guard.1 = true;
            return Err(TaskError::failed("this step always fails"));
        }
        if let Some(tokens) = task.input.get("tokens").and_then(Value::as_u64) {
            ctx.tokens_used(u32::try_from(tokens).unwrap_or(u32::MAX), "model call")
                .await;
        }
        let sleep = task
            .input
            .get("sleep_ms")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(sleep)) => {}
            () = ctx.cancelled() => {
                return Err(TaskError::new(ErrorReason::Canceled, "cancelled"));
            }
        }
        guard.1 = true;
        self.seen.completed.fetch_add(1, Ordering::SeqCst);
        let value = task.input.get("value").cloned().unwrap_or(Value::Null);
        let Value::Object(out) = json!({"agent": self.name, "value": value, "task": task.task_id})
        else {
            unreachable!()
        };
        Ok(TaskOutput::new(out))
    }
}

/// How a [`RawAgent`] answers one ExecuteTask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawMode {
    /// WORKING, the input back as output, COMPLETED.
    Echo,
    /// A gRPC UNAVAILABLE status instead of a stream.
    Unavailable,
    /// WORKING, then nothing at all (no heartbeats), stream left open.
    Silent,
}

/// An agent written directly against the protocol (no runtime), as an
/// agent author in another language would: it records every request.
#[derive(Clone, Default)]
pub struct RawAgent {
    /// Modes for the next calls, in order; then Echo.
    pub script: Arc<Mutex<Vec<RawMode>>>,
    /// Every ExecuteTask request received.
    pub requests: Arc<Mutex<Vec<ExecuteTaskRequest>>>,
    /// Every CancelTask request received.
    pub cancels: Arc<Mutex<Vec<CancelTaskRequest>>>,
    /// The `traceparent` metadata of every ExecuteTask call ("" if none).
    pub traceparents: Arc<Mutex<Vec<String>>>,
}

type TaskStream = Pin<Box<dyn Stream<Item = Result<TaskEvent, Status>> + Send>>;

fn status_event(task_id: &str, seq: u64, state: TaskState, last: bool) -> TaskEvent {
    TaskEvent {
        task_id: task_id.into(),
        seq,
        time: None,
        event: Some(task_event::Event::Status(TaskStatusUpdate {
            state: state.into(),
            message: String::new(),
            r#final: last,
            input: None,
        })),
    }
}

/// WORKING, a result with `output`, COMPLETED: a task that went well.
fn completed_stream(id: &str, output: agentmesh_proto::prost_types::Struct) -> TaskStream {
    let events = vec![
        status_event(id, 1, TaskState::Working, false),
        TaskEvent {
            task_id: id.into(),
            seq: 2,
            time: None,
            event: Some(task_event::Event::Result(TaskResult {
                output: Some(output),
                artifact_ids: vec![],
            })),
        },
        status_event(id, 3, TaskState::Completed, true),
    ];
    Box::pin(tokio_stream::iter(events.into_iter().map(Ok)))
}

#[tonic::async_trait]
impl AgentService for RawAgent {
    async fn get_agent_card(
        &self,
        _: Request<GetAgentCardRequest>,
    ) -> Result<Response<GetAgentCardResponse>, Status> {
        Ok(Response::new(GetAgentCardResponse {
            card: Some(AgentCard {
                name: "raw".into(),
                version: "0.0.1".into(),
                max_concurrency: 8,
                skills: vec![SkillSpec::new("raw", "echo, scripted").build()],
                ..AgentCard::default()
            }),
        }))
    }

    type ExecuteTaskStream = TaskStream;

    async fn execute_task(
        &self,
        request: Request<ExecuteTaskRequest>,
    ) -> Result<Response<TaskStream>, Status> {
        let traceparent = request
            .metadata()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        self.traceparents.lock().unwrap().push(traceparent);
        let req = request.into_inner();
        self.requests.lock().unwrap().push(req.clone());
        let mode = {
            let mut script = self.script.lock().unwrap();
            if script.is_empty() {
                RawMode::Echo
            } else {
                script.remove(0)
            }
        };
        let id = req.task_id.clone();
        match mode {
            RawMode::Unavailable => Err(Status::unavailable("raw agent: not now")),
            RawMode::Silent => {
                let first = tokio_stream::once(Ok(status_event(&id, 1, TaskState::Working, false)));
                Ok(Response::new(Box::pin(
                    first.chain(tokio_stream::pending()),
                )))
            }
            RawMode::Echo => Ok(Response::new(completed_stream(
                &id,
                to_struct(&from_opt_struct(req.input.as_ref())),
            ))),
        }
    }

    async fn cancel_task(
        &self,
        request: Request<CancelTaskRequest>,
    ) -> Result<Response<CancelTaskResponse>, Status> {
        self.cancels.lock().unwrap().push(request.into_inner());
        Ok(Response::new(CancelTaskResponse {
            state: TaskState::Canceled.into(),
        }))
    }

    async fn provide_input(
        &self,
        _: Request<agentmesh_proto::v1::AgentServiceProvideInputRequest>,
    ) -> Result<Response<agentmesh_proto::v1::AgentServiceProvideInputResponse>, Status> {
        Err(Status::unimplemented("this agent asks no questions"))
    }
}

/// A replica that claims another agent's card but answers every task with
/// an output that violates the skill's output schema (`{"bogus": true}`),
/// without checking it itself.
#[derive(Clone)]
pub struct Impostor {
    /// The card it presents.
    pub card: AgentCard,
    /// Tasks it answered.
    pub answered: Arc<AtomicU32>,
}

#[tonic::async_trait]
impl AgentService for Impostor {
    async fn get_agent_card(
        &self,
        _: Request<GetAgentCardRequest>,
    ) -> Result<Response<GetAgentCardResponse>, Status> {
        Ok(Response::new(GetAgentCardResponse {
            card: Some(self.card.clone()),
        }))
    }

    type ExecuteTaskStream = TaskStream;

    async fn execute_task(
        &self,
        request: Request<ExecuteTaskRequest>,
    ) -> Result<Response<TaskStream>, Status> {
        self.answered.fetch_add(1, Ordering::SeqCst);
        let id = request.into_inner().task_id;
        let Value::Object(bogus) = json!({"bogus": true}) else {
            unreachable!()
        };
        Ok(Response::new(completed_stream(&id, to_struct(&bogus))))
    }

    async fn cancel_task(
        &self,
        _: Request<CancelTaskRequest>,
    ) -> Result<Response<CancelTaskResponse>, Status> {
        Ok(Response::new(CancelTaskResponse {
            state: TaskState::Canceled.into(),
        }))
    }

    async fn provide_input(
        &self,
        _: Request<agentmesh_proto::v1::AgentServiceProvideInputRequest>,
    ) -> Result<Response<agentmesh_proto::v1::AgentServiceProvideInputResponse>, Status> {
        Err(Status::unimplemented("this agent asks no questions"))
    }
}
