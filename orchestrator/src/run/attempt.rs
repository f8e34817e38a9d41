//! One attempt of one task on one replica: `ExecuteTask` (or an A2A
//! agent's `SendStreamingMessage`, through [`RemoteTask`]), passing its
//! events on as they arrive, with the attempt deadline, the heartbeat lease
//! and a stop switch. Abandoning an attempt sends `CancelTask` so the agent
//! stops working on it. This is the orchestrator's only reader of a task
//! stream: a run's steps and the goal front-end's catalog call go through
//! it alike.

use std::future::Future;
use std::time::{Duration, SystemTime};

use agentmesh_proto::error::ErrorReason;
use agentmesh_proto::json::from_opt_struct;
use agentmesh_proto::v1::agent_service_client::AgentServiceClient;
use agentmesh_proto::v1::{
    AgentServiceProvideInputRequest, Artifact, CancelTaskRequest, ExecuteTaskRequest, InputAnswer,
    InputRequest, Part, TaskEvent, part, task_event,
};
use agentmesh_runtime::JsonObject;
use agentmesh_runtime::auth::AuthChannel;
use agentmesh_runtime::telemetry::context;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::routing::Transport;
use crate::run::failure::Failure;
use crate::run::waiting::Asked;

/// How long the end of a finished task's stream is waited for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a `CancelTask` for an abandoned attempt may take.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(1);
/// How long handing an answer to the agent may take.
const PROVIDE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a successful attempt returned.
pub struct AttemptOutput {
    /// The result's output.
    pub output: JsonObject,
    /// The same output as the agent sent it (passed on to clients as is).
    pub output_pb: Option<agentmesh_proto::prost_types::Struct>,
    /// Artifacts, reassembled from chunks.
    pub artifacts: Vec<Artifact>,
}

/// Who watches an attempt: where its events go and what stops it.
pub trait Observer: Sync {
    /// An event worth passing on (progress, a state change, an artifact's
    /// announcement; not heartbeats or the final state).
    fn forward(&self, event: TaskEvent);
    /// Cancelled when the attempt must be abandoned.
    fn stop(&self) -> &CancellationToken;
    /// Why it was stopped.
    fn stopped(&self) -> Failure;
    /// The task reported `used` language-model tokens; an error fails the
    /// attempt (the run's budget is spent).
    fn tokens(&self, used: u32) -> Result<(), Failure> {
        let _ = used;
        Ok(())
    }
    /// The task asked `request` (its status went INPUT_REQUIRED): answered
    /// already, or waiting until when. By default nobody can answer, and
    /// the attempt fails.
    fn ask(&self, request: &InputRequest) -> Result<Asked, Failure> {
        Err(Failure::new(
            ErrorReason::AgentFailed,
            format!(
                "the agent asked {:?}, and nobody can answer here",
                request.question
            ),
        ))
    }
    /// Waits for the answer to question `input_id` until `until`.
    fn answer(&self, input_id: String, until: SystemTime) -> Answer<'_> {
        let _ = (input_id, until);
        Box::pin(std::future::pending())
    }
}

/// Watches nothing: events are dropped, and `stop` stops the attempt.
pub struct Detached(pub CancellationToken);

impl Observer for Detached {
    fn forward(&self, _event: TaskEvent) {}

    fn stop(&self) -> &CancellationToken {
        &self.0
    }

    fn stopped(&self) -> Failure {
        Failure::stopped(None)
    }
}

/// Everything one attempt needs.
pub struct AttemptSpec<'a> {
    /// Where its events go, and what stops it.
    pub observer: &'a dyn Observer,
    /// When the attempt is abandoned.
    pub deadline: Instant,
    /// Longest silence from the agent.
    pub lease: Duration,
    /// Largest message accepted from the agent.
    pub max_message_bytes: usize,
    /// Most artifact bytes one attempt may return.
    pub max_artifact_bytes: usize,
}

/// A task's events as the orchestrator reads them, however the agent is
/// reached.
pub type Events = BoxStream<'static, Result<TaskEvent, Failure>>;

/// One task on a remote agent: a mesh agent over `AgentService`, or an A2A
/// agent through its client.
pub trait RemoteTask: Send {
    /// Whether the agent sends heartbeats, so that the heartbeat lease
    /// applies (A2A agents send none: their attempts are bounded by the
    /// deadline).
    fn heartbeats(&self) -> bool;
    /// Starts the task; its events.
    fn start(
        &mut self,
        request: ExecuteTaskRequest,
        deadline: Instant,
    ) -> impl Future<Output = Result<Events, Failure>> + Send;
    /// Asks the agent to stop working on the task (bounded, best effort).
    fn cancel(&mut self, task_id: &str, reason: &str) -> impl Future<Output = ()> + Send;
    /// Hands the task the answer to its question. A failure the next
    /// attempt may not hit (the agent lost the task) is retryable: that
    /// attempt carries the answer.
    fn provide(
        &mut self,
        task_id: &str,
        answer: InputAnswer,
    ) -> impl Future<Output = Result<(), Failure>> + Send;
}

/// A task on a mesh agent.
struct MeshTask {
    client: AgentServiceClient<AuthChannel>,
}

impl RemoteTask for MeshTask {
    fn heartbeats(&self) -> bool {
        true
    }

    async fn start(
        &mut self,
        request: ExecuteTaskRequest,
        deadline: Instant,
    ) -> Result<Events, Failure> {
        // The trace context travels in metadata, as agent.proto says (and
        // in the body, for agents that read it there).
        let mut metadata = tonic::metadata::MetadataMap::new();
        if let Some(trace) = &request.trace {
            context::inject_fields(&mut metadata, &trace.traceparent, &trace.tracestate);
        }
        let mut request =
            tonic::Request::from_parts(metadata, tonic::Extensions::default(), request);
        request.set_timeout(deadline.saturating_duration_since(Instant::now()));
        match self.client.execute_task(request).await {
            Ok(resp) => Ok(resp
                .into_inner()
                .map(|r| r.map_err(|status| Failure::from_status(&status)))
                .boxed()),
            Err(status) => Err(Failure::from_status(&status)),
        }
    }

    async fn cancel(&mut self, task_id: &str, reason: &str) {
        let req = CancelTaskRequest {
            task_id: task_id.to_string(),
            reason: reason.to_string(),
        };
        match tokio::time::timeout(CANCEL_TIMEOUT, self.client.cancel_task(req)).await {
            Ok(Ok(_)) => debug!(task_id, reason, "task cancelled on the agent"),
            Ok(Err(status)) => debug!(task_id, %status, "CancelTask failed"),
            Err(_) => debug!(task_id, "CancelTask timed out"),
        }
    }

    async fn provide(&mut self, task_id: &str, answer: InputAnswer) -> Result<(), Failure> {
        let req = AgentServiceProvideInputRequest {
            task_id: task_id.to_string(),
            answer: Some(answer),
        };
        match tokio::time::timeout(PROVIDE_TIMEOUT, self.client.provide_input(req)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) => Err(answer_lost(Failure::from_status(&status))),
            Err(_) => Err(answer_lost(Failure::new(
                ErrorReason::AgentUnavailable,
                "the agent took no answer within 5 s",
            ))),
        }
    }
}

/// An answer the agent could not take: unless the agent refused it (a
/// schema of its own), the next attempt carries it.
pub fn answer_lost(mut f: Failure) -> Failure {
    if !matches!(
        f.reason,
        ErrorReason::InvalidInput | ErrorReason::PermissionDenied
    ) {
        f.message = format!(
            "the agent could not take the answer ({}); trying again with it",
            f.message
        );
        f.reason = ErrorReason::AgentUnavailable;
        f.retryable = true;
    }
    f
}

/// Runs one attempt on the endpoint `transport` reaches.
pub async fn run(
    transport: Transport,
    request: ExecuteTaskRequest,
    spec: AttemptSpec<'_>,
) -> Result<AttemptOutput, Failure> {
    match transport {
        Transport::Mesh(channel) => {
            let client = AgentServiceClient::new(channel)
                .max_decoding_message_size(spec.max_message_bytes)
                .max_encoding_message_size(spec.max_message_bytes);
            drive(MeshTask { client }, request, spec).await
        }
        Transport::A2a(peer) => drive(peer.task(), request, spec).await,
    }
}

async fn drive(
    mut remote: impl RemoteTask,
    request: ExecuteTaskRequest,
    spec: AttemptSpec<'_>,
) -> Result<AttemptOutput, Failure> {
    let task_id = request.task_id.clone();
    let skill = request.skill_id.clone();
    let stopped_now = spec.observer.stop().cancelled();
    tokio::pin!(stopped_now);

    // The lease timer is not reset on every event: it fires at the end of
    // the lease counted from the last event seen when it was armed, and is
    // re-armed from the latest event if one came since.
    // Agents without heartbeats (A2A) have no lease: the deadline bounds
    // them.
    let leased = remote.heartbeats();
    let mut last_seen = Instant::now();
    let lease = tokio::time::sleep_until(last_seen + spec.lease);
    tokio::pin!(lease);
    let deadline = tokio::time::sleep_until(spec.deadline);
    tokio::pin!(deadline);

    let mut stream = tokio::select! {
        started = remote.start(request, spec.deadline) => started?,
        () = &mut deadline => return Err(Failure::deadline()),
        () = &mut stopped_now => return Err(spec.observer.stopped()),
    };

    let mut collected = Collected::default();
    // The question the task waits on: its id, since when (the attempt's
    // deadline pauses meanwhile), and its answer to come.
    let mut waiting: Option<(String, Instant, Answer<'_>)> = None;
    let mut ends = spec.deadline;
    loop {
        let next = tokio::select! {
            biased;
            () = &mut stopped_now => {
                remote.cancel(&task_id, "run stopped").await;
                return Err(spec.observer.stopped());
            }
            () = &mut deadline, if waiting.is_none() => {
                remote.cancel(&task_id, "step deadline exceeded").await;
                return Err(Failure::deadline());
            }
            answered = async {
                match waiting.as_mut() {
                    Some((_, _, answer)) => answer.await,
                    None => std::future::pending().await,
                }
            }, if waiting.is_some() => {
                let Some((input_id, since, _)) = waiting.take() else { continue };
                let answer = match answered {
                    Ok(answer) => answer,
                    Err(f) => {
                        remote.cancel(&task_id, "no answer").await;
                        return Err(f);
                    }
                };
                if let Err(f) = give(&mut remote, &task_id, input_id, &answer).await {
                    remote.cancel(&task_id, "the answer could not be given").await;
                    return Err(f);
                }
                ends += since.elapsed();
                deadline.as_mut().reset(ends);
                continue;
            }
            () = &mut lease, if leased => {
                let renewed = last_seen + spec.lease;
                if renewed > Instant::now() {
                    lease.as_mut().reset(renewed);
                    continue;
                }
                warn!(lease_ms = u64::try_from(spec.lease.as_millis()).unwrap_or(u64::MAX), "heartbeat lease lost; cancelling the task");
                remote.cancel(&task_id, "heartbeat lease lost").await;
                crate::metrics::metrics()
                    .lease_losses
                    .get_or_create(&crate::metrics::Skill { skill: skill.clone() })
                    .inc();
                return Err(Failure::new(
                    ErrorReason::AgentUnavailable,
                    format!("the agent sent nothing for {} ms (heartbeat lease lost)", spec.lease.as_millis()),
                ));
            }
            next = stream.next() => next,
        };
        let event = match next {
            Some(Ok(event)) => event,
            None => break,
            Some(Err(failure)) => return Err(failure),
        };
        last_seen = Instant::now();
        let took = collected.take(event, &spec)?;
        if let Took::Asks(request) = &took {
            match spec.observer.ask(request) {
                Ok(Asked::Answered(answer)) => {
                    give(&mut remote, &task_id, request.input_id.clone(), &answer).await?;
                }
                Ok(Asked::Waits(until)) => {
                    let answer = spec.observer.answer(request.input_id.clone(), until);
                    waiting = Some((request.input_id.clone(), Instant::now(), answer));
                }
                Err(f) => {
                    remote
                        .cancel(&task_id, "the question cannot be answered")
                        .await;
                    return Err(f);
                }
            }
            continue;
        }
        if matches!(took, Took::Final) {
            // Read the stream to its end (trailers) instead of dropping it:
            // a dropped stream is a RST_STREAM, and servers refuse clients
            // that reset many streams (HTTP/2 rapid-reset protection). The
            // trailers are usually here already; only then is a timer set.
            let mut rest = std::pin::pin!(async { while let Some(Ok(_)) = stream.next().await {} });
            if futures_util::poll!(rest.as_mut()).is_pending() {
                let _ = tokio::time::timeout(DRAIN_TIMEOUT, rest).await;
            }
            break;
        }
    }
    match (collected.output, collected.failure) {
        (_, Some(f)) => Err(f),
        (Some(output), None) => Ok(AttemptOutput {
            output,
            output_pb: collected.output_pb,
            artifacts: collected.artifacts,
        }),
        (None, None) => Err(Failure::new(
            ErrorReason::AgentUnavailable,
            "the agent's stream ended without a result",
        )),
    }
}

/// A question's answer to come (or why none came).
pub type Answer<'a> = BoxFuture<'a, Result<JsonObject, Failure>>;

/// Hands `answer` to the task's question `input_id`.
async fn give(
    remote: &mut impl RemoteTask,
    task_id: &str,
    input_id: String,
    answer: &JsonObject,
) -> Result<(), Failure> {
    remote
        .provide(
            task_id,
            InputAnswer {
                input_id,
                answer: Some(agentmesh_proto::json::to_struct(answer)),
            },
        )
        .await
}

/// What one event of a task meant.
enum Took {
    /// Nothing more to do.
    More,
    /// The task reached its final state.
    Final,
    /// The task asks a question.
    Asks(InputRequest),
}

#[derive(Default)]
struct Collected {
    output: Option<JsonObject>,
    output_pb: Option<agentmesh_proto::prost_types::Struct>,
    failure: Option<Failure>,
    artifacts: Vec<Artifact>,
    artifact_bytes: usize,
}

impl Collected {
    /// Takes one event.
    fn take(&mut self, event: TaskEvent, spec: &AttemptSpec<'_>) -> Result<Took, Failure> {
        let forward = |event: TaskEvent| spec.observer.forward(event);
        match event.event {
            Some(task_event::Event::Heartbeat(_)) | None => Ok(Took::More),
            Some(task_event::Event::Result(r)) => {
                self.output = Some(from_opt_struct(r.output.as_ref()));
                self.output_pb = r.output;
                Ok(Took::More)
            }
            Some(task_event::Event::Failure(f)) => {
                let reason = ErrorReason::from_name(&f.reason).unwrap_or(ErrorReason::AgentFailed);
                let mut failure = Failure::from_agent(reason, f.message, f.retryable);
                failure.retry_after = f.retry_after.and_then(|d| Duration::try_from(d).ok());
                self.failure = Some(failure);
                Ok(Took::More)
            }
            Some(task_event::Event::Status(ref s)) => {
                // The final state is told by StepCompleted/StepFailed/
                // StepRetrying, which say more, and SUBMITTED adds nothing
                // to StepStarted: do not send them twice.
                if s.r#final {
                    return Ok(Took::Final);
                }
                if s.state() == agentmesh_proto::v1::TaskState::Submitted {
                    return Ok(Took::More);
                }
                let asks = (s.state() == agentmesh_proto::v1::TaskState::InputRequired)
                    .then(|| s.input.clone())
                    .flatten();
                forward(event);
                Ok(asks.map_or(Took::More, Took::Asks))
            }
            Some(task_event::Event::Progress(ref p)) => {
                if p.tokens_used > 0 {
                    spec.observer.tokens(p.tokens_used)?;
                }
                forward(event);
                Ok(Took::More)
            }
            Some(task_event::Event::ArtifactChunk(chunk)) => {
                self.artifact_bytes += chunk.data.len();
                if self.artifact_bytes > spec.max_artifact_bytes {
                    return Err(Failure::new(
                        ErrorReason::ResourceExhausted,
                        format!(
                            "the step's artifacts exceed {} bytes (execution.max_artifact_bytes)",
                            spec.max_artifact_bytes
                        ),
                    ));
                }
                self.add_chunk(chunk, &forward, event.task_id, event.seq, event.time);
                Ok(Took::More)
            }
        }
    }

    fn add_chunk(
        &mut self,
        chunk: agentmesh_proto::v1::ArtifactChunk,
        forward: &impl Fn(TaskEvent),
        task_id: String,
        seq: u64,
        time: Option<agentmesh_proto::prost_types::Timestamp>,
    ) {
        let append_to = chunk
            .append
            .then(|| {
                self.artifacts
                    .iter_mut()
                    .rev()
                    .find(|a| a.artifact_id == chunk.artifact_id)
            })
            .flatten();
        if let Some(artifact) = append_to {
            if let Some(Part {
                content: Some(part::Content::Raw(bytes)),
                ..
            }) = artifact.parts.first_mut()
            {
                bytes.extend_from_slice(&chunk.data);
            }
            return;
        }
        // Clients learn of the artifact as it starts; the bytes come with
        // the report.
        let mut announced = chunk.clone();
        announced.data = Default::default();
        forward(TaskEvent {
            task_id,
            seq,
            time,
            event: Some(task_event::Event::ArtifactChunk(announced)),
        });
        self.artifacts.push(Artifact {
            artifact_id: chunk.artifact_id,
            name: chunk.name.clone(),
            description: chunk.description,
            parts: vec![Part {
                content: Some(part::Content::Raw(chunk.data.to_vec())),
                media_type: chunk.media_type,
                filename: chunk.name,
            }],
            metadata: chunk.metadata,
        });
    }
}
