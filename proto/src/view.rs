//! Protocol messages as JSON for people and pages: `meshctl --json` and
//! the run viewer read the same shapes. Timestamps are RFC 3339 text,
//! enums their short names (`COMPLETED`), Structs plain JSON; artifact and
//! report bytes are left out.

use prost_types::Timestamp;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::json::from_opt_struct;
use crate::report::{provenance, report, secs};
use crate::v1::{
    AgentEndpoint, EndpointHealth, ListAgentsResponse, RunEvent, RunPlanned, RunState, RunSummary,
    StepWaiting, TaskEvent, run_event::Event, task_event,
};

/// RFC 3339 text of a timestamp.
pub fn ts(t: Option<&Timestamp>) -> Value {
    t.and_then(|t| {
        let nanos = i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
        OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
    })
    .and_then(|d| d.format(&Rfc3339).ok())
    .map_or(Value::Null, Value::String)
}

/// A run state's short name (`COMPLETED`).
pub fn state_name(s: RunState) -> &'static str {
    s.as_str_name().trim_start_matches("RUN_STATE_")
}

/// A run summary as JSON.
pub fn run_summary(r: &RunSummary) -> Value {
    json!({
        "run_id": r.run_id, "goal": r.goal, "state": state_name(r.state()), "owner": r.owner,
        "created": ts(r.created.as_ref()), "finished": ts(r.finished.as_ref()), "last_seq": r.last_seq,
        "waiting": r.waiting.iter().map(waiting).collect::<Vec<_>>(),
    })
}

/// A step waiting for a person, as JSON.
pub fn waiting(w: &StepWaiting) -> Value {
    json!({
        "step": w.step_id,
        "kind": w.kind().as_str_name().trim_start_matches("WAIT_KIND_"),
        "input_id": w.input_id,
        "question": w.question,
        "answer_schema": from_opt_struct(w.answer_schema.as_ref()),
        "subject": w.subject.as_ref().map(|s| Value::Object(crate::json::from_struct(s))),
        "agent": w.agent,
        "since": ts(w.since.as_ref()),
        "deadline": ts(w.deadline.as_ref()),
    })
}

/// A plan as JSON.
pub fn planned(p: &RunPlanned) -> Value {
    let intent = p.intent.as_ref().map(|i| {
        json!({
            "deliverables": i.deliverables().map(|d| d.as_str_name().trim_start_matches("DELIVERABLE_").to_lowercase()).collect::<Vec<_>>(),
            "period": i.period.as_ref().map(|p| json!({"start": p.start, "end": p.end, "label": p.label})),
            "filters": i.filters.iter().map(|f| (f.field.clone(), json!(f.values))).collect::<serde_json::Map<_, _>>(),
            "compare_previous": i.compare_previous, "compare_year_ago": i.compare_year_ago,
            "compare_period": i.compare_period.as_ref().map(|p| json!({"start": p.start, "end": p.end, "label": p.label})),
            "notes": i.notes,
        })
    });
    json!({
        "goal": p.goal,
        "intent": intent,
        "deadline": ts(p.deadline.as_ref()),
        "steps": p.steps.iter().map(|s| {
            let step = s.step.clone().unwrap_or_default();
            json!({
                "id": step.id, "skill": step.skill, "agent": s.agent, "endpoint": s.endpoint,
                "after": s.after, "rationale": step.rationale,
                "input": Value::Object(from_opt_struct(step.input.as_ref())),
            })
        }).collect::<Vec<_>>(),
    })
}

/// An endpoint as JSON.
pub fn endpoint(e: &AgentEndpoint) -> Value {
    let card = e.card.as_ref();
    json!({
        "address": e.address, "source": e.source, "health": health_name(e.health()),
        "agent": card.map(|c| c.name.clone()), "version": card.map(|c| c.version.clone()),
        "skills": card.map(|c| c.skills.iter().map(|s| s.id.clone()).collect::<Vec<_>>()).unwrap_or_default(),
        "max_concurrency": card.map(|c| c.max_concurrency),
        "in_flight": e.in_flight, "error_rate": e.error_rate, "ejected": e.ejected,
        "ejected_until": ts(e.ejected_until.as_ref()),
    })
}

/// A health value's short name.
pub fn health_name(h: EndpointHealth) -> &'static str {
    h.as_str_name().trim_start_matches("ENDPOINT_HEALTH_")
}

/// The kind of a run event (`step_completed`), as both JSON shapes name it.
pub fn event_kind(ev: &RunEvent) -> &'static str {
    match &ev.event {
        Some(Event::Planned(_)) => "planned",
        Some(Event::StepStarted(_)) => "step_started",
        Some(Event::StepEvent(_)) => "step_event",
        Some(Event::StepRetrying(_)) => "step_retrying",
        Some(Event::StepRerouted(_)) => "step_rerouted",
        Some(Event::StepQueued(_)) => "step_queued",
        Some(Event::StepCompleted(_)) => "step_completed",
        Some(Event::StepFailed(_)) => "step_failed",
        Some(Event::ReportChunk(_)) => "report_chunk",
        Some(Event::Finished(_)) => "finished",
        Some(Event::Resumed(_)) => "resumed",
        Some(Event::StepWaiting(_)) => "step_waiting",
        Some(Event::StepAnswered(_)) => "step_answered",
        None => "unknown",
    }
}

/// The step a run event is about ("" for run-wide events).
pub fn event_step(ev: &RunEvent) -> &str {
    match &ev.event {
        Some(Event::StepStarted(s)) => &s.step_id,
        Some(Event::StepEvent(s)) => &s.step_id,
        Some(Event::StepRetrying(s)) => &s.step_id,
        Some(Event::StepRerouted(s)) => &s.step_id,
        Some(Event::StepQueued(s)) => &s.step_id,
        Some(Event::StepCompleted(s)) => &s.step_id,
        Some(Event::StepFailed(s)) => &s.step_id,
        Some(Event::StepWaiting(s)) => &s.step_id,
        Some(Event::StepAnswered(s)) => &s.step_id,
        _ => "",
    }
}

/// A run event, whole but for bytes: `{seq, time, kind, step, ...}` with
/// the fields of its kind.
pub fn event(ev: &RunEvent) -> Value {
    let mut v = json!({
        "seq": ev.seq, "time": ts(ev.time.as_ref()),
        "kind": event_kind(ev), "step": event_step(ev),
    });
    let fields = match &ev.event {
        Some(Event::Planned(p)) => json!({"plan": planned(p)}),
        Some(Event::StepStarted(s)) => json!({
            "skill": s.skill, "agent": s.agent, "endpoint": s.endpoint,
            "attempt": s.attempt, "task_id": s.task_id,
        }),
        Some(Event::StepEvent(s)) => {
            let mut f = task_event(s.event.as_ref());
            f["attempt"] = json!(s.attempt);
            f
        }
        Some(Event::StepRetrying(s)) => json!({
            "attempt": s.failed_attempt, "reason": s.reason, "message": s.message,
            "delay_s": secs(s.delay.as_ref()),
        }),
        Some(Event::StepRerouted(s)) => json!({
            "from": s.from_endpoint, "to": s.to_endpoint, "reason": s.reason,
        }),
        Some(Event::StepQueued(s)) => json!({
            "skill": s.skill, "waiting": s.waiting, "attempt": s.attempt,
        }),
        Some(Event::StepCompleted(s)) => json!({
            "output": from_opt_struct(s.output.as_ref()),
            "output_omitted": s.output_omitted,
            "provenance": s.provenance.as_ref().map(provenance),
        }),
        Some(Event::StepFailed(s)) => json!({
            "reason": s.reason, "message": s.message, "attempts": s.attempts,
        }),
        Some(Event::ReportChunk(c)) => json!({
            "artifact": c.artifact_id, "filename": c.filename,
            "media_type": c.media_type, "bytes": c.data.len(), "last_chunk": c.last_chunk,
        }),
        Some(Event::Finished(f)) => json!({
            "state": state_name(f.state()), "reason": f.reason, "message": f.message,
            "report": f.report.as_ref().map(report),
        }),
        Some(Event::Resumed(r)) => json!({
            "orchestrator": r.orchestrator, "completed_steps": r.completed_steps,
            "resumed_steps": r.resumed_steps,
        }),
        Some(Event::StepWaiting(w)) => {
            let mut f = waiting(w);
            // The event's own `kind` is `step_waiting`; what it waits for
            // is `wait`.
            if let Some(f) = f.as_object_mut()
                && let Some(kind) = f.remove("kind")
            {
                f.insert("wait".into(), kind);
            }
            f
        }
        Some(Event::StepAnswered(a)) => json!({
            "input_id": a.input_id, "answer": from_opt_struct(a.answer.as_ref()), "by": a.by,
        }),
        None => json!({}),
    };
    if let (Some(v), Value::Object(fields)) = (v.as_object_mut(), fields) {
        for (key, value) in fields {
            v.entry(key).or_insert(value);
        }
    }
    v
}

/// What an agent said about its task (the part a run event forwards).
fn task_event(ev: Option<&TaskEvent>) -> Value {
    match ev.and_then(|e| e.event.as_ref()) {
        Some(task_event::Event::Status(s)) => json!({
            "task": "status", "state": s.state().as_str_name().trim_start_matches("TASK_STATE_"),
            "message": s.message,
        }),
        Some(task_event::Event::Progress(p)) => json!({
            "task": "progress", "message": p.message, "fraction": p.fraction,
            "tokens_used": p.tokens_used,
        }),
        Some(task_event::Event::Heartbeat(_)) => json!({"task": "heartbeat"}),
        Some(task_event::Event::ArtifactChunk(a)) => json!({"task": "artifact", "name": a.name}),
        Some(task_event::Event::Result(_)) => json!({"task": "result"}),
        Some(task_event::Event::Failure(f)) => json!({"task": "failure", "message": f.message}),
        None => json!({"task": "unknown"}),
    }
}

/// The registry's endpoints and queues (ListAgents), as JSON.
pub fn agents(list: &ListAgentsResponse) -> Value {
    json!({
        "endpoints": list.endpoints.iter().map(endpoint).collect::<Vec<_>>(),
        "queues": list.queues.iter().map(|q| json!({"skill": q.skill, "waiting": q.waiting})).collect::<Vec<_>>(),
    })
}
