//! The tonic adapter: the only place in the runtime that sees requests and
//! builds statuses. It maps protocol messages to [`crate::tasks`] calls and
//! [`MeshError`]s to statuses.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use agentmesh_proto::error::{ErrorReason, MeshError};
use agentmesh_proto::json::from_opt_struct;
use agentmesh_proto::v1::agent_service_server::AgentService;
use agentmesh_proto::v1::{
    AgentCard, AgentServiceProvideInputRequest, AgentServiceProvideInputResponse,
    CancelTaskRequest, CancelTaskResponse, ExecuteTaskRequest, GetAgentCardRequest,
    GetAgentCardResponse, TaskEvent, part,
};
use futures_util::{Stream, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::{Span, info_span};

use crate::agent::{Agent, InputArtifact, Task};
use crate::config::ServerConfig;
use crate::limits::grpc_timeout;
use crate::schema::SkillSchemas;
use crate::tasks::{Admission, DriveSpec, TaskLog, TaskTable, drive};
use crate::telemetry;

/// Shortest heartbeat interval a caller may ask for.
const MIN_HEARTBEAT: Duration = Duration::from_millis(50);
/// Longest heartbeat interval a caller may ask for.
const MAX_HEARTBEAT: Duration = Duration::from_secs(60);

type EventStream = Pin<Box<dyn Stream<Item = Result<TaskEvent, Status>> + Send>>;

/// The Agent gRPC service of one agent.
pub struct AgentGrpc<A> {
    agent: Arc<A>,
    card: AgentCard,
    skills: HashMap<String, Arc<SkillSchemas>>,
    table: Arc<TaskTable>,
    cfg: Arc<ServerConfig>,
}

impl<A: Agent> AgentGrpc<A> {
    /// Wraps an agent whose card's schemas are compiled.
    pub fn new(
        agent: Arc<A>,
        card: AgentCard,
        skills: HashMap<String, Arc<SkillSchemas>>,
        table: Arc<TaskTable>,
        cfg: Arc<ServerConfig>,
    ) -> Self {
        Self {
            agent,
            card,
            skills,
            table,
            cfg,
        }
    }

    fn start(
        &self,
        req: ExecuteTaskRequest,
        timeout: Option<Duration>,
        span: Span,
    ) -> Result<EventStream, MeshError> {
        let schemas = self.skills.get(&req.skill_id).ok_or_else(|| {
            let mut known: Vec<&str> = self.skills.keys().map(String::as_str).collect();
            known.sort_unstable();
            MeshError::new(
                ErrorReason::UnknownSkill,
                format!(
                    "agent {} has no skill {:?}; its skills are: {}",
                    self.card.name,
                    req.skill_id,
                    known.join(", ")
                ),
            )
            .with_meta("skill", req.skill_id.clone())
        })?;
        let input = from_opt_struct(req.input.as_ref());
        schemas.check_input(&input)?;
        let deadline = self.deadline(req.deadline.as_ref(), timeout)?;
        let heartbeat = req
            .heartbeat_interval
            .and_then(|d| Duration::try_from(d).ok())
            .unwrap_or(self.cfg.heartbeat)
            .clamp(MIN_HEARTBEAT, MAX_HEARTBEAT);

        match self.table.admit(&req.task_id, &req.idempotency_key)? {
            Admission::Repeat(log) => {
                tracing::debug!(parent: &span, "idempotent repeat: following the first task");
                Ok(Box::pin(log.follow(0).map(Ok)))
            }
            Admission::Started {
                log,
                cancel,
                permit,
                input: slot,
            } => {
                let answers = req
                    .answers
                    .into_iter()
                    .map(|a| (a.input_id, from_opt_struct(a.answer.as_ref())))
                    .collect();
                let task = Task {
                    task_id: req.task_id,
                    run_id: req.run_id,
                    skill_id: req.skill_id,
                    input,
                    input_artifacts: req
                        .input_artifacts
                        .into_iter()
                        .map(input_artifact)
                        .collect(),
                    attempt: req.attempt.max(1),
                };
                let spec = DriveSpec {
                    agent: Arc::clone(&self.agent),
                    table: Arc::clone(&self.table),
                    task,
                    idempotency_key: req.idempotency_key,
                    deadline,
                    heartbeat,
                    schemas: Arc::clone(schemas),
                    log: Arc::clone(&log),
                    cancel: cancel.clone(),
                    permit,
                    input: slot,
                    answers,
                    fault_delay: self.cfg.fault_delay,
                    fault_fail_attempts: self.cfg.fault_fail_attempts,
                };
                tokio::spawn(drive(spec, span));
                Ok(owned_stream(log, cancel))
            }
        }
    }

    fn deadline(
        &self,
        requested: Option<&agentmesh_proto::prost_types::Timestamp>,
        timeout: Option<Duration>,
    ) -> Result<Instant, MeshError> {
        let now = Instant::now();
        let mut budget = self.cfg.max_task;
        if let Some(t) = timeout {
            budget = budget.min(t);
        }
        if let Some(ts) = requested {
            let at = SystemTime::try_from(*ts).map_err(|_| {
                MeshError::new(
                    ErrorReason::InvalidInput,
                    "deadline is not a valid timestamp",
                )
                .with_meta("field", "deadline")
            })?;
            match at.duration_since(SystemTime::now()) {
                Ok(left) => budget = budget.min(left),
                Err(_) => {
                    return Err(MeshError::new(
                        ErrorReason::DeadlineExceeded,
                        "the task's deadline had already passed when it arrived",
                    ));
                }
            }
        }
        Ok(now + budget)
    }
}

/// The stream of the caller that started the task: dropping it before the
/// task ended (the caller went away) cancels the task.
fn owned_stream(log: Arc<TaskLog>, cancel: CancellationToken) -> EventStream {
    struct CancelOnDrop {
        log: Arc<TaskLog>,
        cancel: CancellationToken,
    }
    impl Drop for CancelOnDrop {
        fn drop(&mut self) {
            if !self.log.is_closed() {
                self.cancel.cancel();
            }
        }
    }
    let guard = CancelOnDrop {
        log: Arc::clone(&log),
        cancel,
    };
    Box::pin(log.follow(0).map(move |event| {
        let _keep = &guard;
        Ok(event)
    }))
}

fn input_artifact(a: agentmesh_proto::v1::Artifact) -> InputArtifact {
    let mut media_type = String::new();
    let mut data = Vec::new();
    for p in a.parts {
        if media_type.is_empty() {
            media_type = p.media_type.clone();
        }
        match p.content {
            Some(part::Content::Raw(bytes)) => data.extend_from_slice(&bytes),
            Some(part::Content::Text(text)) => data.extend_from_slice(text.as_bytes()),
            Some(part::Content::Data(st)) => {
                let json = serde_json::Value::Object(from_opt_struct(Some(&st)));
                data.extend_from_slice(json.to_string().as_bytes());
            }
            Some(part::Content::Uri(_)) | None => {}
        }
    }
    InputArtifact {
        artifact_id: a.artifact_id,
        name: a.name,
        media_type,
        data,
    }
}

#[tonic::async_trait]
impl<A: Agent> AgentService for AgentGrpc<A> {
    async fn get_agent_card(
        &self,
        _request: Request<GetAgentCardRequest>,
    ) -> Result<Response<GetAgentCardResponse>, Status> {
        Ok(Response::new(GetAgentCardResponse {
            card: Some(self.card.clone()),
        }))
    }

    type ExecuteTaskStream = EventStream;

    async fn execute_task(
        &self,
        request: Request<ExecuteTaskRequest>,
    ) -> Result<Response<Self::ExecuteTaskStream>, Status> {
        let timeout = grpc_timeout(request.metadata());
        let mut parent = telemetry::context::extract(request.metadata());
        let req = request.into_inner();
        if !parent.is_valid()
            && let Some(t) = &req.trace
        {
            parent = telemetry::context::extract_fields(&t.traceparent, &t.tracestate);
        }
        let span = info_span!(
            parent: None,
            "task",
            otel.kind = "server",
            run_id = %req.run_id,
            task_id = %req.task_id,
            skill = %req.skill_id,
            attempt = req.attempt,
            outcome = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        telemetry::context::join(&span, &parent);
        self.start(req, timeout, span)
            .map(Response::new)
            .map_err(MeshError::into_status)
    }

    async fn cancel_task(
        &self,
        request: Request<CancelTaskRequest>,
    ) -> Result<Response<CancelTaskResponse>, Status> {
        let req = request.into_inner();
        let state = self
            .table
            .cancel(&req.task_id)
            .await
            .map_err(MeshError::into_status)?;
        Ok(Response::new(CancelTaskResponse {
            state: state.into(),
        }))
    }

    async fn provide_input(
        &self,
        request: Request<AgentServiceProvideInputRequest>,
    ) -> Result<Response<AgentServiceProvideInputResponse>, Status> {
        let req = request.into_inner();
        let answer = req.answer.ok_or_else(|| {
            MeshError::new(ErrorReason::InvalidInput, "answer is required")
                .with_meta("field", "answer")
                .into_status()
        })?;
        self.table
            .provide(&req.task_id, answer)
            .map_err(MeshError::into_status)?;
        Ok(Response::new(AgentServiceProvideInputResponse {}))
    }
}
