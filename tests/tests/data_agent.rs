//! The data agent served on a bound loopback listener, each skill run over
//! gRPC, results checked against the database itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use agentmesh_data::{DataAgent, DataConfig, SourceKind};
use agentmesh_e2e::{connect, run_skill, spawn_agent};
use agentmesh_proto::json::to_struct;
use agentmesh_proto::v1::ExecuteTaskRequest;
use agentmesh_proto::v1::agent_service_client::AgentServiceClient;
use serde_json::{Value, json};
use tonic::transport::Channel;

/// A fresh data root, removed when the returned value is dropped.
fn temp_root(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = agentmesh_e2e::temp_dir(&format!("data-{name}"));
    let root = dir.path().to_path_buf();
    (dir, root)
}

async fn start(cfg: DataConfig) -> AgentServiceClient<Channel> {
    let agent = tokio::task::spawn_blocking(move || DataAgent::open(&cfg))
        .await
        .unwrap()
        .unwrap();
    connect(spawn_agent(agent).await).await
}

fn sum_revenue(db: &std::path::Path, start: &str, end: &str, region: Option<&str>) -> f64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    let sql = "SELECT sum(revenue) FROM sales WHERE order_date BETWEEN ?1 AND ?2 AND (?3 IS NULL OR region = ?3)";
    conn.query_row(sql, rusqlite::params![start, end, region], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn embedded_source_describe_and_extract() {
    let (_tmp, root) = temp_root("embedded");
    let cfg = DataConfig {
        root: root.clone(),
        ..DataConfig::default()
    };
    let mut client = start(cfg).await;
    let db = root.join("sales.db");

    let d = run_skill(&mut client, "sales.describe", json!({}))
        .await
        .output
        .unwrap();
    assert!(d["row_count"].as_i64().unwrap() >= 200_000);
    assert_eq!(d["first_date"], json!("2023-01-01"));
    assert_eq!(d["complete_through"], json!("2025-06-30"));
    assert!(
        d["regions"]
            .as_array()
            .unwrap()
            .contains(&json!("Latin America"))
    );
    assert!(
        d["product_lines"]
            .as_array()
            .unwrap()
            .contains(&json!("Tablets"))
    );

    // "Q2" means the latest complete Q2: 2025.
    let out = run_skill(
        &mut client,
        "sales.extract",
        json!({"period": "Q2", "compare": ["previous_period", "year_ago"]}),
    )
    .await;
    let x = out.output.unwrap();
    assert_eq!(x["period"]["label"], json!("Q2 2025"));
    let expected = sum_revenue(&db, "2025-04-01", "2025-06-30", None);
    let total = x["totals"]["revenue"].as_f64().unwrap();
    assert!((total - expected).abs() < 0.01, "{total} vs {expected}");
    let rows_sum: f64 = x["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["revenue"].as_f64().unwrap())
        .sum();
    assert!(
        (rows_sum - expected).abs() < 1.0,
        "rows add up to the total"
    );
    assert_eq!(
        x["group_by"],
        json!(["month", "region", "product_line", "channel"])
    );
    assert_eq!(
        x["comparisons"]["previous_period"]["period"]["label"],
        json!("Q1 2025")
    );
    let ya = x["comparisons"]["year_ago"]["totals"]["revenue"]
        .as_f64()
        .unwrap();
    let ya_expected = sum_revenue(&db, "2024-04-01", "2024-06-30", None);
    assert!((ya - ya_expected).abs() < 0.01);
    // The CSV artifact holds the same rows.
    let (name, _, csv) = &out.artifacts[0];
    assert_eq!(name, "dataset.csv");
    let text = String::from_utf8(csv.clone()).unwrap();
    assert!(
        text.starts_with("month,region,product_line,channel,revenue,cost,units,orders,lines\n")
    );
    assert_eq!(
        text.lines().count(),
        x["rows"].as_array().unwrap().len() + 1
    );

    // Filters are matched case-insensitively against the source's values.
    let eu = run_skill(
        &mut client,
        "sales.extract",
        json!({"period": "2025-H1", "filters": {"region": ["europe"]}, "group_by": ["country"]}),
    )
    .await
    .output
    .unwrap();
    let eu_expected = sum_revenue(&db, "2025-01-01", "2025-06-30", Some("Europe"));
    assert!((eu["totals"]["revenue"].as_f64().unwrap() - eu_expected).abs() < 0.01);
    assert_eq!(eu["filters"]["region"], json!(["Europe"]));
    assert!(
        eu["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r.get("country").is_some())
    );

    // A named comparison period comes back beside the others, exact.
    let vs = run_skill(
        &mut client,
        "sales.extract",
        json!({"period": "2025-Q2", "compare": ["year_ago", "2024-Q4"], "group_by": ["region"]}),
    )
    .await
    .output
    .unwrap();
    let named = &vs["comparisons"]["named_period"];
    assert_eq!(named["period"]["label"], json!("Q4 2024"));
    let q4 = sum_revenue(&db, "2024-10-01", "2024-12-31", None);
    assert!((named["totals"]["revenue"].as_f64().unwrap() - q4).abs() < 0.01);
    assert!(vs["comparisons"]["year_ago"].is_object());
    assert!(vs["comparisons"].get("previous_period").is_none());

    // Bad input: a clear failure with a reason, never a panic.
    for (input, needle) in [
        (
            json!({"period": "2025-Q2", "compare": ["2019-Q4"]}),
            "no sales data to compare with in Q4 2019",
        ),
        (
            json!({"period": "2025-Q2", "compare": ["2024-Q4", "2024-Q3"]}),
            "more than one period",
        ),
        (
            json!({"period": "2025-Q2", "compare": ["last tuesday"]}),
            "compare \"last tuesday\"",
        ),
        (json!({"period": "Q5"}), "Q1 to Q4"),
        (json!({"period": "2025-13"}), "month 13"),
        (json!({"period": "2031-Q1"}), "no sales data"),
        (
            json!({"period": "2025-Q2", "filters": {"region": ["Atlantis"]}}),
            "unknown region",
        ),
        (json!({"period": "whenever"}), "not understood"),
    ] {
        let out = run_skill(&mut client, "sales.extract", input.clone()).await;
        let (reason, message) = out.failure.unwrap_or_else(|| panic!("{input} should fail"));
        assert_eq!(reason, "INVALID_INPUT", "{input}");
        assert!(message.contains(needle), "{input}: {message}");
    }
    // Schema violations are refused before the task starts.
    let Value::Object(map) = json!({"period": "2025-Q2", "sql": "DROP TABLE sales"}) else {
        panic!()
    };
    let err = client
        .execute_task(ExecuteTaskRequest {
            task_id: "schema".into(),
            skill_id: "sales.extract".into(),
            input: Some(to_struct(&map)),
            ..ExecuteTaskRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn csv_folder_source() {
    let (_tmp, root) = temp_root("csv");
    let dir = root.join("exports");
    std::fs::create_dir_all(&dir).unwrap();
    let header = "order_id,order_date,region,country,product_line,product,channel,units,unit_price,discount,revenue,cost\n";
    std::fs::write(
        dir.join("a.csv"),
        format!(
            "{header}1,2025-04-02,Europe,Germany,Laptops,AeroBook 13,Online,2,1000,0,2000,1400\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("b.csv"),
        format!("{header}2,2025-05-03,Europe,France,Monitors,ClearView 27,Retail,1,300,0,300,200\n3,2025-01-03,Europe,France,Monitors,ClearView 27,Retail,1,300,0,300,200\n"),
    )
    .unwrap();
    let mut client = start(DataConfig {
        root: root.clone(),
        source: SourceKind::Csv,
        path: "exports".into(),
        ..DataConfig::default()
    })
    .await;
    let x = run_skill(
        &mut client,
        "sales.extract",
        json!({"period": "2025-Q2", "group_by": ["product_line"]}),
    )
    .await
    .output
    .unwrap();
    assert_eq!(x["totals"]["revenue"], json!(2300));
    assert_eq!(x["totals"]["orders"], json!(2));
    assert_eq!(x["rows"].as_array().unwrap().len(), 2);
}

#[test]
fn paths_outside_the_data_root_are_refused() {
    let (_tmp, root) = temp_root("outside");
    let cfg = DataConfig {
        root,
        source: SourceKind::Sqlite,
        path: "../../etc/passwd".into(),
        ..DataConfig::default()
    };
    let err = DataAgent::open(&cfg).err().expect("refused");
    assert!(err.to_string().contains("outside the data root"), "{err}");
}

#[test]
fn a_csv_value_of_the_wrong_type_refuses_the_file_with_its_line() {
    let (_tmp, root) = temp_root("csv-bad");
    let header = "order_id,order_date,region,country,product_line,product,channel,units,unit_price,discount,revenue,cost\n";
    for (row, column, value) in [
        (
            "1,2025-04-02,Europe,Germany,Laptops,A,Online,2,1000,0,n/a,1400",
            "revenue",
            "n/a",
        ),
        (
            "1,2025-04-02,Europe,Germany,Laptops,A,Online,two,1000,0,2000,1400",
            "units",
            "two",
        ),
        (
            "1,02/04/2025,Europe,Germany,Laptops,A,Online,2,1000,0,2000,1400",
            "order_date",
            "02/04/2025",
        ),
    ] {
        let good = "7,2025-04-01,Europe,France,Monitors,B,Retail,1,300,0,300,200";
        std::fs::write(root.join("sales.csv"), format!("{header}{good}\n{row}\n")).unwrap();
        let cfg = DataConfig {
            root: root.clone(),
            source: SourceKind::Csv,
            path: "sales.csv".into(),
            ..DataConfig::default()
        };
        let err = DataAgent::open(&cfg).err().expect("refused").to_string();
        assert!(
            err.contains("line 3") && err.contains(column) && err.contains(value),
            "{err}"
        );
    }
}

#[tokio::test]
async fn a_table_finer_than_one_output_comes_whole_as_csv_and_is_refused_with_comparisons() {
    let (_tmp, root) = temp_root("rows");
    let mut client = start(DataConfig {
        root,
        ..DataConfig::default()
    })
    .await;
    let fine = json!({"period": "2024", "group_by": ["week", "country", "product", "channel"]});
    let out = run_skill(&mut client, "sales.extract", fine.clone()).await;
    let x = out.output.unwrap_or_else(|| panic!("{:?}", out.failure));
    // The output holds the first rows and says so; the CSV has them all.
    assert_eq!(x["truncated"], json!(true));
    assert_eq!(x["rows"].as_array().unwrap().len(), 8_000);
    let all = x["source"]["row_count"].as_u64().unwrap();
    assert!(all > 8_000, "{all}");
    let (name, media, csv) = &out.artifacts[0];
    assert_eq!((name.as_str(), media.as_str()), ("dataset.csv", "text/csv"));
    let text = String::from_utf8(csv.clone()).unwrap();
    assert_eq!(
        text.lines().count() as u64,
        all + 1,
        "a header and every row"
    );
    let revenue: f64 = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(4).unwrap().parse::<f64>().unwrap())
        .sum();
    let total = x["totals"]["revenue"].as_f64().unwrap();
    assert!((revenue - total).abs() < 1.0, "{revenue} vs {total}");
    // A coarse table is whole in the output.
    let coarse = run_skill(&mut client, "sales.extract", json!({"period": "2024"})).await;
    assert_eq!(coarse.output.unwrap()["truncated"], json!(false));

    // With comparisons it cannot be: refused, saying what to change.
    let mut compared = fine;
    compared["compare"] = json!(["year_ago"]);
    let out = run_skill(&mut client, "sales.extract", compared).await;
    let (reason, message) = out.failure.expect("refused");
    assert_eq!(reason, "INVALID_INPUT");
    assert!(
        message.contains("more than 8000 rows")
            && message.contains("fewer dimensions")
            && message.contains("without comparisons"),
        "{message}"
    );
}
