//! Every run event is built here (by the run core, and by the store when
//! it ends a run cut by a crash), so that what a client reads is said one
//! way. It depends on nothing else in the crate.

use std::sync::Arc;
use std::time::Duration;

use agentmesh_proto::error::{ErrorReason, MeshError};
use agentmesh_proto::v1::{
    Artifact, Part, Provenance, Report, ReportChunk, RunEvent, RunFinished, RunResumed, RunState,
    StepCompleted, StepFailed, StepQueued, StepRerouted, StepRetrying, StepStarted, StepTaskEvent,
    StreamOptions, TaskEvent, run_event::Event,
};

/// Why a run a client canceled stops (`reason` as the client gave it, on
/// whichever replica it asked).
pub fn canceled_by_client(reason: &str) -> MeshError {
    let message = if reason.is_empty() {
        "canceled by the client".to_string()
    } else {
        format!("canceled by the client: {reason}")
    };
    MeshError::new(ErrorReason::Canceled, message)
}

/// An attempt of `step` started on `endpoint`.
pub fn step_started(
    step: &str,
    skill: &str,
    agent: &str,
    endpoint: &str,
    attempt: u32,
    task_id: &str,
) -> Event {
    Event::StepStarted(StepStarted {
        step_id: step.to_string(),
        skill: skill.to_string(),
        agent: agent.to_string(),
        endpoint: endpoint.to_string(),
        attempt,
        task_id: task_id.to_string(),
    })
}

/// Attempt `attempt` of `step` waits for a free replica of `skill`, with
/// `waiting` steps (itself included) in the skill's queue.
pub fn step_queued(step: &str, skill: &str, waiting: u32, attempt: u32) -> Event {
    Event::StepQueued(StepQueued {
        step_id: step.to_string(),
        skill: skill.to_string(),
        waiting,
        attempt,
    })
}

/// The next attempt of `step` goes to another replica.
pub fn step_rerouted(step: &str, from: &str, to: &str, reason: &str) -> Event {
    Event::StepRerouted(StepRerouted {
        step_id: step.to_string(),
        from_endpoint: from.to_string(),
        to_endpoint: to.to_string(),
        reason: reason.to_string(),
    })
}

/// Attempt `failed_attempt` failed for `reason`; the next starts after
/// `delay`.
pub fn step_retrying(
    step: &str,
    failed_attempt: u32,
    reason: ErrorReason,
    message: &str,
    delay: Duration,
) -> Event {
    Event::StepRetrying(StepRetrying {
        step_id: step.to_string(),
        failed_attempt,
        reason: reason.name().to_string(),
        message: message.to_string(),
        delay: delay.try_into().ok(),
    })
}

/// `step` completed with `output`.
pub fn step_completed(
    step: &str,
    output: agentmesh_proto::prost_types::Struct,
    provenance: Provenance,
    artifacts: Vec<Artifact>,
) -> Event {
    Event::StepCompleted(StepCompleted {
        step_id: step.to_string(),
        output: Some(output),
        provenance: Some(provenance),
        output_omitted: false,
        step_artifacts: artifacts,
    })
}

/// The run was taken up again by orchestrator `by`.
pub fn run_resumed(by: &str, completed: Vec<String>, resumed: Vec<String>) -> Event {
    Event::Resumed(RunResumed {
        orchestrator: by.to_string(),
        completed_steps: completed,
        resumed_steps: resumed,
    })
}

/// `step` failed for good after `attempts` attempts (0: it never started).
pub fn step_failed(step: &str, reason: ErrorReason, message: &str, attempts: u32) -> Event {
    Event::StepFailed(StepFailed {
        step_id: step.to_string(),
        reason: reason.name().to_string(),
        message: message.to_string(),
        attempts,
    })
}

/// An agent's own task event, passed on to clients.
pub fn step_event(step: &str, attempt: u32, event: TaskEvent) -> Event {
    Event::StepEvent(StepTaskEvent {
        step_id: step.to_string(),
        attempt,
        event: Some(event),
    })
}

/// One piece of a report artifact's bytes.
pub fn report_chunk(artifact: &Artifact, part: &Part, data: &[u8], last: bool) -> Event {
    Event::ReportChunk(ReportChunk {
        artifact_id: artifact.artifact_id.clone(),
        filename: part.filename.clone(),
        media_type: part.media_type.clone(),
        data: data.to_vec(),
        last_chunk: last,
    })
}

/// The run's final event: `state`, with the reason name (empty when it
/// completed) and the report, if one was made.
pub fn run_finished(
    state: RunState,
    reason: &str,
    message: String,
    report: Option<Report>,
) -> RunFinished {
    RunFinished {
        state: state.into(),
        reason: reason.to_string(),
        message,
        report,
    }
}

/// The final event of a run that failed for `reason` without a report.
pub fn run_failed(reason: ErrorReason, message: &str) -> RunFinished {
    run_finished(RunState::Failed, reason.name(), message.to_string(), None)
}

/// `event` as a stream with `options` delivers it: shared events are
/// copied here, once per client, and a step's output only when the client
/// wants it.
pub fn for_client(event: Arc<RunEvent>, options: &StreamOptions) -> RunEvent {
    if let Some(Event::StepCompleted(done)) = &event.event
        && (options.omit_step_outputs || !done.step_artifacts.is_empty())
    {
        // A step's artifacts stay in the log (for resuming); clients get
        // the report's.
        let omit = options.omit_step_outputs;
        return RunEvent {
            run_id: event.run_id.clone(),
            seq: event.seq,
            time: event.time,
            event: Some(Event::StepCompleted(StepCompleted {
                step_id: done.step_id.clone(),
                output: if omit { None } else { done.output.clone() },
                provenance: done.provenance.clone(),
                output_omitted: omit,
                step_artifacts: Vec::new(),
            })),
        };
    }
    Arc::unwrap_or_clone(event)
}
