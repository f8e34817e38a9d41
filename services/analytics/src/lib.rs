//! The analytics agent: sales metrics and SVG charts.
//!
//! Skills:
//! * `analytics.metrics` (consumes `sales.dataset`, produces `sales.metrics`):
//!   totals, growth vs the previous period and a year earlier, breakdowns
//!   with shares, movers, anomalies; every metric with definition and unit.
//! * `analytics.charts` (consumes `sales.metrics`, produces `chart`): revenue
//!   trend, revenue by region, product-line mix, growth by region, as SVG
//!   artifacts with title, caption and alt text.

pub mod charts;
pub mod dataset;
pub mod metrics;
pub mod ranking;
pub mod server;

use agentmesh_proto::v1::AgentCard;
use agentmesh_runtime::{
    Agent, ErrorReason, JsonObject, OutArtifact, ServerConfig, SkillSpec, Task, TaskContext,
    TaskError, TaskOutput, TelemetryConfig,
};
use agentmesh_sales::kinds;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Skill id: metrics.
pub const METRICS: &str = "analytics.metrics";
/// Skill id: charts.
pub const CHARTS: &str = "analytics.charts";
/// Default port.
pub const DEFAULT_PORT: u16 = 50052;

/// Everything the analytics binary reads.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AnalyticsConfig {
    /// gRPC server settings.
    pub server: ServerConfig,
    /// Logging.
    pub telemetry: TelemetryConfig,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig::on_port(DEFAULT_PORT),
            telemetry: TelemetryConfig::default(),
        }
    }
}

/// The analytics agent.
#[derive(Debug, Default, Clone)]
pub struct AnalyticsAgent;

fn object(v: Value) -> JsonObject {
    match v {
        Value::Object(m) => m,
        _ => JsonObject::new(),
    }
}

impl Agent for AnalyticsAgent {
    fn card(&self) -> AgentCard {
        AgentCard {
            name: "analytics".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Computes sales metrics (totals, growth, breakdowns, movers, anomalies) \
                          and draws SVG charts from them."
                .into(),
            skills: vec![
                SkillSpec::new(METRICS, "Computes sales metrics from a sales.dataset: totals, growth vs the previous period and a year earlier, breakdowns by region, product line and channel with shares, top and bottom movers, anomalies, and on request a ranking (the top or bottom n of one breakdown by revenue, growth or margin). Each metric carries its definition and unit.")
                    .tags(&["sales", "metrics", "analysis"])
                    .input_schema(&json!({
                        "type": "object", "required": ["dataset"], "additionalProperties": false,
                        "properties": {
                            "dataset": {"type": "object", "required": ["rows"]},
                            "ranking": ranking::schema()
                        }
                    }))
                    .output_schema(&json!({
                        "type": "object",
                        "required": ["period", "totals", "growth", "breakdowns", "movers", "anomalies", "definitions"],
                        "properties": {
                            "totals": {"type": "object", "required": ["revenue", "gross_margin_pct", "units", "orders"]},
                            "anomalies": {"type": "array"},
                            "breakdowns": {"type": "object"}
                        }
                    }))
                    .consumes(&[kinds::DATASET])
                    .produces(&[kinds::METRICS])
                    .build(),
                SkillSpec::new(CHARTS, "Draws SVG charts from sales.metrics: revenue trend vs the previous period, revenue by region, product-line mix, growth by region. Each chart is an image/svg+xml artifact with a title, caption and alt text.")
                    .tags(&["sales", "charts", "visualization", "svg"])
                    .input_schema(&json!({
                        "type": "object", "required": ["metrics"], "additionalProperties": false,
                        "properties": {
                            "metrics": {"type": "object", "required": ["period", "totals"]},
                            "charts": {"type": "array", "items": {"enum": charts::ALL}, "uniqueItems": true}
                        }
                    }))
                    .output_schema(&json!({
                        "type": "object", "required": ["charts", "skipped"],
                        "properties": {
                            "charts": {"type": "array", "items": {
                                "type": "object",
                                "required": ["id", "artifact_id", "title", "caption", "alt_text"]
                            }},
                            "skipped": {"type": "array"}
                        }
                    }))
                    .consumes(&[kinds::METRICS])
                    .produces(&[kinds::CHART])
                    .build(),
            ],
            ..AgentCard::default()
        }
    }

    async fn execute(&self, task: Task, ctx: TaskContext) -> Result<TaskOutput, TaskError> {
        match task.skill_id.as_str() {
            METRICS => {
                let ds = dataset::Dataset::from_input(&task.input)?;
                let mut out = metrics::compute(&ds);
                if let Some(spec) = task.input.get("ranking") {
                    out["ranking"] = ranking::rank(&out, spec)?;
                }
                Ok(TaskOutput::new(object(out)))
            }
            CHARTS => {
                let metrics = task.input.get("metrics").cloned().unwrap_or(Value::Null);
                let wanted = dataset::strings(task.input.get("charts"));
                let (drawn, skipped) =
                    tokio::task::spawn_blocking(move || charts::render(&metrics, &wanted))
                        .await
                        .map_err(|_| TaskError::failed("chart rendering stopped unexpectedly"))?;
                if drawn.is_empty() {
                    let why: Vec<String> = skipped
                        .iter()
                        .map(|s| format!("{}: {}", s.id, s.reason))
                        .collect();
                    return Err(TaskError::new(
                        ErrorReason::InvalidInput,
                        format!(
                            "no chart can be drawn from these metrics ({})",
                            why.join("; ")
                        ),
                    ));
                }
                let mut listed = Vec::new();
                for chart in drawn {
                    let artifact_id = format!("chart-{}.svg", chart.id);
                    listed.push(json!({
                        "id": chart.id, "artifact_id": artifact_id, "title": chart.title,
                        "caption": chart.caption, "alt_text": chart.alt_text,
                    }));
                    ctx.artifact(OutArtifact {
                        artifact_id: artifact_id.clone(),
                        name: artifact_id,
                        description: chart.caption,
                        media_type: "image/svg+xml".into(),
                        metadata: object(json!({"title": chart.title, "alt_text": chart.alt_text})),
                        data: chart.svg.into_bytes(),
                    })
                    .await;
                }
                let skipped: Vec<Value> = skipped
                    .iter()
                    .map(|s| json!({"id": s.id, "reason": s.reason}))
                    .collect();
                Ok(TaskOutput::new(object(
                    json!({"charts": listed, "skipped": skipped}),
                )))
            }
            other => Err(TaskError::new(
                ErrorReason::UnknownSkill,
                format!("unknown skill {other}"),
            )),
        }
    }
}
