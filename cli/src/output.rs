//! Protocol messages as JSON for `--json`, tables for people, and the
//! report written to disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use agentmesh_proto::prost_types::Timestamp;
pub use agentmesh_proto::report::{report, secs};
use agentmesh_proto::v1::{
    AgentEndpoint, EndpointHealth, RunFinished, RunPlanned, RunState, RunSummary, StepWaiting,
};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Writes a line to stdout. A closed stdout (`meshctl ... | head`) ends the
/// process quietly instead of panicking.
pub fn emit(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        std::process::exit(0);
    }
}

/// `println!` through [`emit`].
macro_rules! say {
    () => { $crate::output::emit("") };
    ($($t:tt)*) => { $crate::output::emit(&format!($($t)*)) };
}
pub(crate) use say;

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
        "run_id": r.run_id, "goal": r.goal, "state": state_name(r.state()),
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
        "answer_schema": agentmesh_proto::json::from_opt_struct(w.answer_schema.as_ref()),
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
                "input": Value::Object(agentmesh_proto::json::from_opt_struct(step.input.as_ref())),
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

/// Prints rows as an aligned table.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect();
        say!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| (*h).to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

/// A file name safe to write inside the output folder.
fn safe_name(name: &str) -> String {
    let base = Path::new(name)
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.trim_matches('.').is_empty() {
        "artifact".into()
    } else {
        clean
    }
}

/// Writes the report files and `report.json`; returns the folder.
pub fn write_report(
    out: &Path,
    run_id: &str,
    goal: &str,
    finished: &RunFinished,
    files: &BTreeMap<String, Vec<u8>>,
    outputs: &BTreeMap<String, Value>,
) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(out)?;
    let mut written = Vec::new();
    for (name, bytes) in files {
        let name = safe_name(name);
        std::fs::write(out.join(&name), bytes)?;
        written.push(name);
    }
    let doc = json!({
        "run_id": run_id,
        "goal": goal,
        "state": state_name(finished.state()),
        "reason": finished.reason,
        "message": finished.message,
        "report": finished.report.as_ref().map(report),
        "steps": outputs,
        "files": written,
    });
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    std::fs::write(out.join("report.json"), text)?;
    Ok(out.to_path_buf())
}
