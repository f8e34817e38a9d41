//! Report sections for the sales kinds, as Markdown: the body of a section
//! for each kind's output. The orchestrator's report places them; what
//! they say about sales is written here.

use std::fmt::Write as _;

use serde::Deserialize;
use serde_json::Value;

use crate::format;
use crate::model::{Charts, Comparison, Dataset, Forecast, Member, Metrics, Quality, Summary};

/// `|` and newlines would break a Markdown table cell.
pub fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// `s` with its first letter upper-case ("product line" → "Product line").
fn capitalized(s: &str) -> String {
    let mut out = s.to_string();
    if let Some(first) = out.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    out
}

fn or_na(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "n/a".into(), f)
}

fn view<'a, T: Deserialize<'a>>(out: &'a Value) -> Option<T> {
    T::deserialize(out).ok()
}

/// The headline of a `summary` output.
pub fn headline(out: &Value) -> String {
    view::<Summary>(out).map(|s| s.headline).unwrap_or_default()
}

/// A `summary` output: its own Markdown without its top heading (the
/// section's title stands there), else the headline and findings.
pub fn summary(out: &Value) -> Option<String> {
    let s: Summary = view(out)?;
    if let Some(md) = s.markdown {
        return Some(
            md.lines()
                .skip_while(|l| l.starts_with("# "))
                .collect::<Vec<_>>()
                .join("\n")
                .trim()
                .to_string(),
        );
    }
    let mut body = format!("**{}**\n\n", s.headline);
    for f in &s.findings {
        let _ = writeln!(body, "- {f}");
    }
    Some(body)
}

/// A `sales.metrics` output: the totals against each comparison period it
/// has, each breakdown as a table, and the anomalies.
pub fn metrics(out: &Value) -> Option<String> {
    let m: Metrics = view(out)?;
    // The comparisons present, each with its column heading and how a
    // breakdown member's growth against it is read.
    type MemberGrowth = fn(&Member) -> Option<f64>;
    let against = |c: &Comparison, fallback: &str| {
        c.label
            .as_ref()
            .map_or_else(|| fallback.to_string(), |l| format!("vs {l}"))
    };
    let comparisons: Vec<(String, &Comparison, MemberGrowth)> = [
        (
            m.growth.vs_previous.as_ref(),
            "vs previous",
            (|x: &Member| x.growth_vs_previous_pct) as MemberGrowth,
        ),
        (
            m.growth.vs_year_ago.as_ref(),
            "vs year ago",
            |x: &Member| x.growth_vs_year_ago_pct,
        ),
        (
            m.growth.vs_period.as_ref(),
            "vs named period",
            |x: &Member| x.growth_vs_period_pct,
        ),
    ]
    .into_iter()
    .filter_map(|(c, fallback, member)| c.map(|c| (against(c, fallback), c, member)))
    .collect();
    let heads: String = comparisons
        .iter()
        .map(|(h, _, _)| format!(" {h} |"))
        .collect();
    let rule = " ---: |".repeat(comparisons.len());
    let t = &m.totals;
    let mut s = format!(
        "Period: **{}**. Figures in {}.\n\n| Metric | Value |{heads}\n| --- | ---: |{rule}\n",
        m.period.label.as_deref().unwrap_or("n/a"),
        m.currency.as_deref().unwrap_or("USD"),
    );
    type Change = fn(&Comparison) -> Option<f64>;
    type Format = fn(f64) -> String;
    let rows: [(&str, String, Change, Format); 4] = [
        (
            "Revenue",
            or_na(t.revenue, format::money),
            |c| c.revenue_pct,
            format::signed_pct,
        ),
        (
            "Gross margin",
            or_na(t.gross_margin_pct, format::pct),
            |c| c.gross_margin_pts,
            format::pts,
        ),
        (
            "Units",
            or_na(t.units, format::thousands),
            |c| c.units_pct,
            format::signed_pct,
        ),
        (
            "Orders",
            or_na(t.orders, format::thousands),
            |c| c.orders_pct,
            format::signed_pct,
        ),
    ];
    for (name, value, change, fmt) in rows {
        let changes: String = comparisons
            .iter()
            .map(|(_, c, _)| format!(" {} |", or_na(change(c), fmt)))
            .collect();
        let _ = writeln!(s, "| {name} | {value} |{changes}");
    }
    if let Some(aov) = t.average_order_value {
        let blanks = " |".repeat(comparisons.len());
        let _ = writeln!(
            s,
            "| Average order value | {} |{blanks}",
            format::money(aov)
        );
    }
    for (dim, members) in &m.breakdowns {
        let name = dim.replace('_', " ");
        let heading = capitalized(&name);
        let _ = write!(
            s,
            "\n**Revenue by {name}**\n\n| {heading} | Revenue | Share | Margin |{heads}\n| --- | ---: | ---: | ---: |{rule}\n",
        );
        for member in members {
            let growth: String = comparisons
                .iter()
                .map(|(_, _, g)| format!(" {} |", or_na(g(member), format::signed_pct)))
                .collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |{growth}",
                cell(&member.name),
                or_na(member.revenue, format::money),
                or_na(member.share_pct, format::pct),
                or_na(member.gross_margin_pct, format::pct),
            );
        }
    }
    if let Some(r) = &m.ranking {
        let named_period = m
            .growth
            .vs_period
            .as_ref()
            .and_then(|c| c.label.as_deref())
            .map_or_else(
                || "Growth vs the named period".to_string(),
                |l| format!("Growth vs {l}"),
            );
        let (label, fmt): (String, fn(f64) -> String) = match (r.by.as_str(), r.measure.as_str()) {
            ("growth", "growth_vs_period_pct") => (named_period, format::signed_pct),
            ("growth", "growth_vs_previous_pct") => {
                ("Growth vs the previous period".into(), format::signed_pct)
            }
            ("growth", _) => ("Growth vs a year earlier".into(), format::signed_pct),
            ("margin", _) => ("Gross margin".into(), format::pct),
            _ => ("Revenue".into(), format::money),
        };
        let dim = r.dimension.replace('_', " ");
        let named = if r.rows.len() == 1 {
            dim.clone()
        } else {
            format!("{dim}s")
        };
        let _ = write!(
            s,
            "\n**{} {} {named} by {}**\n\n| Rank | {} | {label} |\n| ---: | --- | ---: |\n",
            if r.order == "bottom" { "Bottom" } else { "Top" },
            r.rows.len(),
            r.by,
            cell(&capitalized(&dim))
        );
        for row in &r.rows {
            let _ = writeln!(
                s,
                "| {} | {} | {} |",
                row.rank,
                cell(&row.name),
                or_na(row.value, fmt)
            );
        }
    }
    let anomalies: Vec<&str> = m
        .anomalies
        .iter()
        .filter_map(|a| a.message.as_deref())
        .collect();
    if !anomalies.is_empty() {
        s.push_str("\n**Anomalies**\n\n");
        for a in anomalies {
            let _ = writeln!(s, "- {a}");
        }
    }
    Some(s)
}

/// A `chart` output: each chart's title and caption, and what was skipped.
pub fn charts(out: &Value) -> Option<String> {
    let c: Charts = view(out)?;
    let mut s = String::new();
    for chart in &c.charts {
        let _ = writeln!(s, "- **{}**: {}", chart.title, chart.caption);
    }
    for k in &c.skipped {
        let _ = writeln!(
            s,
            "- skipped: {}",
            k.as_str().map_or_else(|| k.to_string(), str::to_string)
        );
    }
    Some(s)
}

/// A `sales.dataset` output: what it holds, not the rows.
pub fn dataset(out: &Value) -> Option<String> {
    let d: Dataset = view(out)?;
    let filters = if d.filters.is_empty() {
        "none".to_string()
    } else {
        Value::Object(d.filters.clone()).to_string()
    };
    let rows = match (d.truncated, d.source.row_count) {
        (true, Some(all)) => format!(
            "{} rows (the first {} are in the output; dataset.csv has them all)",
            format::thousands(all as f64),
            format::thousands(d.rows.len() as f64)
        ),
        _ => format!("{} rows", d.rows.len()),
    };
    Some(format!(
        "Period {} ({} to {}): {rows} grouped by {}; revenue {}, {} orders. Filters: {}. Source: {}.",
        d.period.label.as_deref().unwrap_or("n/a"),
        d.period.start.as_deref().unwrap_or("?"),
        d.period.end.as_deref().unwrap_or("?"),
        if d.group_by.is_empty() {
            "nothing".to_string()
        } else {
            d.group_by.join(", ")
        },
        or_na(d.totals.revenue, format::money),
        or_na(d.totals.orders, format::thousands),
        filters,
        d.source
            .kind
            .as_deref()
            .or(d.source.name.as_deref())
            .unwrap_or("the data agent"),
    ))
}

/// A `sales.forecast` output: a table of the months and the total, each
/// with its interval, and how it was made.
pub fn forecast(out: &Value) -> Option<String> {
    let f: Forecast = view(out)?;
    if f.forecast.is_empty() {
        return None;
    }
    let level = or_na(f.level, |l| format!("{:.0}%", l * 100.0));
    let mut s = format!("| Month | Revenue | {level} interval |\n| --- | ---: | ---: |\n");
    for p in f.forecast.iter().chain(&f.total) {
        let _ = writeln!(
            s,
            "| {} | {} | {} to {} |",
            cell(&p.month),
            or_na(p.revenue, format::money),
            or_na(p.lower, format::money),
            or_na(p.upper, format::money)
        );
    }
    let _ = write!(
        s,
        "\nFitted on {} months ({} to {}): {}.",
        f.history.months,
        cell(&f.history.first_month),
        cell(&f.history.last_month),
        f.method
    );
    for note in &f.notes {
        let _ = write!(s, "\n\n- {note}");
    }
    Some(s)
}

/// A `sales.quality` output: its verdict, then each issue listed.
pub fn quality(out: &Value) -> Option<String> {
    let q: Quality = view(out)?;
    if q.summary.is_empty() {
        return None;
    }
    let verdict = if q.passed { "passed" } else { "failed" };
    let mut s = format!("**Data quality {verdict}**: {}\n", q.summary);
    for i in &q.issues {
        let _ = write!(s, "\n- {} ({}): {}", i.severity, i.check, i.message);
    }
    if q.issues_not_listed > 0 {
        let _ = write!(s, "\n- and {} more", q.issues_not_listed);
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_forecast_is_a_table_of_months_and_total_with_their_interval() {
        let out = json!({
            "method": "least squares", "level": 0.95,
            "history": {"first_month": "2023-01", "last_month": "2025-06", "months": 30},
            "forecast": [{"month": "2025-07", "revenue": 4_100_000.0, "lower": 3_900_000.0, "upper": 4_300_000.0}],
            "total": {"month": "2025-07..2025-07", "revenue": 4_100_000.0, "lower": 3_900_000.0, "upper": 4_300_000.0},
            "notes": ["it assumes the trend continues"]
        });
        let md = forecast(&out).unwrap();
        assert!(md.contains("| Month | Revenue | 95% interval |"), "{md}");
        assert!(
            md.contains("| 2025-07 | $4.10M | $3.90M to $4.30M |"),
            "{md}"
        );
        assert!(
            md.contains("Fitted on 30 months (2023-01 to 2025-06)"),
            "{md}"
        );
        assert!(md.contains("- it assumes the trend continues"), "{md}");
        assert!(forecast(&json!({"forecast": []})).is_none());
    }

    #[test]
    fn a_quality_report_lists_its_verdict_and_issues() {
        let out = json!({
            "summary": "30 rows checked: 1 errors, 0 warnings", "passed": false,
            "issues": [{"check": "missing_months", "severity": "error", "message": "no rows at all for 2024-03"}],
            "issues_not_listed": 2
        });
        let md = quality(&out).unwrap();
        assert!(
            md.starts_with("**Data quality failed**: 30 rows checked"),
            "{md}"
        );
        assert!(
            md.contains("- error (missing_months): no rows at all for 2024-03"),
            "{md}"
        );
        assert!(md.contains("- and 2 more"), "{md}");
    }

    #[test]
    fn a_ranking_is_a_table_in_the_metrics() {
        let out = json!({
            "period": {"label": "Q2 2025"}, "totals": {"revenue": 10.0},
            "ranking": {"dimension": "product_line", "by": "growth", "order": "bottom",
                        "rows": [{"rank": 1, "name": "Software", "value": -7.04}]}
        });
        let md = metrics(&out).unwrap();
        assert!(md.contains("**Bottom 1 product line by growth**"), "{md}");
        assert!(md.contains("| 1 | Software | -7.0% |"), "{md}");
    }

    #[test]
    fn metrics_render_every_figure_and_na_for_missing_ones() {
        let out = json!({
            "period": {"label": "Q2 2025"},
            "totals": {"revenue": 12_345_678.0, "gross_margin_pct": 41.26, "units": 1234.0, "orders": 99.0},
            "growth": {"vs_previous": {"label": "Q1 2025", "revenue_pct": 8.24, "gross_margin_pts": -0.44}},
            "breakdowns": {"region": [{"name": "Europe | West", "revenue": 4500.0, "share_pct": 36.4}]},
            "anomalies": [{"message": "Online had no revenue a year earlier (new)"}]
        });
        let body = metrics(&out).unwrap();
        assert!(
            body.contains("Period: **Q2 2025**. Figures in USD."),
            "{body}"
        );
        assert!(
            body.contains("| Metric | Value | vs Q1 2025 |\n| --- | ---: | ---: |\n"),
            "{body}"
        );
        assert!(body.contains("| Revenue | $12.35M | +8.2% |\n"), "{body}");
        assert!(
            body.contains("| Gross margin | 41.3% | -0.4 pts |\n"),
            "{body}"
        );
        assert!(body.contains("| Units | 1,234 | n/a |\n"), "{body}");
        assert!(!body.contains("Average order value"), "{body}");
        assert!(body.contains("**Revenue by region**"), "{body}");
        assert!(
            body.contains("| Europe \\| West | $4.5k | 36.4% | n/a | n/a |\n"),
            "{body}"
        );
        assert!(
            body.contains("- Online had no revenue a year earlier (new)"),
            "{body}"
        );
    }

    #[test]
    fn a_named_comparison_period_gets_its_own_column_and_ranks_growth() {
        let out = json!({
            "period": {"label": "Q2 2025"},
            "totals": {"revenue": 200.0, "units": 10.0},
            "growth": {
                "vs_year_ago": {"label": "Q2 2024", "revenue_pct": 10.0},
                "vs_period": {"label": "Q4 2024", "revenue_pct": -4.5, "units_pct": 2.0}
            },
            "breakdowns": {"region": [
                {"name": "Europe", "revenue": 150.0, "growth_vs_year_ago_pct": 12.0, "growth_vs_period_pct": -3.0}
            ]},
            "ranking": {"dimension": "region", "by": "growth", "order": "top",
                        "measure": "growth_vs_period_pct", "rows": [{"rank": 1, "name": "Europe", "value": -3.0}]}
        });
        let body = metrics(&out).unwrap();
        assert!(
            body.contains("| Metric | Value | vs Q2 2024 | vs Q4 2024 |"),
            "{body}"
        );
        assert!(
            body.contains("| Revenue | $200 | +10.0% | -4.5% |"),
            "{body}"
        );
        assert!(body.contains("| Units | 10 | n/a | +2.0% |"), "{body}");
        assert!(
            body.contains("| Region | Revenue | Share | Margin | vs Q2 2024 | vs Q4 2024 |"),
            "{body}"
        );
        assert!(
            body.contains("| Europe | $150 | n/a | n/a | +12.0% | -3.0% |"),
            "{body}"
        );
        assert!(
            body.contains("| Rank | Region | Growth vs Q4 2024 |"),
            "{body}"
        );
    }

    #[test]
    fn a_summary_drops_its_own_title() {
        let out = json!({"headline": "Up", "markdown": "# Executive summary\n\nRevenue rose.\n"});
        assert_eq!(summary(&out).unwrap(), "Revenue rose.");
        let plain = json!({"headline": "Up", "findings": ["a", "b"]});
        assert_eq!(summary(&plain).unwrap(), "**Up**\n\n- a\n- b\n");
        assert_eq!(headline(&plain), "Up");
    }

    #[test]
    fn a_dataset_is_described_not_listed() {
        let out = json!({
            "period": {"label": "Q2 2025", "start": "2025-04-01", "end": "2025-06-30"},
            "rows": [{"a": 1}, {"a": 2}], "group_by": ["region"],
            "totals": {"revenue": 950.0, "orders": 3.0}, "source": {"kind": "sqlite"}
        });
        assert_eq!(
            dataset(&out).unwrap(),
            "Period Q2 2025 (2025-04-01 to 2025-06-30): 2 rows grouped by region; revenue $950, 3 orders. Filters: none. Source: sqlite."
        );
        let cut = json!({
            "period": {"label": "2024"}, "rows": [{"a": 1}], "group_by": ["week"],
            "totals": {}, "truncated": true, "source": {"row_count": 12_345}
        });
        assert!(
            dataset(&cut)
                .unwrap()
                .contains("12,345 rows (the first 1 are in the output; dataset.csv has them all)")
        );
    }

    #[test]
    fn an_output_of_the_wrong_shape_is_not_rendered_as_this_kind() {
        assert!(metrics(&json!({"totals": "lots"})).is_none());
        assert!(charts(&json!({"charts": 3})).is_none());
    }
}
