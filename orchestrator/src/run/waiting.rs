//! People in the loop: a step that waits for a person, either an agent's
//! question (asked in the middle of an attempt) or an approval gate (a plan
//! step that runs no skill). Either way the wait is a StepWaiting event in
//! the run's log and the answer a StepAnswered one (recorded by
//! [`RunRecord::answer`]), so a run read back after a restart waits where
//! it did, and an answer given while no attempt runs reaches the next.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use agentmesh_proto::error::{ErrorReason, MeshError};
use agentmesh_proto::json::{to_struct, value_to_struct};
use agentmesh_proto::v1::{InputRequest, Provenance, StepWaiting, WaitKind, run_event};
use agentmesh_runtime::JsonObject;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::run::failure::Failure;
use crate::run::outcome::StepResult;
use crate::run::plan::StepPlan;
use crate::store::RunRecord;

/// The question id of an approval gate.
pub const APPROVAL: &str = "approval";

/// The schema of an approval: approved or not, and why.
pub fn approval_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "approved": {"type": "boolean", "description": "true to go on, false to end the run rejected"},
            "reason": {"type": "string", "maxLength": 4096, "description": "why (shown in the run's record)"}
        },
        "required": ["approved"],
        "additionalProperties": false
    })
}

/// What became of a question when it was asked.
pub enum Asked {
    /// It had been answered already (an earlier attempt asked it): the
    /// answer.
    Answered(JsonObject),
    /// It waits, until this wall-clock time at the latest.
    Waits(SystemTime),
}

/// Attempt `attempt` of `step` on `agent` asks `request`: answered from the
/// run's log if it was answered before, or recorded as waiting (an open
/// wait for the same question keeps its deadline, so a question asked again
/// after a restart does not wait longer).
pub fn ask(
    run: &RunRecord,
    step: &str,
    attempt: u32,
    agent: &str,
    request: &InputRequest,
    timeout: Duration,
) -> Asked {
    if let Some((answer, _)) = run.waits.answer(step, &request.input_id) {
        return Asked::Answered(answer);
    }
    let now = SystemTime::now();
    let until = run
        .waits
        .open(step)
        .filter(|w| w.input_id == request.input_id)
        .and_then(|w| w.deadline)
        .and_then(|t| SystemTime::try_from(t).ok())
        .unwrap_or(now + timeout);
    run.append(run_event::Event::StepWaiting(StepWaiting {
        step_id: step.to_string(),
        attempt,
        kind: WaitKind::Question.into(),
        input_id: request.input_id.clone(),
        question: request.question.clone(),
        answer_schema: request.answer_schema.clone(),
        subject: None,
        deadline: Some(until.into()),
        since: Some(now.into()),
        agent: agent.to_string(),
    }));
    Asked::Waits(until)
}

/// Waits until question `input_id` of `step` is answered (its answer), its
/// wait passes `until` (INPUT_TIMEOUT) or the run stops.
pub async fn answer(
    run: &RunRecord,
    step: &str,
    input_id: &str,
    until: SystemTime,
) -> Result<(JsonObject, String), Failure> {
    let mut given = run.waits.answers_given();
    let timeout = until.duration_since(SystemTime::now()).unwrap_or_default();
    let expired = tokio::time::sleep_until(Instant::now() + timeout);
    tokio::pin!(expired);
    loop {
        if let Some(answer) = run.waits.answer(step, input_id) {
            return Ok(answer);
        }
        tokio::select! {
            changed = given.changed() => {
                if changed.is_err() {
                    return Err(Failure::stopped(run.stop_cause()));
                }
            }
            () = &mut expired => {
                return Err(Failure::new(
                    ErrorReason::InputTimeout,
                    format!("step {step}: nobody answered {input_id:?} in time"),
                ));
            }
            () = run.stop.cancelled() => return Err(Failure::stopped(run.stop_cause())),
        }
    }
}

/// Runs approval gate `step` of `run`: waits (once; a resumed run's open
/// wait goes on) for a person to approve, showing `subject` (the outputs
/// of the steps it depends on). Approved, the step completes; rejected, the
/// run stops REJECTED with the person's reason.
pub async fn gate(
    run: Arc<RunRecord>,
    step: &StepPlan,
    subject: JsonObject,
    default_timeout: Duration,
) -> Result<StepResult, Failure> {
    let id = step.spec.id.as_str();
    let gate = step.spec.approval.clone().unwrap_or_default();
    let timeout = gate
        .timeout
        .and_then(|d| Duration::try_from(d).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(default_timeout);
    let started = Instant::now();
    let until = match run.waits.open(id) {
        Some(open) => open
            .deadline
            .and_then(|t| SystemTime::try_from(t).ok())
            .unwrap_or_else(|| SystemTime::now() + timeout),
        None if run.waits.answer(id, APPROVAL).is_some() => SystemTime::now(),
        None => {
            let now = SystemTime::now();
            run.append(run_event::Event::StepWaiting(StepWaiting {
                step_id: id.to_string(),
                attempt: 0,
                kind: WaitKind::Approval.into(),
                input_id: APPROVAL.to_string(),
                question: if gate.prompt.is_empty() {
                    format!("Approve step {id}?")
                } else {
                    gate.prompt.clone()
                },
                answer_schema: Some(value_to_struct(&approval_schema())),
                subject: Some(to_struct(&subject)),
                deadline: Some((now + timeout).into()),
                since: Some(now.into()),
                agent: String::new(),
            }));
            now + timeout
        }
    };
    let result = answer(&run, id, APPROVAL, until).await;
    let (answer, by) = match result {
        Ok(answered) => answered,
        Err(f) => {
            run.append(crate::events::step_failed(id, f.reason, &f.message, 0));
            return Err(f);
        }
    };
    let approved = answer.get("approved").and_then(Value::as_bool) == Some(true);
    let reason = answer
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let who = if by.is_empty() {
        "a person"
    } else {
        by.as_str()
    };
    if !approved {
        let message = if reason.is_empty() {
            format!("step {id} was rejected by {who}")
        } else {
            format!("step {id} was rejected by {who}: {reason}")
        };
        run.stop(MeshError::new(ErrorReason::Rejected, message.clone()).with_meta("step", id));
        run.append(crate::events::step_failed(
            id,
            ErrorReason::Rejected,
            &message,
            0,
        ));
        return Err(Failure::new(ErrorReason::Rejected, message));
    }
    let mut output = JsonObject::new();
    output.insert("approved".into(), Value::Bool(true));
    output.insert("by".into(), Value::String(by.clone()));
    output.insert("reason".into(), Value::String(reason));
    let provenance = Provenance {
        step_id: id.to_string(),
        agent: "person".to_string(),
        endpoint: by,
        skill: String::new(),
        attempts: 1,
        duration: started.elapsed().try_into().ok(),
        ..Provenance::default()
    };
    run.append(crate::events::step_completed(
        id,
        to_struct(&output),
        provenance.clone(),
        Vec::new(),
    ));
    Ok(StepResult {
        output: Value::Object(output),
        artifacts: Vec::new(),
        provenance,
    })
}
