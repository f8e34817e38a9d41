//! The faithfulness check: every number in a summary must be traceable to
//! the metric it names, in the metrics it was written from, at the rounding
//! it is shown with.
//!
//! A number is read with its unit: `$12.35M` is 12,350,000 ± 5,000 (half of
//! the last shown digit), `8.2%` is 8.2 ± 0.05, `1,234` is 1234 ± 0.5. What
//! it measures comes from its unit and the words around it (a
//! [`Measure`]): money only matches money metrics (`revenue`, `cost`, ...),
//! "36.4% of revenue" only a share, "margin was 41.3%" only a margin, "rose
//! 3.1%" only a growth of that sign, "0.4 points" only a change in points.
//! A figure in a sentence (or clause, up to `;`) that names a member of a
//! breakdown ("Europe contributed 36.4% of revenue") only matches that
//! member's metrics. Input that has no metric of a figure's measure (not
//! the sales metrics) is matched by value alone. Period labels (`Q2 2025`,
//! `Apr 2025`) are not figures and are skipped.

use serde_json::Value;

pub use crate::format::{money, thousands};

/// A number found in text.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// As written, e.g. "$12.35M".
    pub shown: String,
    /// Its value, e.g. 12350000.0.
    pub value: f64,
    /// Half of the last shown digit, scaled by the unit.
    pub tolerance: f64,
    /// The movement the words just before it give it ("rose 3.1%",
    /// "down 0.7 points"), if any.
    pub direction: Option<Direction>,
    /// What it measures, from its unit and the words around it.
    pub measure: Measure,
    /// The breakdown member its sentence names last before it, if any.
    pub member: Option<String>,
}

/// What a figure measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// `$…`: revenue, cost, profit, order value.
    Money,
    /// `…%` with "of"/"share" around it: a share of a total.
    Share,
    /// `…%` with "margin" before it: a margin.
    Margin,
    /// Any other `…%`: a growth or change in percent.
    Change,
    /// `… points`: a change in percentage points.
    Points,
    /// A plain number: a count (units, orders), or anything else.
    Plain,
}

impl Measure {
    /// Whether a metric under `key` can be what this measures. Ranking
    /// rows' `value` may be any of them.
    fn admits(self, key: &str) -> bool {
        if key == "value" {
            return true;
        }
        match self {
            Self::Money => MONEY_KEYS.contains(&key),
            Self::Share => key == "share_pct",
            Self::Margin => key == "gross_margin_pct",
            Self::Change => {
                key.ends_with("_pct") && key != "share_pct" && key != "gross_margin_pct"
            }
            Self::Points => key.ends_with("_pts"),
            Self::Plain => true,
        }
    }
}

/// Metrics in money.
const MONEY_KEYS: &[&str] = &[
    "revenue",
    "cost",
    "gross_profit",
    "average_order_value",
    "previous_revenue",
];

/// Which way a written change goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Rose, grew, up, ...: the metric must be positive.
    Up,
    /// Fell, declined, down, ...: the metric must be negative.
    Down,
}

const UP_WORDS: &[&str] = &[
    "rose",
    "risen",
    "grew",
    "grown",
    "up",
    "increased",
    "increase",
    "climbed",
    "surged",
    "jumped",
    "gained",
    "gain",
    "growth",
];
const DOWN_WORDS: &[&str] = &[
    "fell",
    "fallen",
    "fall",
    "declined",
    "decline",
    "dropped",
    "drop",
    "down",
    "slipped",
    "eased",
    "plunged",
    "decreased",
    "decrease",
    "shrank",
    "lost",
    "loss",
    "eroded",
];
/// A word right before a figure that makes it a level, not a change:
/// "fell to $44.18M".
const LEVEL_WORDS: &[&str] = &["to", "at", "from", "was", "were", "is"];

/// The direction the (up to three) words before a figure give it. A level
/// word right before it, or another figure in between, means none.
fn direction_before(text_before: &str) -> Option<Direction> {
    let words: Vec<String> = text_before
        .split_whitespace()
        .rev()
        .take(3)
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_ascii_lowercase()
        })
        .collect();
    if words
        .first()
        .is_some_and(|w| LEVEL_WORDS.contains(&w.as_str()))
    {
        return None;
    }
    for w in &words {
        if w.chars().any(|c| c.is_ascii_digit()) {
            return None;
        }
        if UP_WORDS.contains(&w.as_str()) {
            return Some(Direction::Up);
        }
        if DOWN_WORDS.contains(&w.as_str()) {
            return Some(Direction::Down);
        }
    }
    None
}

/// The outcome of a check.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Figures checked.
    pub checked: Vec<Figure>,
    /// Figures with no matching metric.
    pub untraceable: Vec<Figure>,
}

impl Report {
    /// Whether every figure was traced.
    pub fn passed(&self) -> bool {
        self.untraceable.is_empty()
    }
}

/// The strings under `label` keys anywhere in `v` (period names such as
/// `Q2 2025`, which are not figures), longest first.
pub fn labels(v: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("label", Value::String(s)) => out.push(s.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out);
    out.sort_by_key(|l| std::cmp::Reverse(l.len()));
    out.dedup();
    out
}

/// The words of `text` around a figure, lower-case, without punctuation.
fn words_of(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_ascii_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// What a figure shown as `shown` measures, given the text of its clause
/// before it and the text after it.
fn measure_of(shown: &str, before: &str, after: &str) -> Measure {
    let next: Vec<String> = words_of(after).into_iter().take(2).collect();
    if shown.starts_with('$') {
        return Measure::Money;
    }
    if !shown.ends_with('%') {
        return if next
            .first()
            .is_some_and(|w| w == "points" || w == "pts" || w == "point")
        {
            Measure::Points
        } else {
            Measure::Plain
        };
    }
    let prev: Vec<String> = words_of(before).into_iter().rev().take(4).collect();
    if next.first().is_some_and(|w| w == "of" || w == "share") || prev.iter().any(|w| w == "share")
    {
        Measure::Share
    } else if prev.iter().any(|w| w == "margin" || w == "margins") {
        Measure::Margin
    } else {
        Measure::Change
    }
}

/// Where the clause holding char `at` begins: after the last sentence end
/// (`.`, `!`, `?` before a space), `;`, `:` or line break.
fn clause_start(chars: &[char], at: usize) -> usize {
    (0..at)
        .rev()
        .find(|&k| {
            matches!(chars[k], ';' | '\n' | ':')
                || (matches!(chars[k], '.' | '!' | '?')
                    && chars.get(k + 1).is_none_or(|c| c.is_whitespace()))
        })
        .map_or(0, |k| k + 1)
}

/// The member whose name occurs last in `clause` (whole words; the longest
/// name where two end at the same place).
fn member_in(clause: &str, members: &[String]) -> Option<String> {
    let mut best: Option<(usize, usize, &String)> = None;
    for name in members.iter().filter(|n| !n.is_empty()) {
        for (at, _) in clause.match_indices(name.as_str()) {
            let end = at + name.len();
            let bounded = !clause[..at]
                .chars()
                .next_back()
                .is_some_and(char::is_alphanumeric)
                && !clause[end..]
                    .chars()
                    .next()
                    .is_some_and(char::is_alphanumeric);
            if bounded && best.is_none_or(|(e, l, _)| end > e || (end == e && name.len() > l)) {
                best = Some((end, name.len(), name));
            }
        }
    }
    best.map(|(_, _, n)| n.clone())
}

/// Reads the figures of `text`, skipping the given labels.
pub fn figures(text: &str, labels: &[String]) -> Vec<Figure> {
    read(text, labels, &[])
}

/// Reads the figures of `text`, skipping `labels`, with the member of
/// `members` each one's clause names.
fn read(text: &str, labels: &[String], members: &[String]) -> Vec<Figure> {
    let mut cleaned = text.to_string();
    for label in labels.iter().filter(|l| !l.is_empty()) {
        cleaned = cleaned.replace(label.as_str(), " ");
    }
    let chars: Vec<char> = cleaned.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let starts = c.is_ascii_digit()
            && (i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '.'));
        if !starts {
            i += 1;
            continue;
        }
        let begin = if i > 0 && chars[i - 1] == '$' {
            i - 1
        } else {
            i
        };
        let mut j = i;
        let mut digits = String::new();
        let mut decimals: Option<i32> = None;
        while j < chars.len() {
            let d = chars[j];
            if d.is_ascii_digit() {
                digits.push(d);
                if let Some(n) = decimals.as_mut() {
                    *n += 1;
                }
            } else if d == ','
                && j + 1 < chars.len()
                && chars[j + 1].is_ascii_digit()
                && decimals.is_none()
            {
                // thousands separator
            } else if d == '.'
                && j + 1 < chars.len()
                && chars[j + 1].is_ascii_digit()
                && decimals.is_none()
            {
                digits.push('.');
                decimals = Some(0);
            } else {
                break;
            }
            j += 1;
        }
        let (scale, unit_len) = match chars.get(j) {
            Some('M') if !chars.get(j + 1).is_some_and(|c| c.is_alphabetic()) => (1e6, 1),
            Some('k') if !chars.get(j + 1).is_some_and(|c| c.is_alphabetic()) => (1e3, 1),
            Some('B') if !chars.get(j + 1).is_some_and(|c| c.is_alphabetic()) => (1e9, 1),
            _ => (1.0, 0),
        };
        // A number glued to letters (Q2, H1, 3rd) is a label, not a figure.
        let glued = unit_len == 0 && chars.get(j).is_some_and(|c| c.is_alphabetic());
        if let (false, Ok(v)) = (glued, digits.parse::<f64>()) {
            let half_digit = 0.5 * 10f64.powi(-decimals.unwrap_or(0));
            let end = (j + unit_len + usize::from(chars.get(j + unit_len) == Some(&'%')))
                .min(chars.len());
            let before: String = chars[..begin].iter().collect();
            let clause: String = chars[clause_start(&chars, begin)..begin].iter().collect();
            let after: String = chars[end..].iter().take(40).collect();
            let shown: String = chars[begin..end].iter().collect();
            out.push(Figure {
                measure: measure_of(&shown, &clause, &after),
                member: member_in(&clause, members),
                shown,
                value: v * scale,
                tolerance: half_digit * scale + 1e-9,
                direction: direction_before(&before),
            });
        }
        i = j + unit_len.max(1);
    }
    out
}

/// A number of the metrics with the key it is under and the member (an
/// object's `name`) it belongs to.
struct Fact<'a> {
    key: &'a str,
    member: Option<&'a str>,
    value: f64,
}

fn facts<'a>(v: &'a Value, key: &'a str, member: Option<&'a str>, out: &mut Vec<Fact<'a>>) {
    match v {
        Value::Number(n) => out.extend(n.as_f64().map(|value| Fact { key, member, value })),
        Value::Array(a) => a.iter().for_each(|x| facts(x, key, member, out)),
        Value::Object(o) => {
            let member = o.get("name").and_then(Value::as_str).or(member);
            for (k, x) in o {
                facts(x, k, member, out);
            }
        }
        _ => {}
    }
}

/// Checks `text` against the metrics in `metrics`. A figure is traced when
/// a metric of what it measures (its [`Measure`]), of the member its clause
/// names if it names one, equals it at its rounding; a figure written as a
/// movement ("rose 3.1%", "fell 3.1%") only by a metric of that sign, since
/// figures are written without their sign.
pub fn check(text: &str, metrics: &Value, labels: &[String]) -> Report {
    let mut pool = Vec::new();
    facts(metrics, "", None, &mut pool);
    let mut members: Vec<String> = pool
        .iter()
        .filter_map(|f| f.member.map(str::to_string))
        .collect();
    members.sort();
    members.dedup();
    let mut checked = Vec::new();
    let mut untraceable = Vec::new();
    for fig in read(text, labels, &members) {
        let near = |m: f64| (m - fig.value).abs() <= fig.tolerance;
        // Input that names no metric of this measure (not sales metrics)
        // is matched by value alone.
        let typed = pool
            .iter()
            .any(|f| f.key != "value" && fig.measure.admits(f.key));
        let ok = pool
            .iter()
            .filter(|f| !typed || fig.measure.admits(f.key))
            .filter(|f| fig.member.is_none() || f.member == fig.member.as_deref())
            .any(|f| match fig.direction {
                Some(Direction::Up) => near(f.value),
                Some(Direction::Down) => near(-f.value),
                None => near(f.value) || near(f.value.abs()),
            });
        if !ok {
            untraceable.push(fig.clone());
        }
        checked.push(fig);
    }
    Report {
        checked,
        untraceable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_figures_with_units_and_rounding() {
        let f = figures(
            "Revenue was $12.35M (+8.2%) on 1,234 orders in Q2 2025.",
            &["Q2 2025".into()],
        );
        let shown: Vec<&str> = f.iter().map(|x| x.shown.as_str()).collect();
        assert_eq!(shown, vec!["$12.35M", "8.2%", "1,234"]);
        assert!((f[0].value - 12_350_000.0).abs() < 1e-6);
        assert!((f[0].tolerance - 5_000.0).abs() < 1e-3);
        assert!(figures("Q2 and H1 and 3rd", &[]).is_empty());
    }

    #[test]
    fn traces_numbers_to_metrics() {
        let metrics = json!({"totals": {"revenue": 12_349_120.55, "orders": 1234}, "growth": {"revenue_pct": -3.12}});
        let ok = check(
            "Revenue of $12.35M from 1,234 orders fell 3.1%.",
            &metrics,
            &[],
        );
        assert!(ok.passed(), "{ok:?}");
        let bad = check("Revenue of $13.0M rose 9%.", &metrics, &[]);
        assert_eq!(bad.untraceable.len(), 2);
    }

    #[test]
    fn a_movement_must_have_the_metrics_sign() {
        let metrics =
            json!({"growth": {"revenue_pct": -3.12, "units_pct": 4.0}, "revenue": 44_180_000.0});
        let shown = |text: &str| -> Vec<String> {
            check(text, &metrics, &[])
                .untraceable
                .into_iter()
                .map(|f| f.shown)
                .collect()
        };
        assert!(shown("Revenue fell 3.1%.").is_empty());
        assert_eq!(
            shown("Revenue rose 3.1%."),
            ["3.1%"],
            "a fall written as a rise"
        );
        assert_eq!(
            shown("Units declined 4.0%."),
            ["4.0%"],
            "a rise written as a fall"
        );
        assert!(shown("Units were up 4.0% (down 3.1% in revenue).").is_empty());
        assert!(
            shown("Revenue fell to $44.18M.").is_empty(),
            "a level, not a change"
        );
        assert!(shown("Revenue rose 4.0% to $44.18M.").is_empty());
        assert!(
            shown("Revenue moved 3.1%.").is_empty(),
            "no direction: either sign"
        );
    }

    #[test]
    fn a_figure_must_be_the_metric_it_names() {
        let metrics = json!({
            "totals": {"revenue": 44_180_000.0, "gross_margin_pct": 41.3, "orders": 1234},
            "growth": {"vs_year_ago": {"revenue_pct": 8.2, "gross_margin_pts": -0.4}},
            "breakdowns": {"region": [
                {"name": "Europe", "revenue": 16_000_000.0, "share_pct": 36.2, "growth_vs_year_ago_pct": 12.0},
                {"name": "Asia Pacific", "revenue": 9_000_000.0, "share_pct": 20.4, "growth_vs_year_ago_pct": -3.5}
            ]}
        });
        let shown = |text: &str| -> Vec<String> {
            check(text, &metrics, &[])
                .untraceable
                .into_iter()
                .map(|f| f.shown)
                .collect()
        };
        // What the summary writer says passes.
        assert!(
            shown(
                "Revenue rose 8.2% year over year to $44.18M, with Europe the largest region. \
                 Gross margin was 41.3% (down 0.4 points on a year earlier); 1,234 orders. \
                 Europe contributed 36.2% of revenue ($16.00M); Asia Pacific declined 3.5%."
            )
            .is_empty()
        );
        // Each of these numbers is in the metrics, but not as what it says.
        assert_eq!(
            shown("Revenue was $8.20M."),
            ["$8.20M"],
            "a percent as money"
        );
        assert_eq!(
            shown("Gross margin was 36.2%."),
            ["36.2%"],
            "a share as the margin"
        );
        assert_eq!(
            shown("Europe contributed 41.3% of revenue."),
            ["41.3%"],
            "the margin as a share"
        );
        assert_eq!(shown("Revenue rose 36.2%."), ["36.2%"], "a share as growth");
        assert_eq!(
            shown("Margin fell 8.2 points."),
            ["8.2"],
            "a percent as points"
        );
        assert_eq!(
            shown("Asia Pacific grew 12.0%; Europe had 20.4% of revenue."),
            ["12.0%", "20.4%"],
            "one member's figures given to another"
        );
        assert!(shown("Europe grew 12.0%; Asia Pacific had 20.4% of revenue.").is_empty());
    }
}
