//! Sales metrics with their definitions and units.
//!
//! Growth is `(current - prior) / prior` in percent. A prior value of zero
//! makes growth undefined: it is reported as `null` with a note, never as
//! infinity.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::dataset::{Agg, Dataset, Slice};

/// Dimensions broken down when the dataset has them.
pub const BREAKDOWNS: [&str; 3] = ["region", "product_line", "channel"];

/// Growth (in points of percentage) that marks a member as an outlier
/// against the mean of its peers.
const OUTLIER_GAP_PTS: f64 = 15.0;

/// Rounds to `d` decimals.
pub fn round(x: f64, d: i32) -> f64 {
    let f = 10f64.powi(d);
    (x * f).round() / f
}

/// Percentage change, or `None` when the prior value is zero.
pub fn growth_pct(current: f64, prior: f64) -> Option<f64> {
    (prior.abs() > f64::EPSILON).then(|| round((current - prior) / prior * 100.0, 1))
}

fn margin_pct(a: &Agg) -> Option<f64> {
    (a.revenue.abs() > f64::EPSILON).then(|| round((a.revenue - a.cost) / a.revenue * 100.0, 1))
}

fn totals(a: &Agg) -> Value {
    json!({
        "revenue": round(a.revenue, 2),
        "cost": round(a.cost, 2),
        "gross_profit": round(a.revenue - a.cost, 2),
        "gross_margin_pct": margin_pct(a),
        "units": round(a.units, 0),
        "orders": round(a.orders, 0),
        "average_order_value": (a.orders > 0.0).then(|| round(a.revenue / a.orders, 2)),
    })
}

fn comparison(current: &Agg, prior: Option<&Slice>) -> Value {
    let Some(prior) = prior else {
        return Value::Null;
    };
    let p = &prior.totals;
    let margin_pts = match (margin_pct(current), margin_pct(p)) {
        (Some(a), Some(b)) => Some(round(a - b, 1)),
        _ => None,
    };
    json!({
        "label": prior.label,
        "revenue": round(p.revenue, 2),
        "revenue_pct": growth_pct(current.revenue, p.revenue),
        "units_pct": growth_pct(current.units, p.units),
        "orders_pct": growth_pct(current.orders, p.orders),
        "gross_margin_pts": margin_pts,
    })
}

fn breakdown(ds: &Dataset, dim: &str) -> Option<Vec<Value>> {
    let current = ds.current.rollup(dim)?;
    let prev = ds.previous.as_ref().and_then(|s| s.rollup(dim));
    let ya = ds.year_ago.as_ref().and_then(|s| s.rollup(dim));
    let named = ds.named.as_ref().and_then(|s| s.rollup(dim));
    let total = ds.current.totals.revenue;
    let mut members: Vec<(&String, &Agg)> = current.iter().collect();
    members.sort_by(|a, b| b.1.revenue.total_cmp(&a.1.revenue));
    let prior_growth = |m: &BTreeMap<String, Agg>, name: &str, now: f64| {
        m.get(name).and_then(|p| growth_pct(now, p.revenue))
    };
    Some(
        members
            .into_iter()
            .map(|(name, a)| {
                json!({
                    "name": name,
                    "revenue": round(a.revenue, 2),
                    "share_pct": (total > 0.0).then(|| round(a.revenue / total * 100.0, 1)),
                    "gross_margin_pct": margin_pct(a),
                    "growth_vs_previous_pct": prev.as_ref().and_then(|m| prior_growth(m, name, a.revenue)),
                    "growth_vs_year_ago_pct": ya.as_ref().and_then(|m| prior_growth(m, name, a.revenue)),
                    "growth_vs_period_pct": named.as_ref().and_then(|m| prior_growth(m, name, a.revenue)),
                    "new": ya.as_ref().is_some_and(|m| m.get(name).is_none_or(|p| p.revenue <= 0.0)),
                })
            })
            .collect(),
    )
}

fn trend(ds: &Dataset) -> Option<Vec<Value>> {
    let bucket = if ds.has("month") {
        "month"
    } else if ds.has("week") {
        "week"
    } else {
        return None;
    };
    let current = ds.current.rollup(bucket)?;
    let prev: Vec<f64> = ds
        .previous
        .as_ref()
        .and_then(|s| s.rollup(bucket))
        .map(|m| m.values().map(|a| a.revenue).collect())
        .unwrap_or_default();
    Some(
        current
            .iter()
            .enumerate()
            .map(|(i, (k, a))| {
                json!({
                    "bucket": k,
                    "revenue": round(a.revenue, 2),
                    "previous_revenue": prev.get(i).map(|v| round(*v, 2)),
                })
            })
            .collect(),
    )
}

/// Member growth fields, in the order they serve as the basis of movers,
/// anomalies and rankings: year-ago first (it removes seasonality), then a
/// period the goal named, then the previous period.
pub const GROWTH_FIELDS: [(&str, &str); 3] = [
    ("vs_year_ago", "growth_vs_year_ago_pct"),
    ("vs_period", "growth_vs_period_pct"),
    ("vs_previous", "growth_vs_previous_pct"),
];

/// The growth basis of a member: the first of [`GROWTH_FIELDS`] it has.
pub fn basis(b: &Value) -> (&'static str, Option<f64>) {
    GROWTH_FIELDS
        .iter()
        .find_map(|(basis, field)| b[*field].as_f64().map(|g| (*basis, Some(g))))
        .unwrap_or(("vs_previous", None))
}

/// Computes every metric the dataset allows.
pub fn compute(ds: &Dataset) -> Value {
    let cur = &ds.current.totals;
    let mut breakdowns = serde_json::Map::new();
    let mut notes: Vec<String> = ds.quality.clone();
    for dim in BREAKDOWNS {
        match breakdown(ds, dim) {
            Some(b) => {
                breakdowns.insert(dim.into(), Value::Array(b));
            }
            None => notes.push(format!(
                "no {dim} breakdown: the dataset is not grouped by {dim}"
            )),
        }
    }
    if ds.previous.is_none() {
        notes.push("no previous-period comparison in the dataset".into());
    }
    if ds.year_ago.is_none() {
        notes.push("no year-ago comparison in the dataset".into());
    }
    let named_label = ds.named.as_ref().map_or(String::new(), |s| s.label.clone());
    for (label, prior) in [
        ("previous period", &ds.previous),
        ("year ago", &ds.year_ago),
        (named_label.as_str(), &ds.named),
    ] {
        if let Some(p) = prior
            && p.totals.revenue.abs() <= f64::EPSILON
        {
            notes.push(format!(
                "growth vs {label} is undefined: prior revenue is zero"
            ));
        }
    }

    // Movers: members of every breakdown ranked by growth.
    let mut movers: Vec<Value> = Vec::new();
    for (dim, list) in &breakdowns {
        for m in list.as_array().into_iter().flatten() {
            if let (b, Some(g)) = basis(m) {
                movers.push(json!({"dimension": dim, "name": m["name"], "growth_pct": g, "basis": b, "revenue": m["revenue"]}));
            }
        }
    }
    movers.sort_by(|a, b| {
        b["growth_pct"]
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&a["growth_pct"].as_f64().unwrap_or(0.0))
    });
    let top: Vec<Value> = movers.iter().take(3).cloned().collect();
    let bottom: Vec<Value> = movers.iter().rev().take(3).cloned().collect();

    // Anomalies: members whose growth departs from their peers' mean, and
    // members that are new since the comparison period.
    let mut anomalies = Vec::new();
    for (dim, list) in &breakdowns {
        let members: Vec<&Value> = list.as_array().into_iter().flatten().collect();
        for m in &members {
            if m["new"].as_bool() == Some(true) {
                anomalies.push(json!({
                    "kind": "new", "dimension": dim, "name": m["name"], "revenue": m["revenue"],
                    "message": format!("{} had no revenue a year earlier (new)", m["name"].as_str().unwrap_or("")),
                }));
                continue;
            }
            let (b, Some(g)) = basis(m) else { continue };
            let peers: Vec<f64> = members
                .iter()
                .filter(|p| p["name"] != m["name"] && p["new"].as_bool() != Some(true))
                .filter_map(|p| basis(p).1)
                .collect();
            if peers.len() < 2 {
                continue;
            }
            let mean = peers.iter().sum::<f64>() / peers.len() as f64;
            if (g - mean).abs() >= OUTLIER_GAP_PTS {
                anomalies.push(json!({
                    "kind": "growth_outlier", "dimension": dim, "name": m["name"],
                    "growth_pct": g, "peer_mean_pct": round(mean, 1), "basis": b,
                    "message": format!(
                        "{} grew {g:+.1}% {} against a peer average of {:+.1}%",
                        m["name"].as_str().unwrap_or(""),
                        against(b, ds),
                        round(mean, 1)
                    ),
                }));
            }
        }
    }

    json!({
        "period": {"label": ds.current.label, "start": ds.current.start, "end": ds.current.end},
        "currency": "USD",
        "totals": totals(cur),
        "growth": {
            "vs_previous": comparison(cur, ds.previous.as_ref()),
            "vs_year_ago": comparison(cur, ds.year_ago.as_ref()),
            "vs_period": comparison(cur, ds.named.as_ref()),
        },
        "breakdowns": breakdowns,
        "trend": trend(ds),
        "movers": {"top": top, "bottom": bottom},
        "anomalies": anomalies,
        "notes": notes,
        "definitions": definitions(),
    })
}

/// How a growth basis reads in a sentence.
fn against(basis: &str, ds: &Dataset) -> String {
    match (basis, &ds.named) {
        ("vs_year_ago", _) => "year over year".into(),
        ("vs_period", Some(named)) => format!("against {}", named.label),
        _ => "over the previous period".into(),
    }
}

fn definitions() -> Value {
    json!({
        "revenue": {"definition": "net revenue after discounts, summed over order lines", "unit": "USD"},
        "cost": {"definition": "cost of goods sold", "unit": "USD"},
        "gross_profit": {"definition": "revenue minus cost", "unit": "USD"},
        "gross_margin_pct": {"definition": "gross profit as a share of revenue", "unit": "%"},
        "units": {"definition": "units sold", "unit": "units"},
        "orders": {"definition": "distinct orders", "unit": "orders"},
        "average_order_value": {"definition": "revenue divided by orders", "unit": "USD"},
        "revenue_pct": {"definition": "revenue growth: (current - prior) / prior; null when prior is zero", "unit": "%"},
        "gross_margin_pts": {"definition": "change in gross margin", "unit": "percentage points"},
        "share_pct": {"definition": "member revenue as a share of total revenue", "unit": "%"},
        "growth_outlier": {"definition": format!("a member whose growth differs from its peers' mean by {OUTLIER_GAP_PTS} points or more"), "unit": "percentage points"},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_is_undefined_for_zero_prior() {
        assert_eq!(growth_pct(10.0, 0.0), None);
        assert_eq!(growth_pct(110.0, 100.0), Some(10.0));
        assert_eq!(growth_pct(50.0, 100.0), Some(-50.0));
    }

    fn slice(label: &str, europe: f64, asia: f64) -> Value {
        let row = |region: &str, revenue: f64| json!({"region": region, "revenue": revenue, "cost": revenue / 2.0, "units": 10, "orders": 5});
        json!({
            "period": {"label": label, "start": "", "end": ""},
            "rows": [row("Europe", europe), row("Asia Pacific", asia)]
        })
    }

    #[test]
    fn a_named_period_is_compared_with_and_is_the_basis_without_a_year_ago() {
        let mut dataset = slice("Q2 2025", 120.0, 90.0);
        dataset["group_by"] = json!(["region"]);
        dataset["comparisons"] = json!({
            "previous_period": slice("Q1 2025", 100.0, 100.0),
            "named_period": slice("Q4 2024", 100.0, 60.0),
        });
        let Value::Object(input) = json!({ "dataset": dataset }) else {
            panic!("an object")
        };
        let ds = Dataset::from_input(&input).unwrap_or_else(|e| panic!("{e:?}"));
        let m = compute(&ds);
        let vs = &m["growth"]["vs_period"];
        assert_eq!(vs["label"], "Q4 2024");
        assert_eq!(vs["revenue_pct"], json!(31.3));
        assert_eq!(m["growth"]["vs_previous"]["revenue_pct"], json!(5.0));
        assert!(m["growth"]["vs_year_ago"].is_null());
        let asia = &m["breakdowns"]["region"][1];
        assert_eq!(asia["name"], "Asia Pacific");
        assert_eq!(asia["growth_vs_period_pct"], json!(50.0));
        assert_eq!(asia["growth_vs_previous_pct"], json!(-10.0));
        // A table cut to its first rows is refused: its figures would be wrong.
        let mut cut = input.clone();
        cut.insert("dataset".into(), {
            let mut d = cut["dataset"].clone();
            d["truncated"] = json!(true);
            d
        });
        let Err(refused) = Dataset::from_input(&cut) else {
            panic!("a truncated dataset was read")
        };
        assert!(refused.message.contains("truncated"), "{refused:?}");
        // Movers grow against the named period, not the previous one.
        assert_eq!(m["movers"]["top"][0]["basis"], "vs_period");
        assert_eq!(m["movers"]["top"][0]["growth_pct"], json!(50.0));
    }
}
