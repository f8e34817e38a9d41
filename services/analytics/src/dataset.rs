//! The `sales.dataset` the data agent produces, read defensively.

use std::collections::BTreeMap;

use agentmesh_runtime::{JsonObject, TaskError};
use serde_json::Value;

/// Measures summed over rows.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Agg {
    /// Net revenue.
    pub revenue: f64,
    /// Cost of goods.
    pub cost: f64,
    /// Units.
    pub units: f64,
    /// Orders (exact only for totals; rows may share an order).
    pub orders: f64,
}

impl Agg {
    fn add(&mut self, other: &Agg) {
        self.revenue += other.revenue;
        self.cost += other.cost;
        self.units += other.units;
        self.orders += other.orders;
    }
}

/// One period's rows.
#[derive(Debug, Clone)]
pub struct Slice {
    /// Period label, e.g. "Q2 2025".
    pub label: String,
    /// Period start and end.
    pub start: String,
    /// Period end.
    pub end: String,
    /// Rows: dimension values and measures.
    pub rows: Vec<(BTreeMap<String, String>, Agg)>,
    /// Exact totals.
    pub totals: Agg,
}

impl Slice {
    /// Sums rows by one dimension; `None` if the rows lack it.
    pub fn rollup(&self, dim: &str) -> Option<BTreeMap<String, Agg>> {
        let mut out: BTreeMap<String, Agg> = BTreeMap::new();
        for (keys, agg) in &self.rows {
            out.entry(keys.get(dim)?.clone()).or_default().add(agg);
        }
        Some(out)
    }
}

/// A dataset with its comparison periods.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Group-by dimensions.
    pub group_by: Vec<String>,
    /// The period asked for.
    pub current: Slice,
    /// The period before, if extracted.
    pub previous: Option<Slice>,
    /// The same period a year earlier, if extracted.
    pub year_ago: Option<Slice>,
    /// Another period named for comparison, if extracted.
    pub named: Option<Slice>,
    /// Problems found in the data (negative values and such).
    pub quality: Vec<String>,
}

/// The strings of a JSON array (other items and non-arrays give nothing).
pub fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn invalid(msg: impl Into<String>) -> TaskError {
    TaskError::invalid_input(msg)
}

fn number(
    row: &JsonObject,
    key: &str,
    at: &str,
    quality: &mut Vec<String>,
) -> Result<f64, TaskError> {
    match row.get(key) {
        Some(Value::Number(n)) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if !x.is_finite() {
                return Err(invalid(format!("{at}: {key} is not a finite number")));
            }
            if x < 0.0 {
                quality.push(format!("{at}: negative {key} ({x})"));
            }
            Ok(x)
        }
        Some(Value::Null) | None => Err(invalid(format!(
            "{at}: column {key} is missing (need revenue, cost, units, orders)"
        ))),
        Some(other) => Err(invalid(format!(
            "{at}: {key} must be a number, got {other}"
        ))),
    }
}

fn agg(row: &JsonObject, at: &str, quality: &mut Vec<String>) -> Result<Agg, TaskError> {
    Ok(Agg {
        revenue: number(row, "revenue", at, quality)?,
        cost: number(row, "cost", at, quality)?,
        units: number(row, "units", at, quality)?,
        orders: number(row, "orders", at, quality)?,
    })
}

fn slice(
    obj: &JsonObject,
    what: &str,
    group_by: &[String],
    quality: &mut Vec<String>,
) -> Result<Slice, TaskError> {
    let period = obj.get("period").and_then(Value::as_object);
    let text = |k: &str| {
        period
            .and_then(|p| p.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let rows_json = obj
        .get("rows")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid(format!("{what}.rows is missing")))?;
    let mut rows = Vec::with_capacity(rows_json.len());
    for (i, r) in rows_json.iter().enumerate() {
        let at = format!("{what}.rows[{i}]");
        let r = r
            .as_object()
            .ok_or_else(|| invalid(format!("{at} must be an object")))?;
        let mut keys = BTreeMap::new();
        for dim in group_by {
            let value = r
                .get(dim)
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(format!("{at}: group_by column {dim} is missing")))?;
            keys.insert(dim.clone(), value.to_string());
        }
        rows.push((keys, agg(r, &at, quality)?));
    }
    let totals = match obj.get("totals").and_then(Value::as_object) {
        Some(t) => agg(t, &format!("{what}.totals"), quality)?,
        None => rows.iter().fold(Agg::default(), |mut acc, (_, a)| {
            acc.add(a);
            acc
        }),
    };
    Ok(Slice {
        label: text("label"),
        start: text("start"),
        end: text("end"),
        rows,
        totals,
    })
}

impl Dataset {
    /// Reads the `dataset` input field.
    pub fn from_input(input: &JsonObject) -> Result<Self, TaskError> {
        let d = input
            .get("dataset")
            .and_then(Value::as_object)
            .ok_or_else(|| invalid("input.dataset must be a sales.dataset object"))?;
        if d.get("truncated").and_then(Value::as_bool) == Some(true) {
            return Err(invalid(
                "the dataset's rows are only the first of its table (truncated: true): analytics needs the whole table; extract it grouped by fewer dimensions",
            ));
        }
        let group_by = strings(d.get("group_by"));
        let mut quality = Vec::new();
        let current = slice(d, "dataset", &group_by, &mut quality)?;
        if current.rows.is_empty() {
            return Err(invalid("the dataset is empty: there is nothing to analyse"));
        }
        let comparisons = d.get("comparisons").and_then(Value::as_object);
        let comparison =
            |key: &str, quality: &mut Vec<String>| -> Result<Option<Slice>, TaskError> {
                comparisons
                    .and_then(|c| c.get(key))
                    .map(|v| {
                        let what = format!("comparisons.{key}");
                        let obj = v
                            .as_object()
                            .ok_or_else(|| invalid(format!("{what} must be an object")))?;
                        slice(obj, &what, &group_by, quality)
                    })
                    .transpose()
            };
        let previous = comparison("previous_period", &mut quality)?;
        let year_ago = comparison("year_ago", &mut quality)?;
        let named = comparison("named_period", &mut quality)?;
        Ok(Self {
            group_by,
            current,
            previous,
            year_ago,
            named,
            quality,
        })
    }

    /// Whether rows carry a dimension.
    pub fn has(&self, dim: &str) -> bool {
        self.group_by.iter().any(|g| g == dim)
    }
}
