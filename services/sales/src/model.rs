//! Typed views of what the sales skills return, for the code that reads
//! their outputs (the report's sections). Every field is optional: an
//! output missing a figure renders it as "n/a" instead of failing the
//! report, and fields a reader does not need are not named here.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;

/// A period as outputs carry it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PeriodView {
    /// "Q2 2025".
    pub label: Option<String>,
    /// First day, `YYYY-MM-DD`.
    pub start: Option<String>,
    /// Last day, `YYYY-MM-DD`.
    pub end: Option<String>,
}

/// Totals of a period.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Totals {
    /// Net revenue.
    pub revenue: Option<f64>,
    /// Gross margin in percent.
    pub gross_margin_pct: Option<f64>,
    /// Units sold.
    pub units: Option<f64>,
    /// Distinct orders.
    pub orders: Option<f64>,
    /// Revenue per order.
    pub average_order_value: Option<f64>,
}

/// The current period against one comparison period.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Comparison {
    /// The comparison period's label.
    pub label: Option<String>,
    /// Revenue growth in percent.
    pub revenue_pct: Option<f64>,
    /// Unit growth in percent.
    pub units_pct: Option<f64>,
    /// Order growth in percent.
    pub orders_pct: Option<f64>,
    /// Change in gross margin, percentage points.
    pub gross_margin_pts: Option<f64>,
}

/// Growth against the previous period, a year earlier and a named period.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Growth {
    /// Against the period just before.
    pub vs_previous: Option<Comparison>,
    /// Against the same period a year earlier.
    pub vs_year_ago: Option<Comparison>,
    /// Against another period the goal named.
    pub vs_period: Option<Comparison>,
}

/// One member of a breakdown (a region, a product line, ...).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Member {
    /// Its name.
    pub name: String,
    /// Its revenue.
    pub revenue: Option<f64>,
    /// Its share of total revenue, percent.
    pub share_pct: Option<f64>,
    /// Its gross margin, percent.
    pub gross_margin_pct: Option<f64>,
    /// Growth against the previous period, percent.
    pub growth_vs_previous_pct: Option<f64>,
    /// Growth against a year earlier, percent.
    pub growth_vs_year_ago_pct: Option<f64>,
    /// Growth against the named period, percent.
    pub growth_vs_period_pct: Option<f64>,
}

/// Something unusual the metrics found.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Anomaly {
    /// For people.
    pub message: Option<String>,
}

/// A `sales.metrics` output.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Metrics {
    /// The period measured.
    pub period: PeriodView,
    /// Currency of every money figure.
    pub currency: Option<String>,
    /// Totals.
    pub totals: Totals,
    /// Growth.
    pub growth: Growth,
    /// Dimension (`region`, ...) → members.
    pub breakdowns: BTreeMap<String, Vec<Member>>,
    /// Anomalies.
    pub anomalies: Vec<Anomaly>,
    /// A ranking, when one was asked for.
    pub ranking: Option<Ranking>,
}

/// A ranking of one breakdown's members.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Ranking {
    /// `region`, `product_line` or `channel`.
    pub dimension: String,
    /// `revenue`, `growth` or `margin`.
    pub by: String,
    /// `top` or `bottom`.
    pub order: String,
    /// The member field ranked (`growth_vs_year_ago_pct`, ...).
    pub measure: String,
    /// The members, best first (or worst first for `bottom`).
    pub rows: Vec<RankedMember>,
}

/// One ranked member.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RankedMember {
    /// 1, 2, 3, ...
    pub rank: u32,
    /// The member.
    pub name: String,
    /// Its value of the measure.
    pub value: Option<f64>,
}

/// A `summary` output.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Summary {
    /// One sentence.
    pub headline: String,
    /// Key findings.
    pub findings: Vec<String>,
    /// The whole summary as Markdown.
    pub markdown: Option<String>,
}

/// One chart an output describes.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ChartInfo {
    /// Title.
    pub title: String,
    /// Caption.
    pub caption: String,
}

/// A `chart` output.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Charts {
    /// The charts drawn.
    pub charts: Vec<ChartInfo>,
    /// Charts not drawn, and why.
    pub skipped: Vec<serde_json::Value>,
}

/// Where a dataset came from.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Source {
    /// `sqlite`, `csv`, ...
    pub kind: Option<String>,
    /// The source's name.
    pub name: Option<String>,
    /// Rows of the whole table.
    pub row_count: Option<u64>,
}

/// A `sales.dataset` output (its rows are counted, not read).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Dataset {
    /// The period.
    pub period: PeriodView,
    /// The rows.
    pub rows: Vec<IgnoredAny>,
    /// Grouping dimensions.
    pub group_by: Vec<String>,
    /// Filters applied.
    pub filters: serde_json::Map<String, serde_json::Value>,
    /// Totals.
    pub totals: Totals,
    /// The source.
    pub source: Source,
    /// Whether `rows` holds only the first rows (the CSV artifact has all).
    pub truncated: bool,
}

/// One month (or the horizon's total) of a `sales.forecast` output.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ForecastPoint {
    /// `YYYY-MM`, or `YYYY-MM..YYYY-MM` for the total.
    pub month: String,
    /// Point forecast.
    pub revenue: Option<f64>,
    /// Lower end of the interval.
    pub lower: Option<f64>,
    /// Upper end of the interval.
    pub upper: Option<f64>,
}

/// The history a forecast was fitted on.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ForecastHistory {
    /// First month.
    pub first_month: String,
    /// Last month.
    pub last_month: String,
    /// Months.
    pub months: u32,
}

/// A `sales.forecast` output.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Forecast {
    /// How it was computed.
    pub method: String,
    /// Coverage of the interval, e.g. 0.95.
    pub level: Option<f64>,
    /// The fitted history.
    pub history: ForecastHistory,
    /// Per month.
    pub forecast: Vec<ForecastPoint>,
    /// Over the horizon.
    pub total: Option<ForecastPoint>,
    /// Caveats.
    pub notes: Vec<String>,
}

/// One issue of a `sales.quality` output.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct QualityIssue {
    /// Which check.
    pub check: String,
    /// `error` or `warning`.
    pub severity: String,
    /// What is wrong, for people.
    pub message: String,
}

/// A `sales.quality` output.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Quality {
    /// One line.
    pub summary: String,
    /// No errors.
    pub passed: bool,
    /// The issues listed (errors first).
    pub issues: Vec<QualityIssue>,
    /// Issues beyond those listed.
    pub issues_not_listed: u64,
}
