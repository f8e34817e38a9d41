//! Deterministic executive summaries from sales metrics.
//!
//! The wording follows the data: verbs scale with the size and direction of
//! a change, findings are chosen by what stands out, and phrasing varies
//! between equivalent forms by a seed taken from the figures, so two
//! different quarters do not read like one template with blanks. Every
//! figure is printed from the metrics with the rounding the faithfulness
//! check expects.

use agentmesh_sales::format::{money, thousands};
use serde_json::Value;

/// A written summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// One sentence.
    pub headline: String,
    /// Three to five findings with their numbers.
    pub findings: Vec<String>,
    /// Risks and anomalies.
    pub risks: Vec<String>,
    /// One recommendation.
    pub recommendation: String,
}

impl Summary {
    /// The summary as Markdown.
    pub fn markdown(&self) -> String {
        let mut s = format!("**{}**\n\n**Key findings**\n\n", self.headline);
        for f in &self.findings {
            s.push_str(&format!("- {f}\n"));
        }
        if !self.risks.is_empty() {
            s.push_str("\n**Risks and anomalies**\n\n");
            for r in &self.risks {
                s.push_str(&format!("- {r}\n"));
            }
        }
        s.push_str(&format!("\n**Recommendation:** {}\n", self.recommendation));
        s
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x.abs())
}

struct Picker(u64);

impl Picker {
    fn pick<'a>(&mut self, options: &[&'a str]) -> &'a str {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let n = options.len().max(1) as u64;
        options
            .get(usize::try_from((self.0 >> 33) % n).unwrap_or(0))
            .copied()
            .unwrap_or("")
    }
}

fn movement(g: f64, p: &mut Picker) -> &'static str {
    match g {
        g if g >= 15.0 => p.pick(&["surged", "jumped", "climbed sharply"]),
        g if g >= 3.0 => p.pick(&["grew", "rose", "increased"]),
        g if g > 0.5 => p.pick(&["edged up", "inched up"]),
        g if g >= -0.5 => "held steady",
        g if g > -3.0 => p.pick(&["slipped", "eased"]),
        g if g > -15.0 => p.pick(&["fell", "declined", "dropped"]),
        _ => p.pick(&["plunged", "fell sharply"]),
    }
}

fn name(m: &Value) -> &str {
    m["name"].as_str().unwrap_or("")
}

/// Writes a summary from `analytics.metrics` output.
pub fn write(metrics: &Value) -> Summary {
    let period = metrics["period"]["label"].as_str().unwrap_or("the period");
    let totals = &metrics["totals"];
    let revenue = totals["revenue"].as_f64().unwrap_or(0.0);
    let seed = revenue.to_bits() ^ (totals["orders"].as_f64().unwrap_or(0.0).to_bits() >> 7);
    let mut p = Picker(seed);
    let ya = &metrics["growth"]["vs_year_ago"];
    let prev = &metrics["growth"]["vs_previous"];
    let named = &metrics["growth"]["vs_period"];
    let named_label = named["label"].as_str().unwrap_or("the named period");
    let basis_phrase = |basis: &Value| match basis.as_str() {
        Some("vs_year_ago") => "year over year".to_string(),
        Some("vs_period") => format!("against {named_label}"),
        _ => "over the previous period".to_string(),
    };
    let regions = metrics["breakdowns"]["region"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let lines = metrics["breakdowns"]["product_line"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let channels = metrics["breakdowns"]["channel"]
        .as_array()
        .cloned()
        .unwrap_or_default();

    // Headline: the total, its main comparison, and who led.
    let (basis_label, basis_growth) = match (
        ya["revenue_pct"].as_f64(),
        named["revenue_pct"].as_f64(),
        prev["revenue_pct"].as_f64(),
    ) {
        (Some(g), _, _) => ("year over year".to_string(), Some(g)),
        (None, Some(g), _) => (format!("against {named_label}"), Some(g)),
        (None, None, Some(g)) => ("over the previous period".to_string(), Some(g)),
        _ => (String::new(), None),
    };
    let leader = regions.first().map(name).unwrap_or("");
    let headline = match basis_growth {
        Some(g) => format!(
            "{period} revenue {} {} {basis_label} to {}{}",
            movement(g, &mut p),
            pct(g),
            money(revenue),
            if leader.is_empty() {
                ".".to_string()
            } else {
                format!(", with {leader} the largest region.")
            }
        ),
        None => format!("{period} revenue was {}.", money(revenue)),
    };

    let mut findings = Vec::new();
    if let Some(g) = prev["revenue_pct"].as_f64() {
        let label = prev["label"].as_str().unwrap_or("the previous period");
        findings.push(format!(
            "{} revenue {} {} against {label} ({} then).",
            if period.starts_with('Q') {
                p.pick(&["Sequentially,", "Quarter on quarter,"])
            } else {
                p.pick(&["Sequentially,", "Against the prior period,"])
            },
            movement(g, &mut p),
            pct(g),
            money(prev["revenue"].as_f64().unwrap_or(0.0))
        ));
    }
    if let Some(g) = named["revenue_pct"].as_f64()
        && ya["revenue_pct"].is_number()
    {
        findings.push(format!(
            "Against {named_label}, revenue {} {} ({} then).",
            movement(g, &mut p),
            pct(g),
            money(named["revenue"].as_f64().unwrap_or(0.0))
        ));
    }
    if let (Some(m), Some(aov)) = (
        totals["gross_margin_pct"].as_f64(),
        totals["average_order_value"].as_f64(),
    ) {
        let orders = totals["orders"].as_f64().unwrap_or(0.0);
        let margin_change = ya["gross_margin_pts"].as_f64();
        findings.push(format!(
            "Gross margin was {m:.1}%{}; {} orders averaged {} each.",
            match margin_change {
                Some(d) if d.abs() >= 0.1 => format!(
                    " ({} {:.1} points on a year earlier)",
                    if d > 0.0 { "up" } else { "down" },
                    d.abs()
                ),
                _ => String::new(),
            },
            thousands(orders),
            money(aov)
        ));
    }
    if let Some(top) = regions.first() {
        let share = top["share_pct"].as_f64().unwrap_or(0.0);
        let fastest = regions
            .iter()
            .filter(|r| r["growth_vs_year_ago_pct"].is_number())
            .max_by(|a, b| {
                a["growth_vs_year_ago_pct"]
                    .as_f64()
                    .unwrap_or(0.0)
                    .total_cmp(&b["growth_vs_year_ago_pct"].as_f64().unwrap_or(0.0))
            });
        let mut s = format!(
            "{} contributed {} of revenue ({})",
            name(top),
            pct(share),
            money(top["revenue"].as_f64().unwrap_or(0.0))
        );
        if let Some(f) = fastest.filter(|f| name(f) != name(top)) {
            s.push_str(&format!(
                "; {} was the fastest-growing region at {} year over year",
                name(f),
                pct(f["growth_vs_year_ago_pct"].as_f64().unwrap_or(0.0))
            ));
        }
        s.push('.');
        findings.push(s);
    }
    if let Some(new_line) = lines.iter().find(|l| l["new"].as_bool() == Some(true)) {
        findings.push(format!(
            "{} {} and already accounts for {} of revenue ({}).",
            name(new_line),
            p.pick(&["is new since last year", "launched within the last year"]),
            pct(new_line["share_pct"].as_f64().unwrap_or(0.0)),
            money(new_line["revenue"].as_f64().unwrap_or(0.0))
        ));
    } else if let Some(top_line) = lines.first() {
        findings.push(format!(
            "{} remained the largest product line with {} of revenue.",
            name(top_line),
            pct(top_line["share_pct"].as_f64().unwrap_or(0.0))
        ));
    }
    if findings.len() < 5
        && let Some(ch) = channels.first()
    {
        findings.push(format!(
            "{} was the leading channel with {} of sales.",
            name(ch),
            pct(ch["share_pct"].as_f64().unwrap_or(0.0))
        ));
    }
    findings.truncate(5);

    let mut risks = Vec::new();
    for a in metrics["anomalies"].as_array().into_iter().flatten() {
        if a["kind"] == "growth_outlier"
            && a["growth_pct"].as_f64().unwrap_or(0.0) < a["peer_mean_pct"].as_f64().unwrap_or(0.0)
        {
            risks.push(format!(
                "{} is lagging: {} {} {}, while its peers averaged {}{}.",
                a["name"].as_str().unwrap_or(""),
                if a["growth_pct"].as_f64().unwrap_or(0.0) < 0.0 {
                    "revenue fell"
                } else {
                    "revenue grew only"
                },
                pct(a["growth_pct"].as_f64().unwrap_or(0.0)),
                basis_phrase(&a["basis"]),
                if a["peer_mean_pct"].as_f64().unwrap_or(0.0) < 0.0 {
                    "a decline of "
                } else {
                    ""
                },
                pct(a["peer_mean_pct"].as_f64().unwrap_or(0.0)),
            ));
        }
    }
    if let Some(d) = ya["gross_margin_pts"].as_f64().filter(|d| *d <= -1.0) {
        risks.push(format!(
            "Gross margin eroded by {:.1} points year over year; check discounting.",
            d.abs()
        ));
    }
    for b in metrics["movers"]["bottom"]
        .as_array()
        .into_iter()
        .flatten()
        .take(2)
    {
        let g = b["growth_pct"].as_f64().unwrap_or(0.0);
        let n = b["name"].as_str().unwrap_or("");
        if g < 0.0 && !risks.iter().any(|r| r.starts_with(n)) {
            risks.push(format!(
                "{n} declined {} {}.",
                pct(g),
                basis_phrase(&b["basis"])
            ));
        }
    }
    risks.truncate(4);

    let lagging = metrics["anomalies"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| {
            a["kind"] == "growth_outlier" && a["growth_pct"].as_f64() < a["peer_mean_pct"].as_f64()
        })
        .and_then(|a| a["name"].as_str());
    let new_line = lines
        .iter()
        .find(|l| l["new"].as_bool() == Some(true))
        .map(name);
    let recommendation = match (lagging, new_line) {
        (Some(weak), Some(new)) => format!(
            "Investigate the shortfall in {weak} before setting next period's targets, and keep investing behind {new} while it builds share."
        ),
        (Some(weak), None) => {
            format!("Investigate the shortfall in {weak} before setting next period's targets.")
        }
        (None, _) if !risks.is_empty() => {
            "Address the risks above before setting next period's targets.".to_string()
        }
        (None, _) if leader.is_empty() => {
            "Maintain the current plan; no material risks stand out.".to_string()
        }
        (None, _) => format!(
            "Build on the momentum in {leader} and keep discounting in check to protect margin."
        ),
    };

    Summary {
        headline,
        findings,
        risks,
        recommendation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentmesh_sales::faithfulness;
    use proptest::prelude::*;
    use serde_json::json;

    /// A growth figure as analytics writes them: one decimal, any sign.
    fn growth() -> impl Strategy<Value = f64> {
        (-600i32..600).prop_map(|g| f64::from(g) / 10.0)
    }

    fn member(name: &str, revenue: f64, share: f64, g: f64, new: bool) -> Value {
        json!({"name": name, "revenue": revenue, "share_pct": share,
               "growth_vs_year_ago_pct": g, "growth_vs_previous_pct": g / 2.0, "new": new})
    }

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        /// Whatever the figures and their signs, every number the writer
        /// prints passes the faithfulness check the orchestrator applies,
        /// movements included ("fell 3.1%" only for a fall).
        #[test]
        fn every_summary_passes_the_faithfulness_check(
            ya in growth(), prev in growth(), margin_pts in growth(),
            region_g in prop::collection::vec(growth(), 1..4),
            peer in growth(), outlier in growth(), new_line in any::<bool>(),
            named in prop::option::of(growth()), with_ya in any::<bool>(),
        ) {
            let regions: Vec<Value> = region_g
                .iter()
                .enumerate()
                .map(|(i, g)| member(&format!("Region {i}"), 1_000_000.0 / (i as f64 + 1.0), 40.0 - i as f64, *g, false))
                .collect();
            let metrics = json!({
                "period": {"label": "Q2 2025"},
                "totals": {"revenue": 51_820_000.0, "gross_margin_pct": 28.2, "orders": 16_194.0,
                           "average_order_value": 3_200.0, "units": 111_236.0},
                "growth": {
                    "vs_previous": {"label": "Q1 2025", "revenue": 44_180_000.0, "revenue_pct": prev},
                    "vs_year_ago": {"label": "Q2 2024", "revenue_pct": ya, "gross_margin_pts": margin_pts}
                },
                "breakdowns": {
                    "region": regions,
                    "product_line": [member("Tablets", 7_260_000.0, 14.0, 0.0, new_line),
                                     member("Laptops", 30_000_000.0, 60.0, 3.0, false)],
                    "channel": [member("Partner", 32_340_000.0, 62.4, 1.0, false)]
                },
                "anomalies": [{"kind": "growth_outlier", "name": "Region 0", "growth_pct": outlier,
                               "peer_mean_pct": peer, "basis": "vs_year_ago"}],
                "movers": {"bottom": [{"name": "Software", "growth_pct": outlier, "basis": "vs_period"}]}
            });
            let mut metrics = metrics;
            if let Some(g) = named {
                metrics["growth"]["vs_period"] =
                    json!({"label": "Q4 2024", "revenue": 47_000_000.0, "revenue_pct": g});
            }
            if !with_ya {
                metrics["growth"]["vs_year_ago"] = Value::Null;
            }
            let text = write(&metrics).markdown();
            let report = faithfulness::check(&text, &metrics, &faithfulness::labels(&metrics));
            prop_assert!(report.passed(), "{:?} in\n{text}", report.untraceable);
        }
    }
}
