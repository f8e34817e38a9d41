//! A run's integrated report as JSON: what `meshctl` writes as
//! `report.json` and the A2A facade sends as the task's `report` data
//! artifact, one shape for both.

use prost_types::Duration;
use serde_json::{Value, json};

use crate::v1::{Provenance, Report};

/// A protobuf duration in seconds.
pub fn secs(d: Option<&Duration>) -> f64 {
    d.map_or(0.0, |d| d.seconds as f64 + f64::from(d.nanos) / 1e9)
}

/// Who produced a step's output, as JSON.
pub fn provenance(p: &Provenance) -> Value {
    json!({
        "step_id": p.step_id, "agent": p.agent, "endpoint": p.endpoint, "skill": p.skill,
        "agent_version": p.agent_version, "attempts": p.attempts,
        "duration_s": secs(p.duration.as_ref()), "input_hash": p.input_hash,
        "earlier_endpoints": p.earlier_endpoints,
    })
}

/// A report as JSON (artifact bytes are not in it).
pub fn report(r: &Report) -> Value {
    json!({
        "title": r.title,
        "summary": r.summary,
        "sections": r.sections.iter().map(|s| json!({
            "id": s.id, "title": s.title, "body": s.body, "step_id": s.step_id,
            "artifacts": s.artifact_ids, "missing": s.missing, "missing_reason": s.missing_reason,
        })).collect::<Vec<_>>(),
        "provenance": r.provenance.iter().map(provenance).collect::<Vec<_>>(),
        "artifacts": r.artifacts.iter().map(|a| json!({
            "id": a.artifact_id, "name": a.name, "description": a.description,
            "media_type": a.parts.first().map(|p| p.media_type.clone()).unwrap_or_default(),
        })).collect::<Vec<_>>(),
    })
}
