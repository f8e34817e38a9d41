//! Data → analytics → summary chained by hand over real gRPC (each agent on
//! its own bound loopback listener): metrics, four valid SVG charts, and a
//! summary whose every number passes the faithfulness check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use agentmesh_analytics::AnalyticsAgent;
use agentmesh_data::{DataAgent, DataConfig};
use agentmesh_e2e::{connect, run_skill, spawn_agent, temp_dir};
use agentmesh_summary::SummaryAgent;
use serde_json::{Value, json};

#[tokio::test]
async fn data_analytics_summary_chained_by_hand() {
    let tmp = temp_dir("chain");
    let root = tmp.path().to_path_buf();
    let cfg = DataConfig {
        root: root.clone(),
        ..DataConfig::default()
    };
    let data = tokio::task::spawn_blocking(move || DataAgent::open(&cfg))
        .await
        .unwrap()
        .unwrap();
    let mut data = connect(spawn_agent(data).await).await;
    let mut analytics = connect(spawn_agent(AnalyticsAgent).await).await;
    let mut summary = connect(spawn_agent(SummaryAgent::deterministic()).await).await;

    let dataset = run_skill(
        &mut data,
        "sales.extract",
        json!({"period": "2025-Q2", "compare": ["previous_period", "year_ago"]}),
    )
    .await
    .output
    .expect("dataset");

    let metrics = run_skill(
        &mut analytics,
        "analytics.metrics",
        json!({"dataset": dataset}),
    )
    .await
    .output
    .expect("metrics");
    let revenue = metrics["totals"]["revenue"].as_f64().unwrap();
    assert_eq!(revenue, dataset["totals"]["revenue"].as_f64().unwrap());
    assert!(metrics["growth"]["vs_year_ago"]["revenue_pct"].is_number());
    assert_eq!(metrics["breakdowns"]["region"].as_array().unwrap().len(), 5);
    // The generated history has a weak region and a product launch to find.
    let anomalies = metrics["anomalies"].to_string();
    assert!(anomalies.contains("Latin America"), "{anomalies}");
    assert!(anomalies.contains("Tablets"), "{anomalies}");
    assert!(metrics["definitions"]["gross_margin_pct"]["unit"] == json!("%"));

    let charts = run_skill(
        &mut analytics,
        "analytics.charts",
        json!({"metrics": metrics}),
    )
    .await;
    let listed = charts.output.expect("charts")["charts"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(listed.len(), 4, "{listed:?}");
    assert_eq!(charts.artifacts.len(), 4);
    let out_dir = root.join("charts");
    std::fs::create_dir_all(&out_dir).unwrap();
    for (name, media_type, bytes) in &charts.artifacts {
        assert_eq!(media_type, "image/svg+xml");
        let svg = std::str::from_utf8(bytes).unwrap();
        let doc = roxmltree::Document::parse(svg)
            .unwrap_or_else(|e| panic!("{name} is not valid XML: {e}"));
        let root_el = doc.root_element();
        assert_eq!(root_el.tag_name().name(), "svg");
        let text: String = doc.descendants().filter_map(|n| n.text()).collect();
        assert!(
            text.contains("Q2 2025"),
            "{name} has a title with the period"
        );
        assert!(
            doc.descendants().any(|n| n.has_tag_name("title")),
            "{name} has <title>"
        );
        assert!(
            doc.descendants()
                .filter(|n| n.has_tag_name("rect") || n.has_tag_name("polyline"))
                .count()
                > 3,
            "{name} draws data"
        );
        std::fs::write(out_dir.join(name), bytes).unwrap();
    }
    for c in &listed {
        assert!(!c["alt_text"].as_str().unwrap().is_empty());
        assert!(!c["caption"].as_str().unwrap().is_empty());
    }
    println!("charts written to {}", out_dir.display());

    let written = run_skill(&mut summary, "summary.write", json!({"metrics": metrics})).await;
    let s = written
        .output
        .unwrap_or_else(|| panic!("summary failed: {:?}", written.failure));
    assert_eq!(s["faithfulness"]["passed"], json!(true));
    let findings = s["findings"].as_array().unwrap().len();
    assert!((3..=5).contains(&findings), "{findings} findings");
    assert!(
        s["faithfulness"]["checked"].as_u64().unwrap() >= 5,
        "summary cites numbers"
    );
    let text = s["markdown"].as_str().unwrap();
    assert!(text.contains("Q2 2025"));
    // Independently: every figure in the text is within rounding of a metric.
    let report = agentmesh_summary::faithfulness::check(
        text,
        &Value::Object(metrics.clone()),
        &["Q2 2025".into(), "Q1 2025".into(), "Q2 2024".into()],
    );
    assert!(report.passed(), "{:?}", report.untraceable);
    println!("{text}");
}
