//! The faithfulness check: every number in a summary must be traceable to
//! the metrics it was written from, at the rounding it is shown with.
//!
//! A number is read with its unit: `$12.35M` is 12,350,000 ± 5,000 (half of
//! the last shown digit), `8.2%` is 8.2 ± 0.05, `1,234` is 1234 ± 0.5. It
//! passes if some number in the metrics (or its absolute value, since
//! "fell 3.1%" shows -3.1 as 3.1) lies within that tolerance. Period labels
//! (`Q2 2025`, `Apr 2025`) are not figures and are skipped.

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
}

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

/// Every numeric leaf of a JSON value.
pub fn numbers(v: &Value, out: &mut Vec<f64>) {
    match v {
        Value::Number(n) => out.extend(n.as_f64()),
        Value::Array(a) => a.iter().for_each(|x| numbers(x, out)),
        Value::Object(o) => o.values().for_each(|x| numbers(x, out)),
        _ => {}
    }
}

/// Reads the figures of `text`, skipping the given labels.
pub fn figures(text: &str, labels: &[String]) -> Vec<Figure> {
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
            out.push(Figure {
                shown: chars[begin..end].iter().collect(),
                value: v * scale,
                tolerance: half_digit * scale + 1e-9,
                direction: direction_before(&before),
            });
        }
        i = j + unit_len.max(1);
    }
    out
}

/// Checks `text` against the numbers of `metrics`. A figure is traced when
/// some metric equals it at its rounding; a figure written as a movement
/// ("rose 3.1%", "fell 3.1%") only by a metric of that sign, since figures
/// are written without their sign.
pub fn check(text: &str, metrics: &Value, labels: &[String]) -> Report {
    let mut pool = Vec::new();
    numbers(metrics, &mut pool);
    let mut checked = Vec::new();
    let mut untraceable = Vec::new();
    for fig in figures(text, labels) {
        let near = |m: f64| (m - fig.value).abs() <= fig.tolerance;
        let ok = pool.iter().any(|&m| match fig.direction {
            Some(Direction::Up) => near(m),
            Some(Direction::Down) => near(-m),
            None => near(m) || near(m.abs()),
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
        let metrics =
            json!({"totals": {"revenue": 12_349_120.55, "orders": 1234}, "growth": {"pct": -3.12}});
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
        let metrics = json!({"growth": {"pct": -3.12, "units_pct": 4.0}, "revenue": 44_180_000.0});
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
}
