//! The summary agent: executive summaries from sales metrics, every number
//! checked against the metrics (see [`faithfulness`]).
//!
//! Skill `summary.write` (consumes `sales.metrics`, produces `summary`).

pub mod faithfulness;
pub mod writer;

use agentmesh_proto::v1::AgentCard;
use agentmesh_runtime::{
    Agent, ErrorReason, JsonObject, ServerConfig, SkillSpec, Task, TaskContext, TaskError,
    TaskOutput, TelemetryConfig,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Skill id.
pub const WRITE: &str = "summary.write";
/// Default port.
pub const DEFAULT_PORT: u16 = 50053;

/// Everything the summary binary reads.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SummaryConfig {
    /// gRPC server settings.
    pub server: ServerConfig,
    /// Logging.
    pub telemetry: TelemetryConfig,
}

impl Default for SummaryConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig::on_port(DEFAULT_PORT),
            telemetry: TelemetryConfig::default(),
        }
    }
}

/// The summary agent.
#[derive(Debug, Default, Clone)]
pub struct SummaryAgent;

/// Labels in the metrics that are names of periods, not figures.
fn labels(metrics: &Value) -> Vec<String> {
    let mut out = vec![
        metrics["period"]["label"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    ];
    for k in ["vs_previous", "vs_year_ago"] {
        out.extend(metrics["growth"][k]["label"].as_str().map(str::to_string));
    }
    out.sort_by_key(|l| std::cmp::Reverse(l.len()));
    out
}

/// Writes and checks a summary; an unfaithful text is an error, never a
/// result.
pub fn summarize(metrics: &Value) -> Result<JsonObject, TaskError> {
    if !metrics["totals"]["revenue"].is_number() {
        return Err(TaskError::invalid_input(
            "metrics.totals.revenue is missing: pass the output of analytics.metrics",
        ));
    }
    let summary = writer::write(metrics);
    let text = summary.markdown();
    let report = faithfulness::check(&text, metrics, &labels(metrics));
    if !report.passed() {
        let bad: Vec<&str> = report
            .untraceable
            .iter()
            .map(|f| f.shown.as_str())
            .collect();
        return Err(TaskError::new(
            ErrorReason::OutputInvalid,
            format!(
                "summary failed the faithfulness check: {} not found in the metrics",
                bad.join(", ")
            ),
        ));
    }
    let figures: Vec<&str> = report.checked.iter().map(|f| f.shown.as_str()).collect();
    let out = json!({
        "headline": summary.headline,
        "findings": summary.findings,
        "risks": summary.risks,
        "recommendation": summary.recommendation,
        "markdown": text,
        "backend": "deterministic",
        "faithfulness": {"passed": true, "checked": figures.len(), "figures": figures},
    });
    Ok(match out {
        Value::Object(m) => m,
        _ => JsonObject::new(),
    })
}

impl Agent for SummaryAgent {
    fn card(&self) -> AgentCard {
        AgentCard {
            name: "summary".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Writes executive summaries from sales metrics; every number in the \
                          text is checked against the metrics before it is returned."
                .into(),
            skills: vec![
                SkillSpec::new(WRITE, "Writes an executive summary (headline, three to five key findings with numbers, risks and anomalies, a recommendation) from sales.metrics. Every figure is checked against the metrics it was given.")
                    .tags(&["sales", "summary", "executive", "narrative"])
                    .input_schema(&json!({
                        "type": "object", "required": ["metrics"], "additionalProperties": false,
                        "properties": {"metrics": {"type": "object", "required": ["period", "totals"]}}
                    }))
                    .output_schema(&json!({
                        "type": "object",
                        "required": ["headline", "findings", "risks", "recommendation", "markdown", "backend", "faithfulness"],
                        "properties": {
                            "headline": {"type": "string", "minLength": 1},
                            "findings": {"type": "array", "minItems": 1, "maxItems": 5, "items": {"type": "string"}},
                            "risks": {"type": "array", "items": {"type": "string"}},
                            "recommendation": {"type": "string", "minLength": 1},
                            "markdown": {"type": "string"},
                            "backend": {"enum": ["deterministic", "llm"]},
                            "faithfulness": {"type": "object", "required": ["passed"], "properties": {"passed": {"const": true}}}
                        }
                    }))
                    .consumes(&["sales.metrics"])
                    .produces(&["summary"])
                    .build(),
            ],
            ..AgentCard::default()
        }
    }

    async fn execute(&self, task: Task, _ctx: TaskContext) -> Result<TaskOutput, TaskError> {
        let metrics = task.input.get("metrics").cloned().unwrap_or(Value::Null);
        summarize(&metrics).map(TaskOutput::new)
    }
}
