//! Report integration: the step outputs of a run become one report,
//! structured (sections, provenance, artifacts) and, for runs started from a
//! goal, rendered as Markdown and as one self-contained HTML page (charts inline as data URIs, no external
//! assets, readable on screen and in print).
//!
//! Sections follow what each step's skill produces: `summary` → Executive
//! summary, `sales.metrics` → Key metrics, `chart` → Charts,
//! `sales.forecast` → Revenue forecast, `sales.quality` → Data quality,
//! `sales.dataset` → Data; any other kind gets a generic section. Every
//! figure comes from the step outputs as they are (the section bodies are
//! the sales crate's renderers), so the summary, the metrics table and the
//! charts agree. A step that did not complete keeps its section, marked
//! missing with the reason.
//!
//! The report is the run core's hook ([`SalesReport`]): the core calls it
//! once a run has finished and knows nothing of what it writes.

mod render;

use agentmesh_proto::error::MeshError;
use agentmesh_proto::v1::{Artifact, Intent, Part, Report, ReportSection, part};
use agentmesh_sales::{faithfulness, kinds, render as sales};
use serde_json::Value;

use crate::goal::planner;
use crate::run::hooks::{BuiltReport, FinishedRun, RunHooks};
use crate::run::outcome::Outcome;
use crate::run::plan::Plan;

pub use render::file_name;

/// File name of the Markdown rendering among the report's artifacts.
pub const MARKDOWN_FILE: &str = "report.md";
/// File name of the HTML rendering.
pub const HTML_FILE: &str = "report.html";

/// The hooks of the sales domain: its report, and its faithfulness check
/// on written figures.
pub struct SalesReport;

impl RunHooks for SalesReport {
    fn check_faithful(&self, text: &str, input: &Value) -> Result<(), String> {
        let report = faithfulness::check(text, input, &faithfulness::labels(input));
        if report.passed() {
            return Ok(());
        }
        let shown: Vec<&str> = report
            .untraceable
            .iter()
            .map(|f| f.shown.as_str())
            .collect();
        Err(format!("{} not found in it", shown.join(", ")))
    }

    fn integrate(&self, run: FinishedRun<'_>) -> Option<BuiltReport> {
        Some(integrate(
            run.goal,
            run.intent,
            run.plan,
            run.outcomes,
            run.stop,
        ))
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Summary,
    Metrics,
    Charts,
    Forecast,
    Quality,
    Data,
    Other,
}

/// The sections with a renderer, and the kind each stands for, in report
/// order.
const NAMED: [(Kind, &str); 6] = [
    (Kind::Summary, kinds::SUMMARY),
    (Kind::Metrics, kinds::METRICS),
    (Kind::Charts, kinds::CHART),
    (Kind::Forecast, kinds::FORECAST),
    (Kind::Quality, kinds::QUALITY),
    (Kind::Data, kinds::DATASET),
];

fn kind_of(produces: &[String]) -> Kind {
    NAMED
        .iter()
        .find(|(_, name)| produces.iter().any(|p| p == name))
        .map_or(Kind::Other, |(kind, _)| *kind)
}

fn title_of(kind: Kind, step: &str) -> String {
    match kind {
        Kind::Summary => "Executive summary".into(),
        Kind::Metrics => "Key metrics".into(),
        Kind::Charts => "Charts".into(),
        Kind::Forecast => "Revenue forecast".into(),
        Kind::Quality => "Data quality".into(),
        Kind::Data => "Data".into(),
        Kind::Other => format!("Output of step {step}"),
    }
}

/// Builds the report of a finished run.
pub fn integrate(
    goal: &str,
    intent: Option<&Intent>,
    plan: &Plan,
    outcomes: &mut [Outcome],
    stop: Option<&MeshError>,
) -> BuiltReport {
    // A goal for deliverables is a sales performance report; one only for
    // what other agents make (a forecast) is titled by its own words.
    let title = match intent
        .filter(|i| !i.deliverables.is_empty())
        .and_then(|i| i.period.as_ref())
    {
        Some(p) => format!("Sales performance — {}", p.label),
        None => goal.to_string(),
    };
    let mut order: Vec<(Kind, usize)> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let produces = s.skill.as_ref().map_or(&[][..], |k| &k.skill.produces);
            (kind_of(produces), i)
        })
        .collect();
    order.sort();
    let mut sections = Vec::new();
    let mut provenance = Vec::new();
    let mut artifacts: Vec<Artifact> = Vec::new();
    let mut headline = String::new();
    // A section is wanted when the goal asked for its kind (the planner's
    // table of what each deliverable is); other kinds always show.
    let wanted = |kind: Kind| {
        let asked = NAMED
            .iter()
            .find(|(k, _)| *k == kind)
            .and_then(|(_, name)| planner::deliverable_of(name));
        let (Some(intent), Some(d)) = (intent, asked) else {
            return true;
        };
        intent.deliverables.contains(&(d as i32))
    };
    for (kind, i) in order {
        let step = &plan.steps[i];
        let id = step.spec.id.clone();
        // Steps that only feed a deliverable, and approval gates, appear
        // in the provenance.
        if !wanted(kind) || step.is_gate() {
            if let Outcome::Done(done) = &mut outcomes[i] {
                provenance.push(std::mem::take(&mut done.provenance));
            }
            continue;
        }
        let mut section = ReportSection {
            id: id.clone(),
            title: title_of(kind, &id),
            step_id: id.clone(),
            ..ReportSection::default()
        };
        match &mut outcomes[i] {
            Outcome::Done(done) => {
                let out = &done.output;
                let body = match kind {
                    Kind::Summary => {
                        headline = sales::headline(out);
                        sales::summary(out)
                    }
                    Kind::Metrics => sales::metrics(out),
                    Kind::Charts => sales::charts(out),
                    Kind::Forecast => sales::forecast(out),
                    Kind::Quality => sales::quality(out),
                    Kind::Data => sales::dataset(out),
                    Kind::Other => None,
                };
                // An output of another shape than its kind promises is
                // shown as it is rather than as empty figures.
                section.body = body.unwrap_or_else(|| other_body(out));
                section.artifact_ids = done
                    .artifacts
                    .iter()
                    .map(|a| a.artifact_id.clone())
                    .collect();
                // The run is over: its outcomes are not read again.
                provenance.push(std::mem::take(&mut done.provenance));
                artifacts.append(&mut done.artifacts);
            }
            Outcome::Failed(f) => {
                section.missing = true;
                section.missing_reason = format!("{}: {}", f.reason.name(), f.message);
            }
            Outcome::Skipped(why) => {
                section.missing = true;
                section.missing_reason.clone_from(why);
            }
            Outcome::NotRun | Outcome::Running => {
                section.missing = true;
                section.missing_reason = stop.map_or_else(
                    || "not run".to_string(),
                    |c| format!("not run: {}", c.message),
                );
            }
        }
        sections.push(section);
    }
    let mut report = Report {
        title,
        sections,
        provenance,
        summary: headline,
        artifacts: Vec::new(),
    };
    // A goal asks for a report to read; an explicit plan (API use) gets the
    // structured report only.
    if intent.is_some() {
        let notes = intent.map_or(&[][..], |i| i.notes.as_slice());
        let markdown = render::markdown(&report, &artifacts, goal, notes, file_name);
        let html = render::html(&report, &artifacts, goal, notes);
        artifacts.push(text_artifact(MARKDOWN_FILE, "text/markdown", markdown));
        artifacts.push(text_artifact(HTML_FILE, "text/html", html));
    }
    report.artifacts = artifacts.iter().map(without_bytes).collect();
    BuiltReport { report, artifacts }
}

fn text_artifact(name: &str, media: &str, text: String) -> Artifact {
    Artifact {
        artifact_id: name.to_string(),
        name: name.to_string(),
        description: format!("the report as {media}"),
        parts: vec![Part {
            content: Some(part::Content::Raw(text.into_bytes())),
            media_type: media.to_string(),
            filename: name.to_string(),
        }],
        metadata: None,
    }
}

fn without_bytes(a: &Artifact) -> Artifact {
    Artifact {
        parts: a
            .parts
            .iter()
            .map(|p| Part {
                content: None,
                media_type: p.media_type.clone(),
                filename: p.filename.clone(),
            })
            .collect(),
        ..a.clone()
    }
}

fn other_body(out: &Value) -> String {
    let text = serde_json::to_string_pretty(out).unwrap_or_default();
    let cut: String = text.chars().take(4_000).collect();
    format!("```json\n{cut}\n```")
}
