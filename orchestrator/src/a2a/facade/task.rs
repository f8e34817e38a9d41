//! A run as an A2A task: the task's id is the run id, its states are the
//! run's, its status messages tell the run's events, and its artifacts are
//! the report's files.
//!
//! | run | A2A task |
//! |---|---|
//! | PENDING | SUBMITTED |
//! | RUNNING | WORKING |
//! | COMPLETED | COMPLETED |
//! | PARTIAL | COMPLETED, `metadata.agentmesh.runState = RUN_STATE_PARTIAL` |
//! | FAILED (any reason, INTERRUPTED included) | FAILED |
//! | CANCELED | CANCELED |
//! | WAITING (a step waits for a person) | INPUT_REQUIRED, the question as the status message |
//! | REJECTED (at an approval gate) | REJECTED |
//!
//! A run never maps to AUTH_REQUIRED, and a run cut short by a crash is
//! resumed or FAILED, never INPUT_REQUIRED.

use std::collections::{HashMap, HashSet};

use a2a::{
    Artifact, Message, Part, Role, StreamResponse, Task, TaskArtifactUpdateEvent, TaskState,
    TaskStatus, TaskStatusUpdateEvent,
};
use agentmesh_proto::v1::run_event::Event;
use agentmesh_proto::v1::{
    ReportChunk, RunEvent, RunFinished, RunState, RunSummary, TaskState as MeshTaskState,
    task_event,
};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// The A2A state of a run in `state`.
pub fn state(state: RunState) -> TaskState {
    match state {
        RunState::Unspecified | RunState::Pending => TaskState::Submitted,
        RunState::Running => TaskState::Working,
        RunState::Completed | RunState::Partial => TaskState::Completed,
        RunState::Failed => TaskState::Failed,
        RunState::Canceled => TaskState::Canceled,
        RunState::Waiting => TaskState::InputRequired,
        RunState::Rejected => TaskState::Rejected,
    }
}

/// The run states an A2A state filter stands for.
pub fn run_states(state: &TaskState) -> &'static [RunState] {
    match state {
        TaskState::Submitted => &[RunState::Pending],
        TaskState::Working => &[RunState::Running],
        TaskState::Completed => &[RunState::Completed, RunState::Partial],
        TaskState::Failed => &[RunState::Failed],
        TaskState::Canceled => &[RunState::Canceled],
        TaskState::InputRequired => &[RunState::Waiting],
        TaskState::Rejected => &[RunState::Rejected],
        _ => &[],
    }
}

/// An agent message of one text part.
pub fn agent_text(task_id: &str, context_id: &str, text: String) -> Message {
    let mut message = Message::new(Role::Agent, vec![Part::text(text)]);
    message.task_id = Some(task_id.to_string());
    message.context_id = Some(context_id.to_string());
    message
}

fn time(ts: Option<&agentmesh_proto::prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    let ts = ts?;
    DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).unwrap_or(0))
}

fn mesh_meta(value: Value) -> Option<HashMap<String, Value>> {
    Some(HashMap::from([("agentmesh".to_string(), value)]))
}

/// What a run looks like as a task, without its artifacts.
pub struct TaskView<'a> {
    /// The run's summary line.
    pub summary: &'a RunSummary,
    /// Its end, once reached.
    pub finished: Option<&'a RunFinished>,
    /// The A2A context it belongs to.
    pub context_id: &'a str,
}

impl TaskView<'_> {
    /// The task, with `artifacts` and, when `history` is set, the user
    /// message that started it (the goal).
    pub fn task(&self, artifacts: Vec<Artifact>, history: bool) -> Task {
        let run = self.summary;
        let run_state = run.state();
        let text = match self.finished {
            Some(f) if !f.message.is_empty() => f.message.clone(),
            Some(f) => f
                .report
                .as_ref()
                .map(|r| r.summary.clone())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "the run completed".to_string()),
            None => format!("run {}", run_state.as_str_name()),
        };
        let history = history.then(|| {
            let mut goal = Message::new(Role::User, vec![Part::text(run.goal.clone())]);
            goal.message_id = format!("{}-goal", run.run_id);
            goal.task_id = Some(run.run_id.clone());
            goal.context_id = Some(self.context_id.to_string());
            vec![goal]
        });
        Task {
            id: run.run_id.clone(),
            context_id: self.context_id.to_string(),
            status: TaskStatus {
                state: state(run_state),
                message: Some(agent_text(&run.run_id, self.context_id, text)),
                timestamp: time(run.finished.as_ref().or(run.created.as_ref())),
            },
            artifacts: (!artifacts.is_empty()).then_some(artifacts),
            history,
            metadata: mesh_meta(json!({
                "runState": run_state.as_str_name(),
                "reason": self.finished.map(|f| f.reason.clone()).unwrap_or_default(),
                "lastSeq": run.last_seq,
                "owner": run.owner,
            })),
        }
    }
}

/// The id (and name) of the artifact holding the report as data.
pub const REPORT_ARTIFACT: &str = "report.json";

/// The report of a finished run as an artifact of one data part (the shape
/// of meshctl's `report.json`).
fn report_artifact(finished: &RunFinished) -> Option<Artifact> {
    let report = finished.report.as_ref()?;
    let mut part = Part::data(agentmesh_proto::report::report(report));
    part.media_type = Some("application/json".to_string());
    Some(Artifact {
        artifact_id: REPORT_ARTIFACT.to_string(),
        name: Some(REPORT_ARTIFACT.to_string()),
        description: Some("The integrated report: sections, provenance, summary".to_string()),
        parts: vec![part],
        metadata: None,
        extensions: None,
    })
}

/// Gathers a finished run's report files from its `ReportChunk` events,
/// and the report itself from its `RunFinished`.
#[derive(Default)]
pub struct Files {
    order: Vec<String>,
    files: HashMap<String, (String, String, Vec<u8>)>,
    report: Option<Artifact>,
}

impl Files {
    /// Takes one event (anything but a report chunk or the end is ignored).
    pub fn take(&mut self, event: &RunEvent) {
        if let Some(Event::Finished(f)) = &event.event {
            self.report = report_artifact(f);
            return;
        }
        let Some(Event::ReportChunk(chunk)) = &event.event else {
            return;
        };
        let entry = self
            .files
            .entry(chunk.artifact_id.clone())
            .or_insert_with(|| {
                self.order.push(chunk.artifact_id.clone());
                (chunk.filename.clone(), chunk.media_type.clone(), Vec::new())
            });
        entry.2.extend_from_slice(&chunk.data);
    }

    /// The files as A2A artifacts, in the order they started, then the
    /// report as data.
    pub fn artifacts(mut self) -> Vec<Artifact> {
        let mut out: Vec<Artifact> = self
            .order
            .iter()
            .filter_map(|id| {
                let (filename, media_type, data) = self.files.remove(id)?;
                Some(artifact(id, &filename, &media_type, data))
            })
            .collect();
        out.extend(self.report.take());
        out
    }
}

fn artifact(id: &str, filename: &str, media_type: &str, data: Vec<u8>) -> Artifact {
    let mut part = Part::raw(data);
    if !filename.is_empty() {
        part.filename = Some(filename.to_string());
    }
    if !media_type.is_empty() {
        part.media_type = Some(media_type.to_string());
    }
    Artifact {
        artifact_id: id.to_string(),
        name: (!filename.is_empty()).then(|| filename.to_string()),
        description: None,
        parts: vec![part],
        metadata: None,
        extensions: None,
    }
}

/// Turns a run's events into A2A stream events, one run at a time.
pub struct Stream {
    task_id: String,
    context_id: String,
    started: HashSet<String>,
    /// Steps waiting for a person now.
    waiting: HashSet<String>,
}

impl Stream {
    /// A stream of the run `task_id` in `context_id`.
    pub fn new(task_id: &str, context_id: &str) -> Self {
        Self {
            task_id: task_id.to_string(),
            context_id: context_id.to_string(),
            started: HashSet::new(),
            waiting: HashSet::new(),
        }
    }

    /// The A2A events for `event`: none, one, or, at the end, the report
    /// as data and then the final status.
    pub fn events(&mut self, event: &RunEvent) -> Vec<StreamResponse> {
        let mut out = Vec::new();
        if let Some(Event::Finished(f)) = &event.event
            && let Some(report) = report_artifact(f)
        {
            out.push(StreamResponse::ArtifactUpdate(TaskArtifactUpdateEvent {
                task_id: self.task_id.clone(),
                context_id: self.context_id.clone(),
                artifact: report,
                append: Some(false),
                last_chunk: Some(true),
                metadata: mesh_meta(json!({ "seq": event.seq })),
            }));
        }
        out.extend(self.event(event));
        out
    }

    /// The A2A event for `event`, if it has one.
    fn event(&mut self, event: &RunEvent) -> Option<StreamResponse> {
        let seq = event.seq;
        let at = time(event.time.as_ref());
        let (kind, step, text, run_state) = match event.event.as_ref()? {
            Event::ReportChunk(chunk) => return Some(self.chunk(chunk, seq)),
            Event::Planned(p) => {
                let steps: Vec<&str> = p
                    .steps
                    .iter()
                    .filter_map(|s| s.step.as_ref().map(|s| s.id.as_str()))
                    .collect();
                let text = format!("planned {} steps: {}", steps.len(), steps.join(", "));
                ("planned", "", text, RunState::Running)
            }
            Event::StepStarted(s) => {
                let text = format!(
                    "step {} started on {} ({}), attempt {}",
                    s.step_id, s.agent, s.endpoint, s.attempt
                );
                ("step_started", s.step_id.as_str(), text, RunState::Running)
            }
            Event::StepEvent(e) => {
                let text = match e.event.as_ref()?.event.as_ref()? {
                    task_event::Event::Progress(p) if !p.message.is_empty() => {
                        format!("{}: {}", e.step_id, p.message)
                    }
                    task_event::Event::Status(s) if s.state() == MeshTaskState::InputRequired => {
                        format!("{} is waiting for input: {}", e.step_id, s.message)
                    }
                    _ => return None,
                };
                ("step_event", e.step_id.as_str(), text, RunState::Running)
            }
            Event::StepRetrying(r) => {
                let text = format!(
                    "step {} attempt {} failed ({}: {}); retrying",
                    r.step_id, r.failed_attempt, r.reason, r.message
                );
                ("step_retrying", r.step_id.as_str(), text, RunState::Running)
            }
            Event::StepRerouted(r) => {
                let text = format!(
                    "step {} moves from {} to {}: {}",
                    r.step_id, r.from_endpoint, r.to_endpoint, r.reason
                );
                ("step_rerouted", r.step_id.as_str(), text, RunState::Running)
            }
            Event::StepQueued(q) => {
                let text = format!(
                    "step {} waits for a free {} replica ({} waiting)",
                    q.step_id, q.skill, q.waiting
                );
                ("step_queued", q.step_id.as_str(), text, RunState::Running)
            }
            Event::StepCompleted(c) => {
                self.waiting.remove(&c.step_id);
                let agent = c
                    .provenance
                    .as_ref()
                    .map(|p| format!(" by {} ({})", p.agent, p.endpoint))
                    .unwrap_or_default();
                let text = format!("step {} completed{agent}", c.step_id);
                (
                    "step_completed",
                    c.step_id.as_str(),
                    text,
                    RunState::Running,
                )
            }
            Event::StepFailed(f) => {
                self.waiting.remove(&f.step_id);
                let text = format!("step {} failed ({}): {}", f.step_id, f.reason, f.message);
                ("step_failed", f.step_id.as_str(), text, RunState::Running)
            }
            Event::StepWaiting(w) => {
                self.waiting.insert(w.step_id.clone());
                (
                    "step_waiting",
                    w.step_id.as_str(),
                    w.question.clone(),
                    RunState::Running,
                )
            }
            Event::StepAnswered(a) => {
                self.waiting.remove(&a.step_id);
                let text = format!("step {} answered", a.step_id);
                ("step_answered", a.step_id.as_str(), text, RunState::Running)
            }
            Event::Resumed(r) => {
                let text = format!(
                    "resumed by {}: {} steps kept, {} sent again",
                    r.orchestrator,
                    r.completed_steps.len(),
                    r.resumed_steps.len()
                );
                ("resumed", "", text, RunState::Running)
            }
            Event::Finished(f) => {
                let text = if f.message.is_empty() {
                    f.report
                        .as_ref()
                        .map(|r| r.summary.clone())
                        .unwrap_or_default()
                } else {
                    f.message.clone()
                };
                ("finished", "", text, f.state())
            }
        };
        let run_state = if run_state == RunState::Running && !self.waiting.is_empty() {
            RunState::Waiting
        } else {
            run_state
        };
        Some(StreamResponse::StatusUpdate(TaskStatusUpdateEvent {
            task_id: self.task_id.clone(),
            context_id: self.context_id.clone(),
            status: TaskStatus {
                state: state(run_state),
                message: Some(agent_text(&self.task_id, &self.context_id, text)),
                timestamp: at,
            },
            metadata: mesh_meta(json!({
                "seq": seq,
                "event": kind,
                "stepId": step,
                "runState": run_state.as_str_name(),
            })),
        }))
    }

    fn chunk(&mut self, chunk: &ReportChunk, seq: u64) -> StreamResponse {
        let first = self.started.insert(chunk.artifact_id.clone());
        let artifact = artifact(
            &chunk.artifact_id,
            &chunk.filename,
            &chunk.media_type,
            chunk.data.clone(),
        );
        StreamResponse::ArtifactUpdate(TaskArtifactUpdateEvent {
            task_id: self.task_id.clone(),
            context_id: self.context_id.clone(),
            artifact,
            append: Some(!first),
            last_chunk: Some(chunk.last_chunk),
            metadata: mesh_meta(json!({ "seq": seq })),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_run_state_has_one_task_state_and_back() {
        for run in [
            RunState::Pending,
            RunState::Running,
            RunState::Completed,
            RunState::Partial,
            RunState::Failed,
            RunState::Canceled,
            RunState::Waiting,
            RunState::Rejected,
        ] {
            let task = state(run);
            assert!(run_states(&task).contains(&run), "{run:?} -> {task:?}");
            assert_eq!(
                task == TaskState::InputRequired,
                run == RunState::Waiting,
                "only a run waiting for a person looks interrupted: {run:?}"
            );
        }
    }

    #[test]
    fn report_chunks_become_appended_artifact_updates() {
        let mut stream = Stream::new("r1", "c1");
        let chunk = |data: &[u8], last| RunEvent {
            run_id: "r1".into(),
            seq: 9,
            time: None,
            event: Some(Event::ReportChunk(ReportChunk {
                artifact_id: "report.html".into(),
                filename: "report.html".into(),
                media_type: "text/html".into(),
                data: data.to_vec(),
                last_chunk: last,
            })),
        };
        let mut files = Files::default();
        for (data, last, append) in [(&b"<h1>"[..], false, false), (b"Q2</h1>", true, true)] {
            let ev = chunk(data, last);
            files.take(&ev);
            let Some(StreamResponse::ArtifactUpdate(up)) = stream.events(&ev).pop() else {
                panic!("not an artifact update");
            };
            assert_eq!(up.append, Some(append));
            assert_eq!(up.last_chunk, Some(last));
        }
        let artifacts = files.artifacts();
        assert_eq!(artifacts.len(), 1);
        assert_eq!(
            artifacts[0].parts[0].content,
            a2a::PartContent::Raw(b"<h1>Q2</h1>".to_vec())
        );
        assert_eq!(
            artifacts[0].parts[0].media_type.as_deref(),
            Some("text/html")
        );
    }
}
