//! Data agent benchmark: the Q2 extraction with three group-bys on a
//! 1,000,000-row source, the real path (`sales.extract`: the period's lines
//! by the date index, grouped in one pass) side by side with a baseline
//! that fetches the period's order lines and aggregates them in a plain
//! Rust `HashMap`, and with SQLite's own `GROUP BY` (the agent's path
//! before 2026-12-01: one grouped query and one totals query per period).
//!
//! Run: `cargo bench -p agentmesh-data --bench extract`
//! (`AGENTMESH_BENCH_ROWS` and `AGENTMESH_BENCH_ITERS` change the size.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use agentmesh_data::generator;
use agentmesh_data::skills::ExtractRequest;
use agentmesh_data::source::{SalesSource, SqliteSource};
use serde_json::json;

/// Order lines at scale 1.0.
const ROWS_AT_SCALE_1: f64 = 231_567.0;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let idx = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[idx]
}

fn report(name: &str, samples: &mut [Duration]) -> Duration {
    let p50 = percentile(samples, 0.5);
    let p99 = percentile(samples, 0.99);
    println!(
        "{name:<44} p50 {:>9.2} ms   p99 {:>9.2} ms   ({} runs)",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        samples.len()
    );
    p50
}

fn main() {
    let rows: f64 = std::env::var("AGENTMESH_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000.0);
    let iters: usize = std::env::var("AGENTMESH_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = std::env::temp_dir().join("agentmesh-bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    let scale = rows / ROWS_AT_SCALE_1;
    let db = dir.join(format!("sales-{}.db", rows as u64));
    if !db.exists() {
        let t = Instant::now();
        let n = generator::generate(&db, scale, 42).unwrap();
        println!(
            "generated {n} order lines in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    let source = SqliteSource::open(&db).unwrap();
    let described = source.describe().unwrap();
    println!(
        "source: {} order lines, {} to {}",
        described.row_count, described.first_date, described.last_date
    );

    // The real path: sales.extract for Q2 2025 grouped by month, region and
    // product line (main period only, and with both comparison periods).
    let input = json!({"period": "2025-Q2", "group_by": ["month", "region", "product_line"]});
    let complete = time::macros::date!(2025 - 06 - 30);
    let req = ExtractRequest::parse(input.as_object().unwrap(), &described, complete).unwrap();
    let mut with_cmp_input = input.clone();
    with_cmp_input["compare"] = json!(["previous_period", "year_ago"]);
    let req_cmp =
        ExtractRequest::parse(with_cmp_input.as_object().unwrap(), &described, complete).unwrap();

    const MAIN: (&str, &str) = ("2025-04-01", "2025-06-30");
    const THREE: [(&str, &str); 3] = [
        MAIN,
        ("2025-01-01", "2025-03-31"),
        ("2024-04-01", "2024-06-30"),
    ];
    let mut extract = Vec::new();
    let mut extract_cmp = Vec::new();
    let mut baseline = Vec::new();
    let mut baseline_cmp = Vec::new();
    let mut sql = Vec::new();
    let mut sql_cmp = Vec::new();
    let mut groups = 0;
    for _ in 0..iters {
        let t = Instant::now();
        let out = req.run(&source).unwrap();
        extract.push(t.elapsed());
        groups = out.output["rows"].as_array().map_or(0, Vec::len);

        let t = Instant::now();
        req_cmp.run(&source).unwrap();
        extract_cmp.push(t.elapsed());

        let t = Instant::now();
        let n = naive(&db, MAIN);
        baseline.push(t.elapsed());
        assert_eq!(n, groups, "baseline and sales.extract agree on the groups");

        let t = Instant::now();
        for period in THREE {
            naive(&db, period);
        }
        baseline_cmp.push(t.elapsed());

        let t = Instant::now();
        assert_eq!(sql_group_by(&db, MAIN), groups);
        sql.push(t.elapsed());

        let t = Instant::now();
        for period in THREE {
            sql_group_by(&db, period);
        }
        sql_cmp.push(t.elapsed());
    }
    println!("Q2 2025, group by month, region, product line: {groups} groups");
    let a = report("sales.extract, main period", &mut extract);
    let a3 = report(
        "sales.extract + previous period + year ago",
        &mut extract_cmp,
    );
    let b = report("baseline: Rust HashMap, main period", &mut baseline);
    let b3 = report("baseline: Rust HashMap, three periods", &mut baseline_cmp);
    report("before: SQLite GROUP BY, main period", &mut sql);
    report("before: SQLite GROUP BY, three periods", &mut sql_cmp);
    println!(
        "sales.extract against the baseline: {:.2}x as fast (main), {:.2}x (three periods)",
        b.as_secs_f64() / a.as_secs_f64(),
        b3.as_secs_f64() / a3.as_secs_f64()
    );
}

/// SQLite's own grouping, as the agent did before: per period one grouped
/// query (sorting the lines into a temporary B-tree, counting distinct
/// orders per group) and one query for the exact totals.
fn sql_group_by(db: &std::path::Path, (start, end): (&str, &str)) -> usize {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    conn.pragma_update(None, "temp_store", "FILE").unwrap();
    let mut grouped = conn
        .prepare(
            "SELECT substr(order_date, 1, 7), region, product_line, sum(revenue), sum(cost), \
             sum(units), count(DISTINCT order_id), count(*) FROM sales \
             WHERE order_date BETWEEN ?1 AND ?2 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        )
        .unwrap();
    let n = grouped
        .query_map([start, end], |r| r.get::<_, f64>(3))
        .unwrap()
        .count();
    conn.query_row(
        "SELECT sum(revenue), sum(cost), sum(units), count(DISTINCT order_id), count(*) \
         FROM sales WHERE order_date BETWEEN ?1 AND ?2",
        [start, end],
        |r| r.get::<_, Option<f64>>(0),
    )
    .unwrap();
    n
}

/// Baseline: read every order line of the period and group in Rust.
fn naive(db: &std::path::Path, (start, end): (&str, &str)) -> usize {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn
        .prepare("SELECT order_date, region, product_line, revenue, cost, units, order_id FROM sales WHERE order_date BETWEEN ?1 AND ?2")
        .unwrap();
    // (month, region, product line) -> (revenue, cost, units, order ids)
    type Group = (f64, f64, i64, Vec<i64>);
    let mut groups: HashMap<(String, String, String), Group> = HashMap::new();
    let mut rows = stmt.query([start, end]).unwrap();
    while let Some(r) = rows.next().unwrap() {
        let date: String = r.get(0).unwrap();
        let key = (date[..7].to_string(), r.get(1).unwrap(), r.get(2).unwrap());
        let g = groups.entry(key).or_default();
        g.0 += r.get::<_, f64>(3).unwrap();
        g.1 += r.get::<_, f64>(4).unwrap();
        g.2 += r.get::<_, i64>(5).unwrap();
        g.3.push(r.get(6).unwrap());
    }
    for g in groups.values_mut() {
        g.3.sort_unstable();
        g.3.dedup();
    }
    groups.len()
}
