//! The kinds of thing the sales skills consume and produce, as their cards
//! name them. Planning chains skills through these names; the report picks
//! a section for each.

/// What the data looks like: dimensions, their values, the dates covered.
pub const SCHEMA: &str = "sales.schema";
/// Aggregated sales rows for a period, with its comparison periods.
pub const DATASET: &str = "sales.dataset";
/// Totals, growth, breakdowns, movers and anomalies.
pub const METRICS: &str = "sales.metrics";
/// An SVG chart.
pub const CHART: &str = "chart";
/// An executive summary.
pub const SUMMARY: &str = "summary";
/// A revenue forecast with its prediction interval (the forecast agent).
pub const FORECAST: &str = "sales.forecast";
/// Data-quality issues of a dataset (the quality agent).
pub const QUALITY: &str = "sales.quality";
