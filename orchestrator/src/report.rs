//! Report integration: the step outputs of a run become one report,
//! structured (sections, provenance, artifacts) and, for runs started from a
//! goal, rendered as Markdown and as one self-contained HTML page (charts inline as data URIs, no external
//! assets, readable on screen and in print).
//!
//! Sections follow what each step's skill produces: `summary` → Executive
//! summary, `sales.metrics` → Key metrics, `chart` → Charts,
//! `sales.dataset` → Data; any other kind gets a generic section. Every
//! figure comes from the step outputs as they are, so the summary, the
//! metrics table and the charts agree. A step that did not complete keeps
//! its section, marked missing with the reason.

use std::fmt::Write as _;

use agentmesh_proto::error::MeshError;
use agentmesh_proto::v1::{Artifact, Deliverable, Part, Provenance, Report, ReportSection, part};
use agentmesh_runtime::faithfulness;
use base64::Engine as _;
use serde_json::Value;

use crate::engine::Outcome;
use crate::intent::GoalIntent;
use crate::plan::Plan;

/// File name of the Markdown rendering among the report's artifacts.
pub const MARKDOWN_FILE: &str = "report.md";
/// File name of the HTML rendering.
pub const HTML_FILE: &str = "report.html";

/// A report and the artifact bytes that go with it.
pub struct BuiltReport {
    /// The structured report (artifacts listed without bytes).
    pub report: Report,
    /// Every artifact with its bytes: step artifacts, then (for goals)
    /// report.md and report.html.
    pub artifacts: Vec<Artifact>,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Summary,
    Metrics,
    Charts,
    Data,
    Other,
}

fn kind_of(produces: &[String]) -> Kind {
    let has = |k: &str| produces.iter().any(|p| p == k);
    if has("summary") {
        Kind::Summary
    } else if has("sales.metrics") {
        Kind::Metrics
    } else if has("chart") {
        Kind::Charts
    } else if has("sales.dataset") {
        Kind::Data
    } else {
        Kind::Other
    }
}

fn title_of(kind: Kind, step: &str) -> String {
    match kind {
        Kind::Summary => "Executive summary".into(),
        Kind::Metrics => "Key metrics".into(),
        Kind::Charts => "Charts".into(),
        Kind::Data => "Data".into(),
        Kind::Other => format!("Output of step {step}"),
    }
}

/// Builds the report of a finished run.
pub fn integrate(
    goal: &str,
    intent: Option<&GoalIntent>,
    plan: &Plan,
    outcomes: &mut [Outcome],
    stop: Option<&MeshError>,
) -> BuiltReport {
    let title = match intent {
        Some(i) => format!("Sales performance — {}", i.period.label),
        None => goal.to_string(),
    };
    let mut order: Vec<(Kind, usize)> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (kind_of(&s.skill.skill.produces), i))
        .collect();
    order.sort();
    let mut sections = Vec::new();
    let mut provenance = Vec::new();
    let mut artifacts: Vec<Artifact> = Vec::new();
    let mut headline = String::new();
    let wanted = |kind: Kind| {
        let Some(intent) = intent else { return true };
        let d = match kind {
            Kind::Summary => Deliverable::Summary,
            Kind::Metrics => Deliverable::Metrics,
            Kind::Charts => Deliverable::Charts,
            Kind::Data => Deliverable::Dataset,
            Kind::Other => return true,
        };
        intent.deliverables.contains(&d)
    };
    for (kind, i) in order {
        let step = &plan.steps[i];
        let id = step.spec.id.clone();
        // Steps that only feed a deliverable appear in the provenance.
        if !wanted(kind) {
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
                section.body = match kind {
                    Kind::Summary => {
                        headline = out["headline"].as_str().unwrap_or_default().to_string();
                        summary_body(out)
                    }
                    Kind::Metrics => metrics_body(out),
                    Kind::Charts => charts_body(out),
                    Kind::Data => data_body(out),
                    Kind::Other => other_body(out),
                };
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
        let markdown = render_markdown(&report, &artifacts, goal, intent, file_name);
        let html = render_html(&report, &artifacts, goal, intent);
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

/// The file name an artifact is saved under.
pub fn file_name(a: &Artifact) -> String {
    let name = if a.name.is_empty() {
        &a.artifact_id
    } else {
        &a.name
    };
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn bytes_of(a: &Artifact) -> (&[u8], &str) {
    a.parts
        .iter()
        .find_map(|p| match &p.content {
            Some(part::Content::Raw(b)) => Some((b.as_slice(), p.media_type.as_str())),
            _ => None,
        })
        .unwrap_or((&[], ""))
}

fn money(v: &Value) -> String {
    v.as_f64().map_or_else(|| "n/a".into(), faithfulness::money)
}

fn count(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "n/a".into(), faithfulness::thousands)
}

fn pct(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "n/a".into(), |x| format!("{x:+.1}%"))
}

fn plain_pct(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "n/a".into(), |x| format!("{x:.1}%"))
}

fn pts(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "n/a".into(), |x| format!("{x:+.1} pts"))
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn summary_body(out: &Value) -> String {
    if let Some(md) = out["markdown"].as_str() {
        // The summary's own top heading is the section's title here.
        return md
            .lines()
            .skip_while(|l| l.starts_with("# "))
            .collect::<Vec<_>>()
            .join("\n")
            .trim()
            .to_string();
    }
    let mut s = format!("**{}**\n\n", out["headline"].as_str().unwrap_or_default());
    for f in out["findings"].as_array().into_iter().flatten() {
        let _ = writeln!(s, "- {}", f.as_str().unwrap_or_default());
    }
    s
}

fn metrics_body(out: &Value) -> String {
    let t = &out["totals"];
    let prev = &out["growth"]["vs_previous"];
    let ya = &out["growth"]["vs_year_ago"];
    let label = |c: &Value, fallback: &str| {
        c["label"]
            .as_str()
            .map_or_else(|| fallback.to_string(), |l| format!("vs {l}"))
    };
    let mut s = format!(
        "Period: **{}**. Figures in {}.\n\n| Metric | Value | {} | {} |\n| --- | ---: | ---: | ---: |\n",
        out["period"]["label"].as_str().unwrap_or("n/a"),
        out["currency"].as_str().unwrap_or("USD"),
        label(prev, "vs previous"),
        label(ya, "vs year ago"),
    );
    let _ = writeln!(
        s,
        "| Revenue | {} | {} | {} |",
        money(&t["revenue"]),
        pct(&prev["revenue_pct"]),
        pct(&ya["revenue_pct"])
    );
    let _ = writeln!(
        s,
        "| Gross margin | {} | {} | {} |",
        plain_pct(&t["gross_margin_pct"]),
        pts(&prev["gross_margin_pts"]),
        pts(&ya["gross_margin_pts"])
    );
    let _ = writeln!(
        s,
        "| Units | {} | {} | {} |",
        count(&t["units"]),
        pct(&prev["units_pct"]),
        pct(&ya["units_pct"])
    );
    let _ = writeln!(
        s,
        "| Orders | {} | {} | {} |",
        count(&t["orders"]),
        pct(&prev["orders_pct"]),
        pct(&ya["orders_pct"])
    );
    if t["average_order_value"].is_number() {
        let _ = writeln!(
            s,
            "| Average order value | {} | | |",
            money(&t["average_order_value"])
        );
    }
    if let Some(breakdowns) = out["breakdowns"].as_object() {
        for (dim, members) in breakdowns {
            let Some(members) = members.as_array() else {
                continue;
            };
            let name = dim.replace('_', " ");
            let mut heading = name.clone();
            if let Some(first) = heading.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            let _ = write!(
                s,
                "\n**Revenue by {name}**\n\n| {heading} | Revenue | Share | Margin | vs previous | vs year ago |\n| --- | ---: | ---: | ---: | ---: | ---: |\n",
            );
            for m in members {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} |",
                    cell(m["name"].as_str().unwrap_or_default()),
                    money(&m["revenue"]),
                    plain_pct(&m["share_pct"]),
                    plain_pct(&m["gross_margin_pct"]),
                    pct(&m["growth_vs_previous_pct"]),
                    pct(&m["growth_vs_year_ago_pct"]),
                );
            }
        }
    }
    let anomalies: Vec<&str> = out["anomalies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["message"].as_str())
        .collect();
    if !anomalies.is_empty() {
        s.push_str("\n**Anomalies**\n\n");
        for a in anomalies {
            let _ = writeln!(s, "- {a}");
        }
    }
    s
}

fn charts_body(out: &Value) -> String {
    let mut s = String::new();
    for c in out["charts"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "- **{}**: {}",
            c["title"].as_str().unwrap_or_default(),
            c["caption"].as_str().unwrap_or_default()
        );
    }
    for k in out["skipped"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "- skipped: {}",
            k.as_str().map_or_else(|| k.to_string(), str::to_string)
        );
    }
    s
}

fn data_body(out: &Value) -> String {
    let rows = out["rows"].as_array().map_or(0, Vec::len);
    let group_by: Vec<&str> = out["group_by"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let filters = out["filters"]
        .as_object()
        .filter(|f| !f.is_empty())
        .map_or_else(
            || "none".to_string(),
            |f| Value::Object(f.clone()).to_string(),
        );
    format!(
        "Period {} ({} to {}): {} rows grouped by {}; revenue {}, {} orders. Filters: {}. Source: {}.",
        out["period"]["label"].as_str().unwrap_or("n/a"),
        out["period"]["start"].as_str().unwrap_or("?"),
        out["period"]["end"].as_str().unwrap_or("?"),
        rows,
        if group_by.is_empty() {
            "nothing".to_string()
        } else {
            group_by.join(", ")
        },
        money(&out["totals"]["revenue"]),
        count(&out["totals"]["orders"]),
        filters,
        out["source"]["kind"]
            .as_str()
            .or(out["source"]["name"].as_str())
            .unwrap_or("the data agent"),
    )
}

fn other_body(out: &Value) -> String {
    let text = serde_json::to_string_pretty(out).unwrap_or_default();
    let cut: String = text.chars().take(4_000).collect();
    format!("```json\n{cut}\n```")
}

fn duration_text(p: &Provenance) -> String {
    p.duration
        .and_then(|d| std::time::Duration::try_from(d).ok())
        .map_or_else(|| "n/a".into(), |d| format!("{:.2} s", d.as_secs_f64()))
}

/// The report as Markdown; `src` names each image.
fn render_markdown(
    report: &Report,
    artifacts: &[Artifact],
    goal: &str,
    intent: Option<&GoalIntent>,
    src: impl Fn(&Artifact) -> String,
) -> String {
    let mut s = format!("# {}\n\n", report.title);
    let _ = writeln!(s, "> {}\n", cell(goal));
    if let Some(i) = intent {
        for n in &i.notes {
            let _ = writeln!(s, "- _{}_", cell(n));
        }
        s.push('\n');
    }
    for section in &report.sections {
        let _ = writeln!(s, "## {}\n", section.title);
        if section.missing {
            let _ = writeln!(s, "**Missing**: {}\n", cell(&section.missing_reason));
            continue;
        }
        let _ = writeln!(s, "{}\n", section.body.trim());
        for id in &section.artifact_ids {
            let Some(a) = artifacts.iter().find(|a| &a.artifact_id == id) else {
                continue;
            };
            let (_, media) = bytes_of(a);
            if media == "image/svg+xml" {
                let alt = a.description.replace(['[', ']'], "");
                let _ = writeln!(s, "![{alt}]({})\n", src(a));
            } else {
                let _ = writeln!(s, "Attachment: [{}]({})\n", a.name, file_name(a));
            }
        }
    }
    s.push_str("## Provenance\n\n| Section | Step | Agent | Replica | Skill | Version | Attempts | Duration | Input hash |\n| --- | --- | --- | --- | --- | --- | ---: | ---: | --- |\n");
    for p in &report.provenance {
        let title = report
            .sections
            .iter()
            .find(|sec| sec.step_id == p.step_id)
            .map_or_else(|| "(input)".to_string(), |sec| sec.title.clone());
        let replica = if p.earlier_endpoints.is_empty() {
            p.endpoint.clone()
        } else {
            format!("{} (after {})", p.endpoint, p.earlier_endpoints.join(", "))
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | `{}` |",
            title,
            p.step_id,
            p.agent,
            replica,
            p.skill,
            p.agent_version,
            p.attempts,
            duration_text(p),
            &p.input_hash.get(..12).unwrap_or(&p.input_hash),
        );
    }
    for section in report.sections.iter().filter(|sec| sec.missing) {
        let _ = writeln!(
            s,
            "| {} | {} | — | — | — | — | — | — | missing: {} |",
            section.title,
            section.step_id,
            cell(&section.missing_reason)
        );
    }
    s
}

const CSS: &str = "body{font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1d2430;max-width:1000px;margin:2rem auto;padding:0 1.25rem}h1{font-size:1.8rem;margin-bottom:.25rem}h2{border-bottom:2px solid #e3e8ef;padding-bottom:.25rem;margin-top:2.25rem}blockquote{color:#4a5568;margin:0 0 1rem;padding-left:1rem;border-left:4px solid #cbd5e0}table{border-collapse:collapse;width:100%;margin:.75rem 0;font-size:.92rem}th,td{border:1px solid #e3e8ef;padding:.35rem .55rem;text-align:left}td:not(:first-child){font-variant-numeric:tabular-nums}th{background:#f5f7fa}img{display:block;max-width:100%;height:auto;margin:1rem auto;border:1px solid #e3e8ef;border-radius:4px;background:#fff}code{font-size:.85em}@media print{body{max-width:none;margin:0;font-size:11pt}h2{break-after:avoid}img,table{break-inside:avoid}}";

/// The report as one HTML page: the Markdown rendering with charts as
/// `data:` URIs; raw HTML from agent text is escaped, never passed through.
fn render_html(
    report: &Report,
    artifacts: &[Artifact],
    goal: &str,
    intent: Option<&GoalIntent>,
) -> String {
    use pulldown_cmark::{Event, Options, Parser, html};
    let markdown = render_markdown(report, artifacts, goal, intent, |a| {
        let (bytes, media) = bytes_of(a);
        format!(
            "data:{media};base64,{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    });
    let parser = Parser::new_ext(&markdown, Options::ENABLE_TABLES).map(|ev| match ev {
        Event::Html(h) | Event::InlineHtml(h) => Event::Text(h),
        other => other,
    });
    let mut body = String::new();
    html::push_html(&mut body, parser);
    let mut title = String::new();
    html::push_html(
        &mut title,
        std::iter::once(Event::Text(report.title.as_str().into())),
    );
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}</body>\n</html>\n"
    )
}
