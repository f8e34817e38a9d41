//! Rankings asked of the metrics: the top or bottom `n` members of one
//! breakdown (region, product line or channel) by revenue, growth or
//! gross margin, from the breakdowns the metrics already hold.

use agentmesh_runtime::TaskError;
use serde_json::{Value, json};

use crate::metrics::{BREAKDOWNS, GROWTH_FIELDS};

/// The member field a measure reads; growth reads the first growth field
/// (year ago, a named period, the previous period) any member has.
fn field_of(by: &str, members: &[Value]) -> &'static str {
    match by {
        "margin" => "gross_margin_pct",
        "growth" => GROWTH_FIELDS
            .iter()
            .map(|(_, f)| *f)
            .find(|f| members.iter().any(|m| m[*f].is_number()))
            .unwrap_or("growth_vs_year_ago_pct"),
        _ => "revenue",
    }
}

/// The input schema of a ranking.
pub fn schema() -> Value {
    json!({
        "type": "object", "required": ["dimension"], "additionalProperties": false,
        "properties": {
            "dimension": {"enum": BREAKDOWNS},
            "n": {"type": "integer", "minimum": 1, "maximum": 20},
            "order": {"enum": ["top", "bottom"]},
            "by": {"enum": ["revenue", "growth", "margin"]}
        }
    })
}

/// Ranks `metrics`' breakdown as `spec` asks (schema-valid): `{dimension,
/// by, order, n, rows: [{rank, name, value}]}`. Members without the measure
/// (growth over a zero prior) are left out and counted.
pub fn rank(metrics: &Value, spec: &Value) -> Result<Value, TaskError> {
    let dimension = spec["dimension"].as_str().unwrap_or("region");
    let by = spec["by"].as_str().unwrap_or("revenue");
    let order = spec["order"].as_str().unwrap_or("top");
    let n = spec["n"].as_u64().unwrap_or(3);
    let members = metrics["breakdowns"][dimension].as_array().ok_or_else(|| {
        TaskError::invalid_input(format!(
            "ranking by {dimension}: the dataset is not grouped by {dimension}"
        ))
    })?;
    let field = field_of(by, members);
    let mut valued: Vec<(&str, f64)> = members
        .iter()
        .filter_map(|m| Some((m["name"].as_str()?, m[field].as_f64()?)))
        .collect();
    let without = members.len() - valued.len();
    valued.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    if order == "bottom" {
        valued.reverse();
    }
    let rows: Vec<Value> = valued
        .iter()
        .take(usize::try_from(n).unwrap_or(usize::MAX))
        .enumerate()
        .map(|(i, (name, value))| json!({"rank": i + 1, "name": name, "value": value}))
        .collect();
    Ok(json!({
        "dimension": dimension, "by": by, "order": order, "n": n,
        "measure": field, "rows": rows, "members_without_measure": without,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Value {
        json!({"breakdowns": {"region": [
            {"name": "Europe", "revenue": 30.0, "growth_vs_year_ago_pct": 5.0, "gross_margin_pct": 30.0},
            {"name": "Asia Pacific", "revenue": 20.0, "growth_vs_year_ago_pct": 40.0, "gross_margin_pct": 25.0},
            {"name": "Latin America", "revenue": 10.0, "growth_vs_year_ago_pct": -20.0, "gross_margin_pct": 35.0},
            {"name": "New", "revenue": 1.0, "growth_vs_year_ago_pct": null, "gross_margin_pct": 10.0}
        ]}})
    }

    fn names(v: &Value) -> Vec<&str> {
        v["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["name"].as_str())
            .collect()
    }

    #[test]
    fn members_are_ranked_by_the_measure_asked_either_way() {
        let top = rank(&metrics(), &json!({"dimension": "region", "n": 2}))
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(names(&top), ["Europe", "Asia Pacific"]);
        assert_eq!(top["rows"][0]["rank"], 1);
        let growth = rank(
            &metrics(),
            &json!({"dimension": "region", "by": "growth", "order": "bottom", "n": 5}),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(names(&growth), ["Latin America", "Europe", "Asia Pacific"]);
        assert_eq!(growth["members_without_measure"], 1);
        let margin = rank(
            &metrics(),
            &json!({"dimension": "region", "by": "margin", "n": 1}),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(names(&margin), ["Latin America"]);
        assert!(rank(&metrics(), &json!({"dimension": "channel"})).is_err());
    }

    #[test]
    fn growth_without_a_year_ago_ranks_against_the_named_period() {
        let metrics = json!({"breakdowns": {"region": [
            {"name": "Europe", "revenue": 30.0, "growth_vs_period_pct": -5.0, "growth_vs_previous_pct": 9.0},
            {"name": "Asia Pacific", "revenue": 20.0, "growth_vs_period_pct": 12.0, "growth_vs_previous_pct": 1.0}
        ]}});
        let r = rank(&metrics, &json!({"dimension": "region", "by": "growth"}))
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(r["measure"], "growth_vs_period_pct");
        assert_eq!(names(&r), ["Asia Pacific", "Europe"]);
    }
}
