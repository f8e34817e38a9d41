//! Steps waiting for people, as a run's log tells it: which steps wait now
//! (and for what), the answers given, and how long the run has spent with
//! a step waiting (its deadline does not run meanwhile). [`WaitBook`] is
//! fed every event of the run in order, live or read back from a store, so
//! that a run resumed after a restart waits exactly where it did.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use agentmesh_proto::error::{ErrorReason, MeshError};
use agentmesh_proto::json::from_opt_struct;
use agentmesh_proto::prost_types::Struct;
use agentmesh_proto::v1::{InputAnswer, RunEvent, StepAnswered, StepWaiting, run_event};
use agentmesh_runtime::JsonObject;
use agentmesh_runtime::schema::AnswerSchema;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::RunRecord;

/// What a run waits for, read from its events.
pub struct WaitBook {
    book: Mutex<Book>,
    /// Bumped on every answer, for the steps waiting on one.
    answers_given: watch::Sender<u64>,
    /// Held while an answer is checked and recorded, so that a second
    /// answer to the same question finds it answered.
    answering: Mutex<()>,
}

#[derive(Default)]
struct Book {
    open: Vec<StepWaiting>,
    answers: HashMap<String, Vec<StepAnswered>>,
    /// Time spent with a step waiting, intervals that ended.
    paused: Duration,
    /// Start of the interval going on, if a step waits now.
    since: Option<SystemTime>,
}

impl Default for WaitBook {
    fn default() -> Self {
        Self {
            book: Mutex::new(Book::default()),
            answers_given: watch::channel(0).0,
            answering: Mutex::new(()),
        }
    }
}

impl Book {
    fn close(&mut self, at: SystemTime, keep: impl Fn(&StepWaiting) -> bool) {
        let had = !self.open.is_empty();
        self.open.retain(keep);
        if had
            && self.open.is_empty()
            && let Some(since) = self.since.take()
        {
            self.paused += at.duration_since(since).unwrap_or_default();
        }
    }
}

impl WaitBook {
    /// Takes the run's next event. Most events (progress above all) say
    /// nothing of waits and cost no lock.
    pub fn observe(&self, event: &RunEvent) {
        use run_event::Event::{Finished, StepAnswered, StepCompleted, StepFailed, StepWaiting};
        if !matches!(
            event.event,
            Some(StepWaiting(_) | StepAnswered(_) | StepCompleted(_) | StepFailed(_) | Finished(_))
        ) {
            return;
        }
        let at = event
            .time
            .and_then(|t| SystemTime::try_from(t).ok())
            .unwrap_or_else(SystemTime::now);
        let mut book = self.book.lock();
        match &event.event {
            Some(run_event::Event::StepWaiting(w)) => {
                book.open.retain(|o| o.step_id != w.step_id);
                if book.open.is_empty() && book.since.is_none() {
                    book.since = Some(at);
                }
                let mut w = w.clone();
                if w.since.is_none() {
                    w.since = Some(at.into());
                }
                book.open.push(w);
            }
            Some(run_event::Event::StepAnswered(a)) => {
                book.answers
                    .entry(a.step_id.clone())
                    .or_default()
                    .push(a.clone());
                book.close(at, |o| {
                    !(o.step_id == a.step_id && o.input_id == a.input_id)
                });
                drop(book);
                self.answers_given.send_modify(|n| *n += 1);
            }
            Some(run_event::Event::StepCompleted(c)) => {
                book.close(at, |o| o.step_id != c.step_id);
            }
            Some(run_event::Event::StepFailed(f)) => {
                book.close(at, |o| o.step_id != f.step_id);
            }
            Some(run_event::Event::Finished(_)) => book.close(at, |_| false),
            _ => {}
        }
    }

    /// The steps waiting now, in the order they began to.
    pub fn waiting(&self) -> Vec<StepWaiting> {
        self.book.lock().open.clone()
    }

    /// Whether a step waits now.
    pub fn is_waiting(&self) -> bool {
        !self.book.lock().open.is_empty()
    }

    /// What step `step` waits for, if it does.
    pub fn open(&self, step: &str) -> Option<StepWaiting> {
        self.book
            .lock()
            .open
            .iter()
            .find(|o| o.step_id == step)
            .cloned()
    }

    /// Time the run has spent with a step waiting, up to `now`.
    pub fn paused(&self, now: SystemTime) -> Duration {
        let book = self.book.lock();
        let going = book
            .since
            .map(|s| now.duration_since(s).unwrap_or_default())
            .unwrap_or_default();
        book.paused + going
    }

    /// Every answer given to step `step`, oldest first.
    pub fn answers(&self, step: &str) -> Vec<InputAnswer> {
        self.book
            .lock()
            .answers
            .get(step)
            .map(|all| {
                all.iter()
                    .map(|a| InputAnswer {
                        input_id: a.input_id.clone(),
                        answer: a.answer.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The answer given to question `input_id` of step `step`, if any, and
    /// who gave it.
    pub fn answer(&self, step: &str, input_id: &str) -> Option<(JsonObject, String)> {
        let book = self.book.lock();
        book.answers
            .get(step)?
            .iter()
            .rev()
            .find(|a| a.input_id == input_id)
            .map(|a| (from_opt_struct(a.answer.as_ref()), a.by.clone()))
    }

    /// Changes whenever an answer is recorded.
    pub fn answers_given(&self) -> watch::Receiver<u64> {
        self.answers_given.subscribe()
    }
}

impl RunRecord {
    /// Records `by`'s answer to what step `step` waits for: NOT_WAITING
    /// when it waits for nothing (never asked, answered already, the run
    /// ended), INVALID_INPUT naming the field when the answer does not
    /// match the wait's schema. Returns the StepAnswered event's seq.
    pub fn answer(&self, step: &str, answer: Struct, by: &str) -> Result<u64, MeshError> {
        let _one_at_a_time = self.waits.answering.lock();
        let not_waiting = |why: String| {
            MeshError::new(ErrorReason::NotWaiting, why)
                .with_meta("step", step)
                .with_meta("run_id", self.id.as_str())
        };
        if self.log.is_closed() {
            return Err(not_waiting(format!("run {} has ended", self.id)));
        }
        let Some(wait) = self.waits.open(step) else {
            let why = if self.waits.answers(step).is_empty() {
                format!("step {step} is not waiting for input")
            } else {
                format!("step {step} was answered already")
            };
            return Err(not_waiting(why));
        };
        let schema = AnswerSchema::compile(wait.answer_schema.as_ref())
            .map_err(|e| MeshError::new(ErrorReason::Unspecified, e))?;
        schema.check(&from_opt_struct(Some(&answer)))?;
        let seq = self.append(run_event::Event::StepAnswered(StepAnswered {
            step_id: step.to_string(),
            input_id: wait.input_id,
            answer: Some(answer),
            by: by.to_string(),
        }));
        if seq == 0 {
            return Err(not_waiting(format!("run {} has ended", self.id)));
        }
        Ok(seq)
    }
}
