//! The report rendered for people: Markdown, and one self-contained HTML
//! page made from it (charts inline as data URIs, no external assets,
//! readable on screen and in print).

use std::fmt::Write as _;

use agentmesh_proto::v1::{Artifact, Provenance, Report, part};
use agentmesh_sales::render::cell;
use base64::Engine as _;

/// The file name an artifact is saved under: its name (else its id) made
/// safe, with the extension of its media type when the name has none.
pub fn file_name(a: &Artifact) -> String {
    let name = if a.name.is_empty() {
        &a.artifact_id
    } else {
        &a.name
    };
    let mut safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let extension = match bytes_of(a).1 {
        "image/svg+xml" => Some("svg"),
        "image/png" => Some("png"),
        "text/csv" => Some("csv"),
        "application/json" => Some("json"),
        "text/markdown" => Some("md"),
        "text/html" => Some("html"),
        "text/plain" => Some("txt"),
        _ => None,
    };
    if let Some(ext) = extension
        && !safe.contains('.')
    {
        safe.push('.');
        safe.push_str(ext);
    }
    safe
}

/// The bytes and media type of an artifact's first raw part.
pub fn bytes_of(a: &Artifact) -> (&[u8], &str) {
    a.parts
        .iter()
        .find_map(|p| match &p.content {
            Some(part::Content::Raw(b)) => Some((b.as_slice(), p.media_type.as_str())),
            _ => None,
        })
        .unwrap_or((&[], ""))
}

fn duration_text(p: &Provenance) -> String {
    p.duration
        .and_then(|d| std::time::Duration::try_from(d).ok())
        .map_or_else(|| "n/a".into(), |d| format!("{:.2} s", d.as_secs_f64()))
}

/// The report as Markdown; `src` names each image.
pub fn markdown(
    report: &Report,
    artifacts: &[Artifact],
    goal: &str,
    notes: &[String],
    src: impl Fn(&Artifact) -> String,
) -> String {
    let mut s = format!("# {}\n\n", report.title);
    let _ = writeln!(s, "> {}\n", cell(goal));
    if !notes.is_empty() {
        for n in notes {
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
///
/// The charts go in after the page is sanitized: Markdown parsing and the
/// sanitizer see a short placeholder per chart (`agentmesh-chart:` with a
/// nonce of this page and the artifact's index), not hundreds of KB of
/// base64 each, which they would scan and percent-encode character by
/// character (most of the orchestrator's CPU per goal run, measured).
pub fn html(report: &Report, artifacts: &[Artifact], goal: &str, notes: &[String]) -> String {
    use pulldown_cmark::{Event, Options, Parser, html};
    let marker = format!("{CHART_SCHEME}:{}-", uuid::Uuid::new_v4().simple());
    let markdown = markdown(report, artifacts, goal, notes, |a| {
        let index = artifacts
            .iter()
            .position(|x| std::ptr::eq(x, a))
            .unwrap_or(usize::MAX);
        format!("{marker}{index}")
    });
    let parser = Parser::new_ext(&markdown, Options::ENABLE_TABLES).map(|ev| match ev {
        Event::Html(h) | Event::InlineHtml(h) => Event::Text(h),
        other => other,
    });
    let mut rendered = String::new();
    html::push_html(&mut rendered, parser);
    let body = inline_charts(&sanitize(&rendered, &marker), &marker, artifacts);
    let mut title = String::new();
    html::push_html(
        &mut title,
        std::iter::once(Event::Text(report.title.as_str().into())),
    );
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}</body>\n</html>\n"
    )
}

/// The URL scheme of a chart's placeholder in a page being rendered.
const CHART_SCHEME: &str = "agentmesh-chart";

/// `body` with each `src="<marker><index>"` replaced by the artifact's
/// bytes as a `data:` URI (base64 has no character that needs escaping in
/// an attribute). A placeholder naming no artifact is left as it is.
fn inline_charts(body: &str, marker: &str, artifacts: &[Artifact]) -> String {
    use base64::engine::general_purpose::STANDARD;
    let needle = format!("src=\"{marker}");
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(at) = rest.find(&needle) {
        let after = &rest[at + needle.len()..];
        let digits = after.find('"').unwrap_or(after.len());
        let artifact = after[..digits]
            .parse::<usize>()
            .ok()
            .and_then(|i| artifacts.get(i));
        out.push_str(&rest[..at]);
        match artifact.map(bytes_of) {
            Some((bytes, media)) if media == "image/svg+xml" => {
                out.push_str("src=\"data:");
                out.push_str(media);
                out.push_str(";base64,");
                STANDARD.encode_string(bytes, &mut out);
            }
            _ => out.push_str(&rest[at..at + needle.len() + digits]),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// The page's body as only what a report needs: links to the web or mail,
/// the charts' placeholders (`marker`, this page's own) as the only image
/// sources, table alignment. Anything else an agent's or a model's text
/// smuggled in (`javascript:` or `data:` links, images from elsewhere,
/// handlers, styles) is dropped, so the page stays self-contained and runs
/// nothing.
fn sanitize(html: &str, marker: &str) -> String {
    use std::borrow::Cow;
    let marker = marker.to_owned();
    ammonia::Builder::default()
        .url_schemes(["http", "https", "mailto", CHART_SCHEME].into())
        .add_tag_attributes("th", ["style"])
        .add_tag_attributes("td", ["style"])
        .attribute_filter(
            move |element, attribute, value| match (element, attribute) {
                ("img", "src") => value
                    .starts_with(marker.as_str())
                    .then_some(Cow::Borrowed(value)),
                (_, "href" | "src") if value.starts_with(CHART_SCHEME) => None,
                (_, "style") => matches!(
                    value,
                    "text-align: left" | "text-align: right" | "text-align: center"
                )
                .then_some(Cow::Borrowed(value)),
                _ => Some(Cow::Borrowed(value)),
            },
        )
        .clean(html)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentmesh_proto::v1::{Part, ReportSection};

    fn svg() -> Artifact {
        Artifact {
            artifact_id: "c1".into(),
            name: "revenue trend.svg".into(),
            description: "Revenue [by month]".into(),
            parts: vec![Part {
                content: Some(part::Content::Raw(b"<svg/>".to_vec())),
                media_type: "image/svg+xml".into(),
                filename: String::new(),
            }],
            metadata: None,
        }
    }

    fn report() -> Report {
        Report {
            title: "Sales performance — Q2 2025".into(),
            sections: vec![
                ReportSection {
                    id: "charts".into(),
                    title: "Charts".into(),
                    step_id: "charts".into(),
                    body: "- **Trend**: up".into(),
                    artifact_ids: vec!["c1".into()],
                    ..ReportSection::default()
                },
                ReportSection {
                    id: "summary".into(),
                    title: "Executive summary".into(),
                    step_id: "summary".into(),
                    missing: true,
                    missing_reason: "AGENT_UNAVAILABLE: down | out".into(),
                    ..ReportSection::default()
                },
            ],
            provenance: vec![Provenance {
                step_id: "charts".into(),
                agent: "analytics".into(),
                endpoint: "10.0.0.2:50052".into(),
                skill: "analytics.charts".into(),
                agent_version: "0.1.0".into(),
                attempts: 2,
                duration: std::time::Duration::from_millis(1_250).try_into().ok(),
                input_hash: "0123456789abcdef".into(),
                earlier_endpoints: vec!["10.0.0.1:50052".into()],
            }],
            ..Report::default()
        }
    }

    #[test]
    fn markdown_has_every_section_the_missing_ones_marked_and_the_provenance() {
        let md = markdown(
            &report(),
            &[svg()],
            "Q2 | report",
            &["no year given".into()],
            file_name,
        );
        let expected = [
            "# Sales performance — Q2 2025\n\n> Q2 \\| report\n\n- _no year given_\n\n",
            "## Charts\n\n- **Trend**: up\n\n![Revenue by month](revenue_trend.svg)\n",
            "## Executive summary\n\n**Missing**: AGENT_UNAVAILABLE: down \\| out\n",
            "| Charts | charts | analytics | 10.0.0.2:50052 (after 10.0.0.1:50052) | analytics.charts | 0.1.0 | 2 | 1.25 s | `0123456789ab` |",
            "| Executive summary | summary | — | — | — | — | — | — | missing: AGENT_UNAVAILABLE: down \\| out |",
        ];
        for part in expected {
            assert!(md.contains(part), "missing {part:?} in\n{md}");
        }
    }

    #[test]
    fn html_is_one_page_with_images_inline_and_agent_html_escaped() {
        let mut r = report();
        r.sections[0].body = "<script>alert(1)</script>".into();
        let page = html(&r, &[svg()], "goal", &[]);
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(
            page.contains("src=\"data:image/svg+xml;base64,PHN2Zy8+\""),
            "{page}"
        );
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("<title>Sales performance — Q2 2025</title>"));
    }

    #[test]
    fn links_that_would_run_or_leave_the_page_are_dropped() {
        let mut r = report();
        r.sections[0].body = "[click](javascript:alert(1)) [page](data:text/html;base64,PHNjcmlwdD4=) [docs](https://example.org/x) ![x](javascript:alert(2))".into();
        let page = html(&r, &[svg()], "goal", &[]);
        assert!(!page.contains("javascript:"), "{page}");
        assert!(!page.contains("data:text/html"), "{page}");
        assert!(page.contains("href=\"https://example.org/x\""), "{page}");
        assert!(
            page.contains("src=\"data:image/svg+xml;base64,"),
            "charts stay inline"
        );
        assert!(
            page.contains("text-align: right"),
            "tables keep their alignment"
        );
    }

    #[test]
    fn only_the_pages_own_charts_are_inlined() {
        let mut r = report();
        r.sections[0].body = "![a](agentmesh-chart:0-0) ![b](data:image/svg+xml;base64,PHN2Zy8+) ![c](https://example.org/c.svg)".into();
        let page = html(&r, &[svg()], "goal", &[]);
        assert_eq!(
            page.matches("src=\"data:image/svg+xml;base64,PHN2Zy8+\"")
                .count(),
            1,
            "the chart once, not an image from agent text: {page}"
        );
        assert!(!page.contains("agentmesh-chart:0-0"), "{page}");
        assert!(!page.contains("example.org/c.svg"), "{page}");
    }

    #[test]
    fn file_names_are_safe() {
        let mut a = svg();
        assert_eq!(file_name(&a), "revenue_trend.svg");
        a.name = "../../etc/passwd".into();
        assert_eq!(file_name(&a), ".._.._etc_passwd");
        a.name.clear();
        assert_eq!(file_name(&a), "c1.svg", "the media type's extension");
        a.parts.clear();
        assert_eq!(file_name(&a), "c1");
    }
}
