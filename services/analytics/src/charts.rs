//! SVG charts drawn with plotters from the metrics (so that charts, tables
//! and summary show the same figures). Text is emitted as SVG `<text>`; no
//! system fonts are needed.

use agentmesh_sales::format::money;
use plotters::coord::Shift;
use plotters::prelude::*;
use serde_json::Value;

/// Chart ids this agent can draw.
pub const ALL: [&str; 4] = [
    "revenue_trend",
    "revenue_by_region",
    "product_line_mix",
    "growth_by_region",
];

const W: u32 = 900;
const H: u32 = 480;
const FONT: &str = "sans-serif";
const BLUE: RGBColor = RGBColor(31, 119, 180);
const GREY: RGBColor = RGBColor(150, 150, 150);
const RED: RGBColor = RGBColor(214, 39, 40);

/// One drawn chart.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Id, e.g. "revenue_by_region".
    pub id: String,
    /// Title drawn on the chart.
    pub title: String,
    /// Caption for the report.
    pub caption: String,
    /// Text alternative for screen readers.
    pub alt_text: String,
    /// The SVG document.
    pub svg: String,
}

/// A chart that could not be drawn from these metrics, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    /// The chart id.
    pub id: String,
    /// Why.
    pub reason: String,
}

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("drawing failed: {e:?}")
}

fn month_label(bucket: &str) -> String {
    const NAMES: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    match bucket.split_once('-') {
        Some((y, m)) if m.len() == 2 => m
            .parse::<usize>()
            .ok()
            .and_then(|m| NAMES.get(m.wrapping_sub(1)))
            .map_or_else(|| bucket.to_string(), |n| format!("{n} {y}")),
        _ => bucket.to_string(),
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Adds `<title>` and `<desc>` right after the opening `<svg>` tag.
fn accessible(svg: String, title: &str, alt: &str) -> String {
    match svg.find('>') {
        Some(i) => format!(
            "{}><title>{}</title><desc>{}</desc>{}",
            &svg[..i],
            xml_escape(title),
            xml_escape(alt),
            &svg[i + 1..]
        ),
        None => svg,
    }
}

fn padded(lo: f64, hi: f64) -> (f64, f64) {
    let lo = lo.min(0.0);
    let hi = hi.max(0.0);
    let span = (hi - lo).max(1e-9);
    (
        if lo < 0.0 { lo - span * 0.12 } else { 0.0 },
        hi + span * 0.15,
    )
}

fn bars(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    labels: &[String],
    values: &[f64],
    value_text: &dyn Fn(f64) -> String,
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        draw_bars(&root, title, x_desc, y_desc, labels, values, value_text)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

fn draw_bars(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    labels: &[String],
    values: &[f64],
    value_text: &dyn Fn(f64) -> String,
) -> Result<(), String> {
    let n = i32::try_from(labels.len()).map_err(err)?;
    let (lo, hi) = padded(
        values.iter().copied().fold(f64::INFINITY, f64::min),
        values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 24))
        .margin(18)
        .x_label_area_size(56)
        .y_label_area_size(84)
        .build_cartesian_2d((0..(n - 1).max(0)).into_segmented(), lo..hi)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .bold_line_style(RGBColor(225, 225, 225))
        .light_line_style(WHITE)
        .x_labels(labels.len() + 1)
        .x_label_formatter(&|v: &SegmentValue<i32>| match v {
            SegmentValue::CenterOf(i) => usize::try_from(*i)
                .ok()
                .and_then(|i| labels.get(i))
                .cloned()
                .unwrap_or_default(),
            _ => String::new(),
        })
        .y_label_formatter(&|y: &f64| value_text(*y))
        .x_desc(x_desc)
        .y_desc(y_desc)
        .axis_desc_style((FONT, 16))
        .label_style((FONT, 13))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(
            Histogram::vertical(&chart)
                .style_func(|_, v| {
                    if *v >= 0.0 {
                        BLUE.filled()
                    } else {
                        RED.filled()
                    }
                })
                .margin(14)
                .data(
                    values
                        .iter()
                        .enumerate()
                        .map(|(i, v)| (i32::try_from(i).unwrap_or(0), *v)),
                ),
        )
        .map_err(err)?;
    let offset = (hi - lo) * 0.03;
    chart
        .draw_series(values.iter().enumerate().map(|(i, v)| {
            let y = if *v >= 0.0 {
                *v + offset
            } else {
                *v - offset * 2.0
            };
            Text::new(
                value_text(*v),
                (SegmentValue::CenterOf(i32::try_from(i).unwrap_or(0)), y),
                (FONT, 13)
                    .into_font()
                    .color(&BLACK)
                    .pos(plotters::style::text_anchor::Pos::new(
                        plotters::style::text_anchor::HPos::Center,
                        plotters::style::text_anchor::VPos::Bottom,
                    )),
            )
        }))
        .map_err(err)?;
    Ok(())
}

fn trend_chart(metrics: &Value) -> Result<Chart, String> {
    let points = metrics["trend"]
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or("the dataset has no month or week column")?;
    let period = metrics["period"]["label"].as_str().unwrap_or("the period");
    let prev_label = metrics["growth"]["vs_previous"]["label"]
        .as_str()
        .unwrap_or("previous period");
    let labels: Vec<String> = points
        .iter()
        .map(|p| month_label(p["bucket"].as_str().unwrap_or("")))
        .collect();
    let cur: Vec<f64> = points
        .iter()
        .map(|p| p["revenue"].as_f64().unwrap_or(0.0))
        .collect();
    let prev: Vec<f64> = points
        .iter()
        .filter_map(|p| p["previous_revenue"].as_f64())
        .collect();
    let title = format!("Revenue trend, {period}");
    let n = cur.len();
    let max = cur.iter().chain(&prev).copied().fold(0.0, f64::max);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let x_hi = (n.max(2) - 1) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(&title, (FONT, 24))
            .margin(18)
            .x_label_area_size(56)
            .y_label_area_size(84)
            .build_cartesian_2d(-0.25..x_hi + 0.25, 0.0..max * 1.18 + 1.0)
            .map_err(err)?;
        chart
            .configure_mesh()
            .bold_line_style(RGBColor(225, 225, 225))
            .light_line_style(WHITE)
            .x_labels(n.max(2) * 4)
            .x_label_formatter(&|x: &f64| {
                let r = x.round();
                if (x - r).abs() < 1e-6 && r >= 0.0 {
                    labels.get(r as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|y: &f64| money(*y))
            .x_desc("Month")
            .y_desc("Revenue (USD)")
            .axis_desc_style((FONT, 16))
            .label_style((FONT, 13))
            .draw()
            .map_err(err)?;
        let series = |v: &[f64]| -> Vec<(f64, f64)> {
            v.iter().enumerate().map(|(i, y)| (i as f64, *y)).collect()
        };
        if prev.len() == n {
            chart
                .draw_series(LineSeries::new(series(&prev), GREY.stroke_width(3)))
                .map_err(err)?
                .label(prev_label.to_string())
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], GREY.stroke_width(3)));
        }
        chart
            .draw_series(LineSeries::new(series(&cur), BLUE.stroke_width(3)))
            .map_err(err)?
            .label(period.to_string())
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], BLUE.stroke_width(3)));
        chart
            .draw_series(
                series(&cur)
                    .into_iter()
                    .map(|p| Circle::new(p, 5, BLUE.filled())),
            )
            .map_err(err)?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(GREY)
            .label_font((FONT, 14))
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    let listing: Vec<String> = labels
        .iter()
        .zip(&cur)
        .map(|(l, v)| format!("{l} {}", money(*v)))
        .collect();
    let alt = format!(
        "Line chart of revenue by month in {period}: {}{}.",
        listing.join(", "),
        if prev.len() == n {
            format!(", with {prev_label} shown for comparison")
        } else {
            String::new()
        }
    );
    Ok(Chart {
        id: "revenue_trend".into(),
        caption: format!("Monthly revenue in {period} compared with {prev_label}."),
        svg: accessible(svg, &title, &alt),
        title,
        alt_text: alt,
    })
}

fn breakdown(metrics: &Value, dim: &str) -> Result<Vec<Value>, String> {
    metrics["breakdowns"][dim]
        .as_array()
        .filter(|a| !a.is_empty())
        .cloned()
        .ok_or_else(|| format!("the dataset is not grouped by {dim}"))
}

fn names(list: &[&Value]) -> Vec<String> {
    list.iter()
        .map(|m| m["name"].as_str().unwrap_or("").to_string())
        .collect()
}

/// A bar chart with its words: everything but the drawing is text.
struct BarSpec<'a> {
    id: &'a str,
    title: String,
    x_desc: &'a str,
    y_desc: &'a str,
    labels: Vec<String>,
    values: Vec<f64>,
    value_text: &'a dyn Fn(f64) -> String,
    /// Start of the alt text; the values are listed after it.
    alt_intro: String,
    caption: String,
}

fn bar_chart(spec: BarSpec<'_>) -> Result<Chart, String> {
    let svg = bars(
        &spec.title,
        spec.x_desc,
        spec.y_desc,
        &spec.labels,
        &spec.values,
        spec.value_text,
    )?;
    let listing: Vec<String> = spec
        .labels
        .iter()
        .zip(&spec.values)
        .map(|(l, v)| format!("{l} {}", (spec.value_text)(*v)))
        .collect();
    let alt = format!("{}: {}.", spec.alt_intro, listing.join(", "));
    Ok(Chart {
        id: spec.id.into(),
        caption: spec.caption,
        svg: accessible(svg, &spec.title, &alt),
        title: spec.title,
        alt_text: alt,
    })
}

fn values(list: &[&Value], key: &str) -> Vec<f64> {
    list.iter()
        .map(|m| m[key].as_f64().unwrap_or(0.0))
        .collect()
}

fn region_revenue(metrics: &Value) -> Result<Chart, String> {
    let list = breakdown(metrics, "region")?;
    let list: Vec<&Value> = list.iter().collect();
    let period = metrics["period"]["label"].as_str().unwrap_or("the period");
    bar_chart(BarSpec {
        id: "revenue_by_region",
        title: format!("Revenue by region, {period}"),
        x_desc: "Region",
        y_desc: "Revenue (USD)",
        labels: names(&list),
        values: values(&list, "revenue"),
        value_text: &money,
        alt_intro: format!("Bar chart of revenue by region in {period}"),
        caption: format!("Net revenue by sales region in {period}, largest first."),
    })
}

fn product_mix(metrics: &Value) -> Result<Chart, String> {
    let list = breakdown(metrics, "product_line")?;
    let list: Vec<&Value> = list.iter().collect();
    let period = metrics["period"]["label"].as_str().unwrap_or("the period");
    bar_chart(BarSpec {
        id: "product_line_mix",
        title: format!("Product-line mix, {period}"),
        x_desc: "Product line",
        y_desc: "Share of revenue (%)",
        labels: names(&list),
        values: values(&list, "share_pct"),
        value_text: &|v| format!("{v:.1}%"),
        alt_intro: format!("Bar chart of each product line's share of revenue in {period}"),
        caption: format!("Share of {period} revenue by product line."),
    })
}

fn region_growth(metrics: &Value) -> Result<Chart, String> {
    let list = breakdown(metrics, "region")?;
    let period = metrics["period"]["label"].as_str().unwrap_or("the period");
    let prior = metrics["growth"]["vs_previous"]["label"]
        .as_str()
        .ok_or("the dataset has no previous-period comparison")?;
    let with_growth: Vec<&Value> = list
        .iter()
        .filter(|m| m["growth_vs_previous_pct"].is_number())
        .collect();
    if with_growth.is_empty() {
        return Err("no region has a defined growth vs the previous period".into());
    }
    bar_chart(BarSpec {
        id: "growth_by_region",
        title: format!("Revenue growth by region, {period} vs {prior}"),
        x_desc: "Region",
        y_desc: "Growth vs prior period (%)",
        labels: names(&with_growth),
        values: values(&with_growth, "growth_vs_previous_pct"),
        value_text: &|v| format!("{v:+.1}%"),
        alt_intro: format!("Bar chart of revenue growth by region, {period} against {prior}"),
        caption: format!(
            "Change in revenue by region, {period} against {prior}; red bars are declines."
        ),
    })
}

/// Draws the wanted charts (all when empty). Charts the metrics cannot
/// support are skipped with a reason, never drawn empty.
pub fn render(metrics: &Value, wanted: &[String]) -> (Vec<Chart>, Vec<Skipped>) {
    let mut charts = Vec::new();
    let mut skipped = Vec::new();
    for id in ALL {
        if !wanted.is_empty() && !wanted.iter().any(|w| w == id) {
            continue;
        }
        let drawn = match id {
            "revenue_trend" => trend_chart(metrics),
            "revenue_by_region" => region_revenue(metrics),
            "product_line_mix" => product_mix(metrics),
            _ => region_growth(metrics),
        };
        match drawn {
            Ok(chart) => charts.push(chart),
            Err(reason) => skipped.push(Skipped {
                id: id.to_string(),
                reason,
            }),
        }
    }
    (charts, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_labels() {
        assert_eq!(month_label("2025-04"), "Apr 2025");
    }
}
