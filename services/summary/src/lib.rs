//! The summary agent: executive summaries from sales metrics, every number
//! checked against the metrics (see [`faithfulness`]).
//!
//! Skill `summary.write` (consumes `sales.metrics`, produces `summary`).

pub use agentmesh_sales::faithfulness;
pub mod llm;
pub mod server;
pub mod writer;

use std::sync::Arc;

use agentmesh_proto::v1::AgentCard;
use agentmesh_runtime::{
    Agent, ErrorReason, JsonObject, Question, ServerConfig, SkillSpec, Task, TaskContext,
    TaskError, TaskOutput, TelemetryConfig,
};
use agentmesh_sales::kinds;
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
    /// The optional language-model backend.
    pub llm: llm::LlmConfig,
    /// Ask the caller (a person, through the orchestrator) which audience
    /// to write for when the task's input names none.
    pub ask_audience: bool,
}

impl Default for SummaryConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig::on_port(DEFAULT_PORT),
            telemetry: TelemetryConfig::default(),
            llm: llm::LlmConfig::default(),
            ask_audience: false,
        }
    }
}

/// The summary agent: deterministic, or a language model checked for
/// faithfulness with the deterministic summary as fallback.
#[derive(Debug, Default, Clone)]
pub struct SummaryAgent {
    llm: Option<Arc<llm::LlmClient>>,
    ask_audience: bool,
}

/// The audiences a summary is written for.
pub const AUDIENCES: [&str; 3] = ["executive", "board", "analyst"];

impl SummaryAgent {
    /// The deterministic agent.
    pub fn deterministic() -> Self {
        Self::default()
    }

    /// An agent that asks a language model first.
    pub fn with_llm(client: llm::LlmClient) -> Self {
        Self {
            llm: Some(Arc::new(client)),
            ask_audience: false,
        }
    }

    /// Asks which audience to write for when the input names none.
    #[must_use]
    pub fn asking_audience(mut self, ask: bool) -> Self {
        self.ask_audience = ask;
        self
    }

    /// The audience: the input's, else (when asking is on) the caller's
    /// answer, else "executive".
    async fn audience(&self, task: &Task, ctx: &TaskContext) -> Result<String, TaskError> {
        if let Some(a) = task.input.get("audience").and_then(Value::as_str) {
            return Ok(a.to_string());
        }
        if !self.ask_audience {
            return Ok(AUDIENCES[0].to_string());
        }
        let answer = ctx
            .ask(Question::new(
                "audience",
                "Who is this summary for? The goal does not say.",
                json!({
                    "type": "object",
                    "required": ["audience"],
                    "additionalProperties": false,
                    "properties": {"audience": {
                        "enum": AUDIENCES,
                        "description": "executive: the usual three to five findings; board: the three that matter most; analyst: every finding with its risks"
                    }}
                }),
            ))
            .await?;
        Ok(answer
            .get("audience")
            .and_then(Value::as_str)
            .unwrap_or(AUDIENCES[0])
            .to_string())
    }
}

/// The figures a language model may use, written as the check reads them.
pub fn facts(metrics: &Value) -> Vec<String> {
    use agentmesh_sales::format::{money, thousands};
    let mut out = Vec::new();
    let t = &metrics["totals"];
    out.extend(
        t["revenue"]
            .as_f64()
            .map(|v| format!("revenue {}", money(v))),
    );
    out.extend(
        t["gross_margin_pct"]
            .as_f64()
            .map(|v| format!("gross margin {v:.1}%")),
    );
    out.extend(
        t["orders"]
            .as_f64()
            .map(|v| format!("orders {}", thousands(v))),
    );
    out.extend(
        t["average_order_value"]
            .as_f64()
            .map(|v| format!("average order value {}", money(v))),
    );
    for k in ["vs_previous", "vs_year_ago", "vs_period"] {
        let g = &metrics["growth"][k];
        if let (Some(label), Some(p)) = (g["label"].as_str(), g["revenue_pct"].as_f64()) {
            out.push(format!("revenue growth vs {label} {p:+.1}%"));
        }
    }
    for dim in ["region", "product_line", "channel"] {
        for m in metrics["breakdowns"][dim].as_array().into_iter().flatten() {
            let name = m["name"].as_str().unwrap_or("");
            if let Some(share) = m["share_pct"].as_f64() {
                out.push(format!(
                    "{name}: {} revenue, {share:.1}% share",
                    money(m["revenue"].as_f64().unwrap_or(0.0))
                ));
            }
            if let Some(g) = m["growth_vs_year_ago_pct"].as_f64() {
                out.push(format!("{name}: {g:+.1}% year over year"));
            }
        }
    }
    for a in metrics["anomalies"].as_array().into_iter().flatten() {
        out.extend(a["message"].as_str().map(str::to_string));
    }
    out
}

fn llm_output(text: &str, figures: usize) -> JsonObject {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let clean = |l: &str| {
        l.trim_start_matches(['#', '*', '-', ' '])
            .trim_end_matches('*')
            .trim()
            .to_string()
    };
    let headline = lines.first().map(|l| clean(l)).unwrap_or_default();
    let bullets: Vec<String> = lines
        .iter()
        .filter(|l| l.starts_with("- ") || l.starts_with("* "))
        .map(|l| clean(l))
        .collect();
    let recommendation = lines
        .iter()
        .rev()
        .find(|l| l.to_ascii_lowercase().contains("recommend"))
        .or(lines.last())
        .map(|l| clean(l))
        .unwrap_or_default();
    let findings: Vec<String> = if bullets.is_empty() {
        lines.iter().skip(1).take(5).map(|l| clean(l)).collect()
    } else {
        bullets.into_iter().take(5).collect()
    };
    let out = json!({
        "headline": headline,
        "findings": if findings.is_empty() { vec![headline.clone()] } else { findings },
        "risks": [],
        "recommendation": recommendation,
        "markdown": text,
        "backend": "llm",
        "faithfulness": {"passed": true, "checked": figures},
    });
    match out {
        Value::Object(m) => m,
        _ => JsonObject::new(),
    }
}

/// Refuses metrics without the totals a summary is written from.
fn check_metrics(metrics: &Value) -> Result<(), TaskError> {
    if metrics["totals"]["revenue"].is_number() {
        Ok(())
    } else {
        Err(TaskError::invalid_input(
            "metrics.totals.revenue is missing: pass the output of analytics.metrics",
        ))
    }
}

/// Writes and checks a summary; an unfaithful text is an error, never a
/// result.
/// Written for `audience`: a board gets the three findings that matter
/// most.
pub fn summarize(metrics: &Value, audience: &str) -> Result<JsonObject, TaskError> {
    check_metrics(metrics)?;
    let mut summary = writer::write(metrics);
    if audience == "board" {
        summary.findings.truncate(3);
    }
    let text = summary.markdown();
    let report = faithfulness::check(&text, metrics, &faithfulness::labels(metrics));
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
        "audience": audience,
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
                        "properties": {
                            "metrics": {"type": "object", "required": ["period", "totals"]},
                            "audience": {"enum": AUDIENCES, "description": "whom to write for; asked when absent and ask_audience is on"}
                        }
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
                            "audience": {"enum": AUDIENCES},
                            "fallback_reason": {"type": "string", "description": "why the language model's text was not used"},
                            "faithfulness": {"type": "object", "required": ["passed"], "properties": {"passed": {"const": true}}}
                        }
                    }))
                    .consumes(&[kinds::METRICS])
                    .produces(&[kinds::SUMMARY])
                    .build(),
            ],
            ..AgentCard::default()
        }
    }

    async fn execute(&self, task: Task, ctx: TaskContext) -> Result<TaskOutput, TaskError> {
        let metrics = task.input.get("metrics").cloned().unwrap_or(Value::Null);
        // Nobody is asked about input that cannot be summarized.
        check_metrics(&metrics)?;
        let audience = self.audience(&task, &ctx).await?;
        // Always written: it is the fallback.
        let mut deterministic = summarize(&metrics, &audience)?;
        let Some(client) = &self.llm else {
            return Ok(TaskOutput::new(deterministic));
        };
        ctx.progress("asking the language model", -1.0).await;
        let reason = match llm::summarize(client, &metrics, &facts(&metrics)).await {
            Ok(llm::Answer { text, tokens }) => {
                // Spent whether or not the text passes: the run's budget
                // counts them.
                if tokens > 0 {
                    ctx.tokens_used(tokens, "the language model's summary")
                        .await;
                }
                let report = faithfulness::check(&text, &metrics, &faithfulness::labels(&metrics));
                let mut output = llm_output(&text, report.checked.len());
                let headline = output
                    .get("headline")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if report.passed() && !headline.is_empty() {
                    // Only checked text reaches clients, a line at a time.
                    for line in text.split_inclusive('\n') {
                        ctx.text_delta(line).await;
                    }
                    output.insert("audience".into(), Value::String(audience));
                    return Ok(TaskOutput::new(output));
                }
                if report.passed() {
                    "the model's text has no headline".to_string()
                } else {
                    let bad: Vec<&str> = report
                        .untraceable
                        .iter()
                        .map(|f| f.shown.as_str())
                        .collect();
                    format!(
                        "the model's text failed the faithfulness check ({} not in the metrics)",
                        bad.join(", ")
                    )
                }
            }
            Err(e) => e.to_string(),
        };
        tracing::warn!(%reason, "falling back to the deterministic summary");
        ctx.progress(
            format!("fell back to the deterministic summary: {reason}"),
            -1.0,
        )
        .await;
        deterministic.insert("fallback_reason".into(), Value::String(reason));
        Ok(TaskOutput::new(deterministic))
    }
}
