//! The goal parser over many phrasings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use agentmesh_orchestrator::goal::intent::{GoalIntent, parse};
use agentmesh_proto::error::ErrorReason;
use agentmesh_proto::v1::{Deliverable, RunParameters};
use common::catalog;

use Deliverable::{Charts, Dataset, Metrics, Summary};

const ALL: [Deliverable; 4] = [Dataset, Metrics, Charts, Summary];

fn ok(goal: &str) -> GoalIntent {
    parse(goal, None, &catalog()).unwrap_or_else(|e| panic!("{goal:?}: {e:?}"))
}

fn err(goal: &str) -> String {
    let e = parse(goal, None, &catalog()).expect_err(goal);
    assert_eq!(e.reason, ErrorReason::GoalNotUnderstood, "{goal:?}: {e:?}");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message.contains("try e.g."),
        "says what would work: {}",
        e.message
    );
    e.message
}

fn period(i: &GoalIntent) -> (&'static str, &'static str) {
    // Leaked: a test process is short, and tuples of &str compare simply.
    (
        Box::leak(i.period.spec().into_boxed_str()),
        Box::leak(i.period.label().into_boxed_str()),
    )
}

#[test]
fn the_reference_goal() {
    let i =
        ok("Generate a Q2 sales performance report with visualizations and an executive summary");
    assert_eq!(i.deliverables, ALL);
    assert_eq!(period(&i), ("2025-Q2", "Q2 2025"));
    assert!(i.compare_previous && i.compare_year_ago);
    assert!(i.filters.is_empty());
    assert!(
        i.notes
            .iter()
            .any(|n| n.contains("no year given") && n.contains("Q2 2025")),
        "{:?}",
        i.notes
    );
}

#[test]
fn quarters_with_and_without_years() {
    assert_eq!(period(&ok("Q1 2024 sales report")), ("2024-Q1", "Q1 2024"));
    assert_eq!(period(&ok("report for 2024 Q3")), ("2024-Q3", "Q3 2024"));
    assert_eq!(period(&ok("report 2024-q4")), ("2024-Q4", "Q4 2024"));
    assert_eq!(period(&ok("sales report for q3")), ("2024-Q3", "Q3 2024"),);
    assert_eq!(
        period(&ok("report for the first quarter of 2025")),
        ("2025-Q1", "Q1 2025")
    );
    assert_eq!(period(&ok("third quarter report")), ("2024-Q3", "Q3 2024"));
    assert_eq!(period(&ok("Q2 2023 summary")), ("2023-Q2", "Q2 2023"));
}

#[test]
fn relative_periods() {
    assert_eq!(period(&ok("last quarter report")), ("2025-Q2", "Q2 2025"));
    assert_eq!(
        period(&ok("charts for this quarter")),
        ("2025-Q2", "Q2 2025")
    );
    assert_eq!(period(&ok("summary of last year")).0, "2024");
    assert_eq!(period(&ok("this year's metrics")).0, "2025");
    let i = ok("executive summary");
    assert_eq!(period(&i), ("2025-Q2", "Q2 2025"));
    assert!(i.notes.iter().any(|n| n.contains("no period given")));
}

#[test]
fn halves_years_months_and_ranges() {
    assert_eq!(period(&ok("H1 2025 report")), ("2025-H1", "H1 2025"));
    assert_eq!(
        period(&ok("second half 2024 summary")),
        ("2024-H2", "H2 2024")
    );
    assert_eq!(period(&ok("report for h2")), ("2024-H2", "H2 2024"));
    assert_eq!(period(&ok("2024 annual report")), ("2024", "2024"));
    assert_eq!(
        period(&ok("summary for March 2025")),
        ("2025-03", "March 2025")
    );
    assert_eq!(period(&ok("summary for sept 2024")).0, "2024-09");
    assert_eq!(
        period(&ok("charts April to June 2025")),
        ("2025-04..2025-06", "April–June 2025")
    );
    assert_eq!(period(&ok("charts jan-mar 2024")).0, "2024-01..2024-03");
    assert_eq!(period(&ok("report for may")).0, "2025-05");
    let i = ok("data from 2025-04-01 to 2025-05-15");
    assert_eq!(
        period(&i),
        ("2025-04-01..2025-05-15", "2025-04-01 to 2025-05-15")
    );
    assert_eq!(period(&ok("report 2025-02")).0, "2025-02");
}

#[test]
fn deliverables() {
    assert_eq!(
        ok("just a chart of revenue by region for H1").deliverables,
        vec![Charts]
    );
    assert_eq!(
        ok("executive summary for Q1 2025").deliverables,
        vec![Summary]
    );
    assert_eq!(ok("summarize Q1 2025").deliverables, vec![Summary]);
    assert_eq!(ok("export the Q2 data as csv").deliverables, vec![Dataset]);
    assert_eq!(
        ok("key metrics and KPIs for 2024").deliverables,
        vec![Metrics]
    );
    assert_eq!(
        ok("charts and a summary for Q2").deliverables,
        vec![Charts, Summary]
    );
    assert_eq!(ok("quarterly performance overview").deliverables, ALL);
    assert_eq!(ok("graphs for Q4 2024").deliverables, vec![Charts]);
    assert_eq!(
        ok("Plot revenue by region, Q2 2025").deliverables,
        vec![Charts]
    );
    let i = ok("just a chart of revenue by region for H1");
    assert!(i.words.windows(3).any(|w| w == ["revenue", "by", "region"]));
    assert!(
        i.filters.is_empty(),
        "'region' alone is not a filter: {:?}",
        i.filters
    );
}

#[test]
fn filters_and_aliases() {
    let i = ok("Q2 report for Europe");
    assert_eq!(i.filters["region"], vec!["Europe"]);
    let i = ok("EMEA summary for Q2 2025");
    assert_eq!(i.filters["region"], vec!["Europe", "Middle East & Africa"]);
    let i = ok("summary for the middle east & africa region");
    assert_eq!(i.filters["region"], vec!["Middle East & Africa"]);
    let i = ok("APAC laptops report, H1 2025");
    assert_eq!(i.filters["region"], vec!["Asia Pacific"]);
    assert_eq!(i.filters["product_line"], vec!["Laptops"]);
    let i = ok("north america online sales summary");
    assert_eq!(i.filters["region"], vec!["North America"]);
    assert_eq!(i.filters["channel"], vec!["Online"]);
    let i = ok("report on laptop and tablets sold through partners in Germany");
    assert_eq!(i.filters["product_line"], vec!["Laptops", "Tablets"]);
    assert_eq!(i.filters["channel"], vec!["Partner"]);
    assert_eq!(i.filters["country"], vec!["Germany"]);
    let i = ok("LATAM retail chart Q1");
    assert_eq!(i.filters["region"], vec!["Latin America"]);
    assert_eq!(i.filters["channel"], vec!["Retail"]);
    let i = ok("UK summary 2024");
    assert_eq!(i.filters["country"], vec!["United Kingdom"]);
    let i = ok("USA summary 2024");
    assert_eq!(i.filters["country"], vec!["United States"]);
    // "us" is a pronoun, not a country.
    assert!(ok("give us a summary for Q1 2025").filters.is_empty());
}

#[test]
fn comparisons() {
    let i = ok("Q2 2025 summary vs last year");
    assert!(i.compare_year_ago && !i.compare_previous);
    let i = ok("Q2 2025 metrics compared to Q1");
    assert!(i.compare_previous && !i.compare_year_ago);
    let i = ok("Q2 2025 metrics compared to Q2 2024");
    assert!(i.compare_year_ago && !i.compare_previous);
    let i = ok("H1 2025 chart, year over year");
    assert!(i.compare_year_ago);
    let i = ok("metrics for March 2025 versus previous month");
    assert!(i.compare_previous);
    // A plain summary asks for no comparison; a full report gets both.
    let i = ok("summary for Q1 2025");
    assert!(!i.compare_previous && !i.compare_year_ago);
}

#[test]
fn structured_parameters_override_the_text() {
    let params = RunParameters {
        period: "2024-Q4".into(),
        regions: vec!["europe".into()],
        deliverables: vec![Summary as i32],
        compare_year_ago: Some(false),
        ..RunParameters::default()
    };
    let i = parse("Q2 report for Asia Pacific", Some(&params), &catalog()).unwrap();
    assert_eq!(period(&i).0, "2024-Q4");
    assert_eq!(i.filters["region"], vec!["Europe"]);
    assert_eq!(i.deliverables, vec![Summary]);
    assert!(!i.compare_year_ago);
    // Parameters alone are enough.
    let only = RunParameters {
        period: "H1 2025".into(),
        deliverables: vec![Charts as i32],
        ..RunParameters::default()
    };
    assert_eq!(
        period(&parse("", Some(&only), &catalog()).unwrap()).0,
        "2025-H1"
    );
    // Ranges are read whole, not cut to their first part.
    for (given, spec) in [
        ("2025-04..2025-06", "2025-Q2"),
        ("2025-02..2025-03", "2025-02..2025-03"),
        ("2025-04-01..2025-05-15", "2025-04-01..2025-05-15"),
    ] {
        let range = RunParameters {
            period: given.into(),
            deliverables: vec![Metrics as i32],
            ..RunParameters::default()
        };
        let i = parse("", Some(&range), &catalog()).unwrap();
        assert_eq!(period(&i).0, spec, "{given}");
    }
    let nonsense = RunParameters {
        period: "2025-00..2025-255".into(),
        ..RunParameters::default()
    };
    let e = parse("report", Some(&nonsense), &catalog()).unwrap_err();
    assert_eq!(e.reason, ErrorReason::InvalidInput);
    assert!(
        e.message.contains("month 0 does not exist"),
        "{}",
        e.message
    );
    // A named comparison period, checked against the data.
    let vs = RunParameters {
        period: "2025-Q2".into(),
        compare_period: "2024-Q4".into(),
        ..RunParameters::default()
    };
    let i = parse("metrics", Some(&vs), &catalog()).unwrap();
    assert_eq!(
        i.compare_period.map(|p| p.spec()).as_deref(),
        Some("2024-Q4")
    );
    let i = i.to_proto();
    assert_eq!(
        i.compare_period.map(|p| p.label).as_deref(),
        Some("Q4 2024")
    );
    for (given, says) in [("2019-Q1", "no data"), ("2025-13", "month 13")] {
        let vs = RunParameters {
            compare_period: given.into(),
            ..vs.clone()
        };
        let e = parse("metrics", Some(&vs), &catalog()).unwrap_err();
        assert_eq!(e.reason, ErrorReason::InvalidInput, "{given}");
        assert!(e.message.contains(says), "{given}: {}", e.message);
        assert_eq!(
            e.metadata.get("field").map(String::as_str),
            Some("spec.parameters.compare_period")
        );
    }
    let bad = RunParameters {
        regions: vec!["Atlantis".into()],
        ..RunParameters::default()
    };
    let e = parse("report", Some(&bad), &catalog()).unwrap_err();
    assert_eq!(e.reason, ErrorReason::InvalidInput);
    assert!(
        e.message.contains("Atlantis") && e.message.contains("Europe"),
        "{}",
        e.message
    );
}

#[test]
fn nonsense_empty_and_impossible_goals_are_refused_with_guidance() {
    assert!(err("").contains("empty"));
    assert!(err("   \n\t ").contains("empty"));
    assert!(err("Q5 sales report").contains("Q5 is not a quarter"));
    assert!(err("H3 summary").contains("H3"));
    assert!(err("asdf qwerty zxcv").contains("what to deliver"));
    assert!(err("Q2 2025 sales").contains("what to deliver"));
    assert!(err("summary for the Antarctica region").contains("antarctica region"));
    assert!(err("report for Q1 2025 and Q3 2024").contains("two periods"));
    assert!(err("Q2 2025 report vs Q3 2022").contains("Q3 2022 has no data to compare with"));
    assert!(err("summary for 1999").contains("before the data starts"));
    assert!(err("report for june to march").contains("forward"));
}

#[test]
fn other_scripts_and_long_input_never_panic() {
    // Cyrillic, CJK, Arabic, emoji: the parts it knows still count.
    assert!(err("Сгенерировать отчёт о продажах").contains("what to deliver"));
    assert_eq!(ok("Q2 report 売上 レポート").deliverables, ALL);
    assert!(err("تقرير المبيعات للربع الثاني").contains("what to deliver"));
    assert_eq!(ok("📈 charts for Q1 2025 🚀").deliverables, vec![Charts]);
    let long = format!("{} executive summary for Q1 2025", "please ".repeat(900));
    assert_eq!(ok(&long).deliverables, vec![Summary]);
    let noise: String = (0..5000)
        .map(|i| char::from_u32(0x4e00 + (i % 500)).unwrap())
        .collect();
    assert!(err(&noise).contains("what to deliver"));
}

#[test]
fn a_forecast_takes_a_horizon_after_the_data() {
    let i = ok("Forecast next quarter's revenue");
    assert_eq!(i.kinds, ["sales.forecast"]);
    assert!(i.deliverables.is_empty());
    assert_eq!(i.horizon_months, Some(3));
    assert!(
        i.notes.iter().any(|n| n.contains("\"next quarter\"")),
        "{:?}",
        i.notes
    );
    let i = ok("revenue forecast for the next 6 months in Europe");
    assert_eq!(i.horizon_months, Some(6));
    assert_eq!(i.filters["region"], ["Europe"]);
    assert_eq!(
        ok("projection for the coming two quarters").horizon_months,
        Some(6)
    );
    assert_eq!(ok("forecasts for next year").horizon_months, Some(12));
    assert_eq!(ok("forecast revenue").horizon_months, None);
    // A named period after the data is the forecast's horizon; the data
    // read is the whole history.
    let i = ok("Q4 2025 forecast");
    assert_eq!(i.horizon_months, Some(6));
    assert_eq!(i.period.spec(), "2023-01-01..2025-06-30");
    assert_eq!(i.history.spec(), "2023-01-01..2025-06-30");
    // Without a forecast the future is refused, saying what the data covers.
    assert!(
        err("Q3 2025 sales report")
            .contains("has no data yet (the data covers 2023-01-01 to 2025-06-30)")
    );
    assert!(err("metrics for next quarter").contains("\"next quarter\" is after the data"));
    assert!(err("a report and a forecast for Q3 2025").contains("has no data yet"));
    assert!(err("forecast for the next 100 months").contains("1 to 60 months"));
}

#[test]
fn data_quality_is_a_kind_of_its_own_not_the_data() {
    let i = ok("Check the data quality of Q2 2025");
    assert_eq!(i.kinds, ["sales.quality"]);
    assert!(i.deliverables.is_empty());
    assert_eq!(period(&i).0, "2025-Q2");
    let i = ok("Q2 2025 report with a quality check");
    assert_eq!(i.deliverables, ALL);
    assert_eq!(i.kinds, ["sales.quality"]);
    let i = ok("Q2 2025 outliers and forecast");
    assert_eq!(i.kinds, ["sales.quality", "sales.forecast"]);
}
