//! The grammar of an `ExecuteTask` stream, checked on what an agent sent:
//! sequence numbers, exactly one final status at the end, a result or a
//! failure just before it, artifacts streamed in whole chunks.

use std::collections::HashMap;
use std::time::Duration;

use agentmesh_proto::error::ErrorReason;
use agentmesh_proto::prost_types::Struct;
use agentmesh_proto::v1::{TaskEvent, TaskState, task_event::Event};

/// How a well-formed stream ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Ending {
    /// The final state (COMPLETED, FAILED, CANCELED or REJECTED).
    pub state: TaskState,
    /// The result's output, when COMPLETED.
    pub output: Option<Struct>,
    /// The failure's reason, otherwise.
    pub reason: Option<String>,
}

/// One event and how long after the previous one (or the call) it came.
pub struct Received {
    /// The event.
    pub event: TaskEvent,
    /// Time since the previous event, or since the call for the first.
    pub gap: Duration,
}

/// Checks a whole stream. `task_id` is the id every event must carry (not
/// checked for an idempotent repeat, which replays the first task's events).
pub fn check(events: &[Received], task_id: Option<&str>) -> Result<Ending, String> {
    let Some(last) = events.last() else {
        return Err("the stream ended without any event".into());
    };
    let mut artifacts = Artifacts::default();
    for (i, r) in events.iter().enumerate() {
        let ev = &r.event;
        let expected = i as u64 + 1;
        if ev.seq != expected {
            return Err(format!(
                "event {expected} has seq {} (seq must be 1, 2, 3, ... with no gaps)",
                ev.seq
            ));
        }
        if let Some(id) = task_id
            && ev.task_id != id
        {
            return Err(format!(
                "event {expected} carries task_id {:?}, not the request's {id:?}",
                ev.task_id
            ));
        }
        if ev.time.is_none() {
            return Err(format!("event {expected} has no time"));
        }
        let is_last = i + 1 == events.len();
        let before_last = i + 2 == events.len();
        match &ev.event {
            None => return Err(format!("event {expected} has no event set")),
            Some(Event::Status(s)) => {
                let state = TaskState::try_from(s.state).unwrap_or(TaskState::Unspecified);
                if s.r#final != is_last {
                    return Err(if is_last {
                        format!("the last event (seq {expected}) is a status without final = true")
                    } else {
                        format!("event {expected} is a final status, but more events follow")
                    });
                }
                if state == TaskState::Unspecified {
                    return Err(format!("event {expected} has state UNSPECIFIED"));
                }
                if terminal(state) != s.r#final {
                    return Err(format!(
                        "event {expected}: state {} with final = {}",
                        name(state),
                        s.r#final
                    ));
                }
            }
            Some(Event::Result(_)) if !before_last => {
                return Err(format!(
                    "event {expected} is a result, but not the event just before the final status"
                ));
            }
            Some(Event::Failure(_)) if !before_last => {
                return Err(format!(
                    "event {expected} is a failure, but not the event just before the final status"
                ));
            }
            Some(Event::ArtifactChunk(c)) => artifacts.chunk(expected, c)?,
            Some(_) if is_last => {
                return Err(format!(
                    "the last event (seq {expected}) is not a final status"
                ));
            }
            Some(_) => {}
        }
    }
    let Some(Event::Status(fin)) = &last.event.event else {
        return Err("the last event is not a final status".into());
    };
    let state = TaskState::try_from(fin.state).unwrap_or(TaskState::Unspecified);
    let before = events
        .len()
        .checked_sub(2)
        .and_then(|i| events[i].event.event.as_ref());
    match (state, before) {
        (TaskState::Completed, Some(Event::Result(result))) => {
            artifacts.all_ended()?;
            if result.artifact_ids != artifacts.order {
                return Err(format!(
                    "the result names artifacts {:?}, the stream sent {:?}",
                    result.artifact_ids, artifacts.order
                ));
            }
            Ok(Ending {
                state,
                output: Some(result.output.clone().unwrap_or_default()),
                reason: None,
            })
        }
        (TaskState::Completed, _) => {
            Err("COMPLETED without a result just before the final status".into())
        }
        (_, Some(Event::Failure(failure))) => {
            if ErrorReason::from_name(&failure.reason).is_none() {
                return Err(format!(
                    "failure reason {:?} is not an ErrorReason name",
                    failure.reason
                ));
            }
            Ok(Ending {
                state,
                output: None,
                reason: Some(failure.reason.clone()),
            })
        }
        (_, _) => Err(format!(
            "{} without a failure just before the final status",
            name(state)
        )),
    }
}

/// The longest silence of a stream while the task was working (before its
/// final event).
pub fn longest_silence(events: &[Received]) -> Duration {
    events
        .iter()
        .take(events.len().saturating_sub(1))
        .map(|r| r.gap)
        .max()
        .unwrap_or_default()
}

/// A task state's short name (`COMPLETED`).
pub fn name(state: TaskState) -> &'static str {
    state.as_str_name().trim_start_matches("TASK_STATE_")
}

fn terminal(state: TaskState) -> bool {
    matches!(
        state,
        TaskState::Completed | TaskState::Failed | TaskState::Canceled | TaskState::Rejected
    )
}

/// Artifacts seen so far: which are open, in which order they began.
#[derive(Default)]
struct Artifacts {
    open: HashMap<String, bool>,
    order: Vec<String>,
}

impl Artifacts {
    fn chunk(&mut self, seq: u64, c: &agentmesh_proto::v1::ArtifactChunk) -> Result<(), String> {
        if c.artifact_id.is_empty() {
            return Err(format!("artifact chunk {seq} has no artifact_id"));
        }
        match self.open.get(&c.artifact_id) {
            None if c.append => {
                return Err(format!(
                    "artifact {:?} starts with append = true (seq {seq})",
                    c.artifact_id
                ));
            }
            None if c.media_type.is_empty() => {
                return Err(format!(
                    "artifact {:?}: its first chunk has no media_type (seq {seq})",
                    c.artifact_id
                ));
            }
            None => self.order.push(c.artifact_id.clone()),
            Some(false) => {
                return Err(format!(
                    "artifact {:?} continues after its last chunk (seq {seq})",
                    c.artifact_id
                ));
            }
            Some(true) if !c.append => {
                return Err(format!(
                    "artifact {:?} starts again with append = false (seq {seq})",
                    c.artifact_id
                ));
            }
            Some(true) => {}
        }
        self.open.insert(c.artifact_id.clone(), !c.last_chunk);
        Ok(())
    }

    fn all_ended(&self) -> Result<(), String> {
        match self
            .order
            .iter()
            .find(|id| self.open.get(*id) == Some(&true))
        {
            Some(id) => Err(format!("artifact {id:?} never sent its last chunk")),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentmesh_proto::prost_types::Timestamp;
    use agentmesh_proto::v1::{ArtifactChunk, TaskFailure, TaskResult, TaskStatusUpdate};

    fn ev(seq: u64, event: Event) -> Received {
        Received {
            event: TaskEvent {
                task_id: "t".into(),
                seq,
                time: Some(Timestamp::default()),
                event: Some(event),
            },
            gap: Duration::from_millis(seq),
        }
    }

    fn status(state: TaskState, fin: bool) -> Event {
        Event::Status(TaskStatusUpdate {
            state: state as i32,
            message: String::new(),
            r#final: fin,
            input: None,
        })
    }

    fn result(ids: &[&str]) -> Event {
        Event::Result(TaskResult {
            output: Some(Struct::default()),
            artifact_ids: ids.iter().map(|s| (*s).to_string()).collect(),
        })
    }

    fn chunk(id: &str, append: bool, last: bool) -> Event {
        Event::ArtifactChunk(ArtifactChunk {
            artifact_id: id.into(),
            media_type: "text/csv".into(),
            append,
            last_chunk: last,
            ..ArtifactChunk::default()
        })
    }

    fn numbered(events: Vec<Event>) -> Vec<Received> {
        events
            .into_iter()
            .enumerate()
            .map(|(i, e)| ev(i as u64 + 1, e))
            .collect()
    }

    #[test]
    fn a_completed_stream_with_an_artifact_is_well_formed() {
        let events = numbered(vec![
            status(TaskState::Working, false),
            chunk("a", false, false),
            chunk("a", true, true),
            result(&["a"]),
            status(TaskState::Completed, true),
        ]);
        let end = check(&events, Some("t")).unwrap();
        assert_eq!(end.state, TaskState::Completed);
        assert!(end.output.is_some());
        assert_eq!(longest_silence(&events), Duration::from_millis(4));
    }

    #[test]
    fn a_failed_stream_carries_its_reason() {
        let events = numbered(vec![
            Event::Failure(TaskFailure {
                reason: "DEADLINE_EXCEEDED".into(),
                ..TaskFailure::default()
            }),
            status(TaskState::Failed, true),
        ]);
        let end = check(&events, Some("t")).unwrap();
        assert_eq!(end.reason.as_deref(), Some("DEADLINE_EXCEEDED"));
    }

    #[test]
    fn each_broken_rule_is_named() {
        let cases: Vec<(Vec<Received>, &str)> = vec![
            (Vec::new(), "without any event"),
            (
                vec![
                    ev(1, status(TaskState::Working, false)),
                    ev(3, result(&[])),
                    ev(4, status(TaskState::Completed, true)),
                ],
                "event 2 has seq 3",
            ),
            (
                numbered(vec![status(TaskState::Working, false), result(&[])]),
                "not the event just before the final status",
            ),
            (
                numbered(vec![status(TaskState::Working, false)]),
                "without final = true",
            ),
            (
                numbered(vec![
                    status(TaskState::Completed, true),
                    status(TaskState::Completed, true),
                ]),
                "more events follow",
            ),
            (
                numbered(vec![status(TaskState::Completed, true)]),
                "COMPLETED without a result",
            ),
            (
                numbered(vec![status(TaskState::Failed, true)]),
                "FAILED without a failure",
            ),
            (
                numbered(vec![status(TaskState::Working, true)]),
                "state WORKING with final = true",
            ),
            (
                numbered(vec![
                    Event::Failure(TaskFailure {
                        reason: "OOPS".into(),
                        ..TaskFailure::default()
                    }),
                    status(TaskState::Failed, true),
                ]),
                "not an ErrorReason name",
            ),
            (
                numbered(vec![
                    chunk("a", true, true),
                    result(&["a"]),
                    status(TaskState::Completed, true),
                ]),
                "starts with append = true",
            ),
            (
                numbered(vec![
                    chunk("a", false, false),
                    result(&["a"]),
                    status(TaskState::Completed, true),
                ]),
                "never sent its last chunk",
            ),
            (
                numbered(vec![
                    chunk("a", false, true),
                    chunk("a", true, true),
                    result(&["a"]),
                    status(TaskState::Completed, true),
                ]),
                "continues after its last chunk",
            ),
            (
                numbered(vec![
                    chunk("a", false, true),
                    result(&["b"]),
                    status(TaskState::Completed, true),
                ]),
                "the result names artifacts",
            ),
        ];
        for (events, expected) in cases {
            let err = check(&events, Some("t")).unwrap_err();
            assert!(err.contains(expected), "{err:?} should say {expected:?}");
        }
        let mut other = numbered(vec![result(&[]), status(TaskState::Completed, true)]);
        other[0].event.task_id = "u".into();
        assert!(check(&other, Some("t")).unwrap_err().contains("task_id"));
        assert!(check(&other, None).is_ok(), "a replay keeps the first id");
    }
}
