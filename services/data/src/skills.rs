//! The data agent's skills: schemas, request parsing, output.

use agentmesh_proto::v1::Skill;
use agentmesh_runtime::{JsonObject, OutArtifact, SkillSpec, TaskError, TaskOutput};
use agentmesh_sales::kinds;
use serde_json::{Value, json};
use time::Date;

use crate::grouping::Grouped;
use crate::period::{self, Period};
use crate::source::{Description, Dimension, Measures, Query, Row, SalesSource, SourceError};

/// Skill id: describe the source.
pub const DESCRIBE: &str = "sales.describe";
/// Skill id: extract a dataset.
pub const EXTRACT: &str = "sales.extract";
/// Most grouped rows one `sales.extract` output holds, the period's and its
/// comparison periods' together. At about 250 bytes a row, the output stays
/// well inside a gRPC message (4 MiB by default) here and again when it is
/// passed on as the next step's input. A finer table without comparisons
/// comes whole as the `dataset.csv` artifact (streamed in chunks) with its
/// first `MAX_ROWS` rows in the output and `truncated: true`; with
/// comparisons it is refused with what to change.
pub const MAX_ROWS: usize = 8_000;

/// Most rows of the CSV artifact (about 80 bytes a row: some 16 MB, inside
/// the orchestrator's 64 MiB `execution.max_artifact_bytes`). A finer
/// grouping is refused with what to change.
pub const MAX_TABLE_ROWS: usize = 200_000;

/// Group-by used when a request names none.
const DEFAULT_GROUP_BY: [Dimension; 4] = [
    Dimension::Month,
    Dimension::Region,
    Dimension::ProductLine,
    Dimension::Channel,
];

fn measures_schema() -> Value {
    json!({
        "type": "object",
        "required": ["revenue", "cost", "units", "orders", "lines"],
        "properties": {
            "revenue": {"type": "number", "description": "net revenue after discounts, USD"},
            "cost": {"type": "number", "description": "cost of goods, USD"},
            "units": {"type": "integer"},
            "orders": {"type": "integer", "description": "distinct orders"},
            "lines": {"type": "integer", "description": "order lines"}
        }
    })
}

fn slice_schema() -> Value {
    json!({
        "type": "object",
        "required": ["period", "rows", "totals"],
        "properties": {
            "period": {"$ref": "#/$defs/period"},
            "rows": {"type": "array", "items": {"type": "object"}},
            "totals": {"$ref": "#/$defs/measures"}
        }
    })
}

/// The skills on the card.
pub fn card_skills() -> Vec<Skill> {
    let dims: Vec<&str> = Dimension::ALL.iter().map(|d| d.name()).collect();
    let filter_values =
        json!({"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 50});
    vec![
        SkillSpec::new(
            DESCRIBE,
            "Describes the sales source: columns, date range, complete periods, and the \
             regions, countries, product lines, products and channels it holds.",
        )
        .tags(&["sales", "schema"])
        .input_schema(&json!({"type": "object", "additionalProperties": false, "properties": {}}))
        .output_schema(&json!({
            "type": "object",
            "required": ["tables", "first_date", "last_date", "complete_through", "row_count",
                         "regions", "countries", "product_lines", "products", "channels"],
            "properties": {
                "tables": {"type": "array"},
                "first_date": {"type": "string", "format": "date"},
                "last_date": {"type": "string", "format": "date"},
                "complete_through": {"type": "string", "format": "date"},
                "row_count": {"type": "integer", "minimum": 1},
                "regions": {"type": "array", "items": {"type": "string"}},
                "countries": {"type": "array", "items": {"type": "string"}},
                "product_lines": {"type": "array", "items": {"type": "string"}},
                "products": {"type": "array", "items": {"type": "string"}},
                "channels": {"type": "array", "items": {"type": "string"}}
            }
        }))
        .produces(&[kinds::SCHEMA])
        .build(),
        SkillSpec::new(
            EXTRACT,
            "Extracts sales for a period as an aggregated table (revenue, cost, units, orders, \
             lines) grouped by the given dimensions, with optional filters and comparison \
             periods (previous period, same period a year earlier, or one named period). Also \
             returns the table as a CSV artifact.",
        )
        .tags(&["sales", "sql", "dataset"])
        .examples(&[
            r#"{"period": "2025-Q2", "compare": ["previous_period", "year_ago"]}"#,
            r#"{"period": "2025-H1", "filters": {"region": ["Europe"]}, "group_by": ["month", "country"]}"#,
            r#"{"period": "2025-Q2", "compare": ["2024-Q4"]}"#,
        ])
        .input_schema(&json!({
            "type": "object",
            "required": ["period"],
            "additionalProperties": false,
            "properties": {
                "period": {
                    "type": "string", "minLength": 1, "maxLength": 64,
                    "description": "2025-Q2, Q2 (latest complete), 2025-H1, 2025, 2025-04, 2025-04..2025-06, 2025-04-01..2025-06-30"
                },
                "filters": {
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {
                        "region": filter_values, "country": filter_values,
                        "product_line": filter_values, "product": filter_values,
                        "channel": filter_values
                    }
                },
                "group_by": {
                    "type": "array", "maxItems": 4, "uniqueItems": true,
                    "items": {"enum": dims}
                },
                "compare": {
                    "type": "array", "uniqueItems": true, "maxItems": 3,
                    "description": "previous_period, year_ago, and at most one other period in the forms `period` takes (2024-Q4)",
                    "items": {"type": "string", "minLength": 1, "maxLength": 64}
                }
            }
        }))
        .output_schema(&json!({
            "type": "object",
            "required": ["period", "group_by", "measures", "rows", "totals", "filters", "comparisons", "source"],
            "$defs": {
                "period": {
                    "type": "object",
                    "required": ["start", "end", "label"],
                    "properties": {
                        "start": {"type": "string"}, "end": {"type": "string"}, "label": {"type": "string"}
                    }
                },
                "measures": measures_schema()
            },
            "properties": {
                "period": {"$ref": "#/$defs/period"},
                "group_by": {"type": "array", "items": {"enum": dims}},
                "measures": {"type": "array", "items": {"type": "string"}},
                "rows": {"type": "array", "items": {"type": "object"}},
                "totals": {"$ref": "#/$defs/measures"},
                "filters": {"type": "object"},
                "truncated": {
                    "type": "boolean",
                    "description": "true when rows holds only the first rows of the table; dataset.csv holds it whole (source.row_count rows)"
                },
                "comparisons": {
                    "type": "object",
                    "properties": {
                        "previous_period": slice_schema(),
                        "year_ago": slice_schema(),
                        "named_period": slice_schema()
                    }
                },
                "source": {"type": "object"}
            }
        }))
        .consumes(&[])
        .produces(&[kinds::DATASET])
        .build(),
    ]
}

/// `sales.describe`.
pub fn describe(d: &Description, complete_through: Date) -> TaskOutput {
    let columns = [
        ("order_id", "integer"),
        ("order_date", "date"),
        ("region", "text"),
        ("country", "text"),
        ("product_line", "text"),
        ("product", "text"),
        ("channel", "text"),
        ("units", "integer"),
        ("unit_price", "real"),
        ("discount", "real"),
        ("revenue", "real"),
        ("cost", "real"),
    ];
    let out = json!({
        "tables": [{
            "name": "sales",
            "columns": columns.iter().map(|(n, t)| json!({"name": n, "type": t})).collect::<Vec<_>>()
        }],
        "first_date": d.first_date,
        "last_date": d.last_date,
        "complete_through": complete_through.to_string(),
        "row_count": d.row_count,
        "regions": d.regions,
        "countries": d.countries,
        "product_lines": d.product_lines,
        "products": d.products,
        "channels": d.channels,
    });
    TaskOutput::new(as_object(out))
}

fn as_object(v: Value) -> JsonObject {
    match v {
        Value::Object(m) => m,
        _ => JsonObject::new(),
    }
}

/// A validated `sales.extract` request.
#[derive(Debug, Clone)]
pub struct ExtractRequest {
    /// The period.
    pub period: Period,
    /// Filters, with values as the source spells them.
    pub filters: Vec<(Dimension, Vec<String>)>,
    /// Group-by dimensions.
    pub group_by: Vec<Dimension>,
    /// Include the previous period.
    pub previous: bool,
    /// Include the same period a year earlier.
    pub year_ago: bool,
    /// Include this period too.
    pub named: Option<Period>,
}

fn invalid(msg: impl Into<String>) -> TaskError {
    TaskError::invalid_input(msg)
}

impl ExtractRequest {
    /// Validates input (already schema-checked) against what the source holds.
    pub fn parse(
        input: &JsonObject,
        described: &Description,
        complete_through: Date,
    ) -> Result<Self, TaskError> {
        let text = input.get("period").and_then(Value::as_str).unwrap_or("");
        let period = period::parse(text, complete_through).map_err(|e| invalid(e.0))?;
        let (first, last) = (described.first_date.as_str(), described.last_date.as_str());
        if period.end.to_string().as_str() < first || period.start.to_string().as_str() > last {
            return Err(invalid(format!(
                "no sales data for {}; the source covers {first} to {last}",
                period.label()
            )));
        }

        let mut filters = Vec::new();
        if let Some(Value::Object(map)) = input.get("filters") {
            for (name, values) in map {
                let dim = Dimension::from_name(name)
                    .filter(|d| d.filterable())
                    .ok_or_else(|| invalid(format!("cannot filter on {name:?}")))?;
                let known = described.values(dim);
                let mut accepted = Vec::new();
                for v in values.as_array().into_iter().flatten() {
                    let v = v.as_str().unwrap_or_default();
                    let hit = known.iter().find(|k| k.eq_ignore_ascii_case(v.trim()));
                    match hit {
                        Some(k) => accepted.push(k.clone()),
                        None => {
                            return Err(invalid(format!(
                                "unknown {name} {v:?}; the source has: {}",
                                known.join(", ")
                            )));
                        }
                    }
                }
                if !accepted.is_empty() {
                    filters.push((dim, accepted));
                }
            }
        }

        let group_by = match input.get("group_by").and_then(Value::as_array) {
            Some(items) => items
                .iter()
                .map(|v| {
                    let name = v.as_str().unwrap_or_default();
                    Dimension::from_name(name)
                        .ok_or_else(|| invalid(format!("unknown group_by column {name:?}")))
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => DEFAULT_GROUP_BY.to_vec(),
        };
        let compare: Vec<&str> = input
            .get("compare")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut named = None;
        for text in compare
            .iter()
            .filter(|c| !matches!(**c, "previous_period" | "year_ago"))
        {
            let other = period::parse(text, complete_through)
                .map_err(|e| invalid(format!("compare {text:?}: {}", e.0)))?;
            if named.is_some_and(|n| n != other) {
                return Err(invalid(
                    "compare names more than one period: name at most one besides previous_period and year_ago",
                ));
            }
            if other.end.to_string().as_str() < first || other.start.to_string().as_str() > last {
                return Err(invalid(format!(
                    "no sales data to compare with in {}; the source covers {first} to {last}",
                    other.label()
                )));
            }
            named = Some(other);
        }
        Ok(Self {
            period,
            filters,
            group_by,
            previous: compare.contains(&"previous_period"),
            year_ago: compare.contains(&"year_ago"),
            named,
        })
    }

    fn slice(&self, source: &dyn SalesSource, period: Period) -> Result<Slice, SourceError> {
        let grouped = Query {
            start: period.start,
            end: period.end,
            filters: self.filters.clone(),
            group_by: self.group_by.clone(),
        };
        let Grouped { rows, totals } = source.aggregate(&grouped)?;
        Ok(Slice {
            period,
            rows,
            totals,
        })
    }

    /// Refuses an output of more than [`MAX_ROWS`] rows with comparisons.
    fn within_cap(&self, rows: usize) -> Result<(), TaskError> {
        if rows <= MAX_ROWS {
            return Ok(());
        }
        let dims: Vec<&str> = self.group_by.iter().map(|d| d.name()).collect();
        Err(invalid(format!(
            "grouping {} by {} gives more than {MAX_ROWS} rows with its comparison periods (the most one output holds): group by fewer dimensions, add filters, take a shorter period, or ask without comparisons (the whole table then comes as dataset.csv)",
            self.period.label(),
            dims.join(", ")
        )))
    }

    /// Refuses a table of more than [`MAX_TABLE_ROWS`] rows.
    fn within_table_cap(&self, rows: usize) -> Result<(), TaskError> {
        if rows <= MAX_TABLE_ROWS {
            return Ok(());
        }
        let dims: Vec<&str> = self.group_by.iter().map(|d| d.name()).collect();
        Err(invalid(format!(
            "grouping {} by {} gives {rows} rows, more than the {MAX_TABLE_ROWS} one extract returns: group by fewer dimensions, add filters, or take a shorter period",
            self.period.label(),
            dims.join(", ")
        )))
    }

    /// Runs the queries (blocking: call from a blocking thread).
    pub fn run(&self, source: &dyn SalesSource) -> Result<Extracted, TaskError> {
        let db_err = |e: SourceError| {
            tracing::error!(error = %e, "query failed");
            TaskError::failed("the sales source could not be queried").retryable(None)
        };
        let main = self.slice(source, self.period).map_err(db_err)?;
        if main.rows.is_empty() {
            return Err(invalid(format!(
                "no sales match {} with the given filters",
                self.period.label()
            )));
        }
        let mut rows = main.rows.len();
        self.within_table_cap(rows)?;
        let comparing = self.previous || self.year_ago || self.named.is_some();
        if comparing {
            self.within_cap(rows)?;
        }
        let truncated = rows > MAX_ROWS;
        let mut comparisons = JsonObject::new();
        if self.previous {
            let p = self.period.previous().map_err(|e| invalid(e.0))?;
            let s = self.slice(source, p).map_err(db_err)?;
            rows += s.rows.len();
            self.within_cap(rows)?;
            comparisons.insert(
                "previous_period".into(),
                s.to_json(&self.group_by, MAX_ROWS),
            );
        }
        if self.year_ago {
            let p = self.period.year_ago().map_err(|e| invalid(e.0))?;
            let s = self.slice(source, p).map_err(db_err)?;
            rows += s.rows.len();
            self.within_cap(rows)?;
            comparisons.insert("year_ago".into(), s.to_json(&self.group_by, MAX_ROWS));
        }
        if let Some(p) = self.named {
            let s = self.slice(source, p).map_err(db_err)?;
            rows += s.rows.len();
            self.within_cap(rows)?;
            comparisons.insert("named_period".into(), s.to_json(&self.group_by, MAX_ROWS));
        }
        let filters: JsonObject = self
            .filters
            .iter()
            .map(|(d, v)| (d.name().to_string(), json!(v)))
            .collect();
        let Value::Object(mut output) = main.to_json(&self.group_by, MAX_ROWS) else {
            return Err(TaskError::failed("internal output error"));
        };
        output.insert(
            "group_by".into(),
            json!(self.group_by.iter().map(|d| d.name()).collect::<Vec<_>>()),
        );
        output.insert(
            "measures".into(),
            json!(["revenue", "cost", "units", "orders", "lines"]),
        );
        output.insert("filters".into(), Value::Object(filters));
        output.insert("comparisons".into(), Value::Object(comparisons));
        output.insert("truncated".into(), json!(truncated));
        output.insert(
            "source".into(),
            json!({"table": "sales", "row_count": main.rows.len()}),
        );
        let csv = to_csv(&self.group_by, &main.rows);
        Ok(Extracted { output, csv })
    }
}

struct Slice {
    period: Period,
    rows: Vec<Row>,
    totals: Measures,
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn measures_json(m: &Measures) -> Value {
    json!({
        "revenue": round2(m.revenue),
        "cost": round2(m.cost),
        "units": m.units,
        "orders": m.orders,
        "lines": m.lines,
    })
}

impl Slice {
    /// The slice with its first `limit` rows.
    fn to_json(&self, group_by: &[Dimension], limit: usize) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .take(limit)
            .map(|r| {
                let mut obj = JsonObject::new();
                for (dim, key) in group_by.iter().zip(&r.keys) {
                    obj.insert(dim.name().into(), json!(key));
                }
                if let Value::Object(m) = measures_json(&r.measures) {
                    obj.extend(m);
                }
                Value::Object(obj)
            })
            .collect();
        json!({
            "period": {
                "start": self.period.start.to_string(),
                "end": self.period.end.to_string(),
                "label": self.period.label(),
            },
            "rows": rows,
            "totals": measures_json(&self.totals),
        })
    }
}

fn to_csv(group_by: &[Dimension], rows: &[Row]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<&str> = group_by.iter().map(|d| d.name()).collect();
    header.extend(["revenue", "cost", "units", "orders", "lines"]);
    let _ = w.write_record(&header);
    for r in rows {
        let mut rec = r.keys.clone();
        let m = &r.measures;
        rec.push(format!("{:.2}", m.revenue));
        rec.push(format!("{:.2}", m.cost));
        rec.push(m.units.to_string());
        rec.push(m.orders.to_string());
        rec.push(m.lines.to_string());
        let _ = w.write_record(&rec);
    }
    w.into_inner().unwrap_or_default()
}

/// The result of an extraction.
#[derive(Debug, Clone)]
pub struct Extracted {
    /// Output JSON.
    pub output: JsonObject,
    /// The main table as CSV.
    pub csv: Vec<u8>,
}

impl Extracted {
    /// The CSV artifact.
    pub fn csv_artifact(&self) -> OutArtifact {
        let label = self
            .output
            .get("period")
            .and_then(|p| p.get("label"))
            .and_then(Value::as_str)
            .unwrap_or("");
        OutArtifact {
            artifact_id: "dataset.csv".into(),
            name: "dataset.csv".into(),
            description: format!("Aggregated sales for {label}"),
            media_type: "text/csv".into(),
            metadata: JsonObject::new(),
            data: self.csv.clone(),
        }
    }
}
