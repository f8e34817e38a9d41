//! Prometheus metrics from the real binaries: the orchestrator and the
//! three agents run as separate processes, each with its metrics listener;
//! the test scrapes `/metrics` before and after runs of the Q2 goal,
//! parses the exposition text with a Prometheus text-format parser, and
//! checks that counters and histograms moved by exactly what the runs did.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;

use agentmesh_e2e::mesh::{goal, run_all};
use agentmesh_e2e::{free_port, start_process_env, temp_dir};
use agentmesh_proto::v1::orchestrator_service_client::OrchestratorServiceClient;
use agentmesh_proto::v1::{AGENT_SERVICE_NAME, ORCHESTRATOR_SERVICE_NAME, RunState, run_event};
use prometheus_parse::{Scrape, Value};
use tonic::transport::Channel;

const Q2: &str =
    "Generate a Q2 sales performance report with visualizations and an executive summary";

/// The scraped samples: (name, sorted labels) → value (a histogram's
/// count for `_count` lines).
type Samples = BTreeMap<(String, Vec<(String, String)>), f64>;

/// An HTTP client (reqwest needs a process-wide rustls provider, even for
/// plain HTTP).
fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn scrape(addr: SocketAddr) -> (Scrape, Samples) {
    let resp = http()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{resp:?}");
    let kind = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    let text = resp.text().await.unwrap();
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let mut samples = Samples::new();
    for s in &scrape.samples {
        let mut labels: Vec<(String, String)> = s
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.sort();
        let value = match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => {
                // The +Inf bucket holds every observation.
                buckets.iter().map(|b| b.count).fold(0.0, f64::max)
            }
            Value::Summary(_) => continue,
        };
        samples.insert((s.metric.clone(), labels), value);
    }
    // Every family has its help and a known type.
    for name in [
        "agentmesh_runs_started_total",
        "agentmesh_run_duration_seconds",
    ] {
        if samples.keys().any(|(n, _)| n == name) {
            assert!(scrape.docs.contains_key(name), "no HELP for {name}");
        }
    }
    (scrape, samples)
}

/// The sum of `name`'s samples whose labels include every one of `with`.
fn sum(samples: &Samples, name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|((n, labels), _)| {
            n == name
                && with
                    .iter()
                    .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, v)| *v)
        .sum()
}

fn moved(before: &Samples, after: &Samples, name: &str, with: &[(&str, &str)]) -> f64 {
    sum(after, name, with) - sum(before, name, with)
}

#[tokio::test]
async fn counters_and_histograms_move_by_what_the_runs_did() {
    let dir = temp_dir("metrics-e2e");
    let mut children = Vec::new();
    let mut agents = Vec::new();
    let mut agent_metrics = Vec::new();
    for (name, ip) in [
        ("data-agent", [127, 0, 0, 1]),
        ("analytics-agent", [127, 0, 0, 2]),
        ("summary-agent", [127, 0, 0, 1]),
    ] {
        let listen = free_port(ip);
        let metrics = free_port([127, 0, 0, 1]).to_string();
        children.push(
            start_process_env(
                name,
                listen,
                &[],
                &[("AGENTMESH_TELEMETRY__METRICS__LISTEN", &metrics)],
                dir.path(),
                AGENT_SERVICE_NAME,
            )
            .await,
        );
        agents.push(listen);
        agent_metrics.push(metrics.parse::<SocketAddr>().unwrap());
    }
    let orch = free_port([127, 0, 0, 1]);
    let orch_metrics = free_port([127, 0, 0, 1]);
    let store = dir.path().join("runs.db");
    let mut args = Vec::new();
    for a in &agents {
        args.push("--agent".to_string());
        args.push(a.to_string());
    }
    let metrics_env = orch_metrics.to_string();
    let store_env = store.to_string_lossy().into_owned();
    children.push(
        start_process_env(
            "orchestrator",
            orch,
            &args,
            &[
                ("AGENTMESH_TELEMETRY__METRICS__LISTEN", &metrics_env),
                ("AGENTMESH_STORE__PATH", &store_env),
            ],
            dir.path(),
            ORCHESTRATOR_SERVICE_NAME,
        )
        .await,
    );
    let channel = Channel::from_shared(format!("http://{orch}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = OrchestratorServiceClient::new(channel).max_decoding_message_size(64 << 20);
    // Wait until the three agents are serving, as the gauges will say.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, s) = scrape(orch_metrics).await;
        if sum(&s, "agentmesh_endpoint_up", &[]) == 3.0 {
            assert_eq!(sum(&s, "agentmesh_registry_endpoints", &[]), 3.0);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "agents not up: {s:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let (_, before) = scrape(orch_metrics).await;
    let mut agents_before = Vec::new();
    for a in &agent_metrics {
        agents_before.push(scrape(*a).await.1);
    }
    const RUNS: usize = 2;
    let mut skills: Vec<String> = Vec::new();
    for _ in 0..RUNS {
        let events = run_all(&mut client, goal(Q2)).await;
        let mut state = None;
        for ev in &events {
            match &ev.event {
                Some(run_event::Event::Planned(p)) if skills.is_empty() => {
                    skills = p
                        .steps
                        .iter()
                        .filter_map(|s| s.step.as_ref().map(|s| s.skill.clone()))
                        .collect();
                }
                Some(run_event::Event::Finished(f)) => state = Some(f.state()),
                _ => {}
            }
        }
        assert_eq!(state, Some(RunState::Completed));
    }
    assert!(skills.len() >= 3, "{skills:?}");
    let (_, after) = scrape(orch_metrics).await;
    let runs = RUNS as f64;
    let steps = (RUNS * skills.len()) as f64;

    assert_eq!(
        moved(
            &before,
            &after,
            "agentmesh_runs_started_total",
            &[("source", "goal")]
        ),
        runs
    );
    assert_eq!(
        moved(
            &before,
            &after,
            "agentmesh_runs_finished_total",
            &[("state", "completed"), ("reason", "")]
        ),
        runs
    );
    assert_eq!(
        moved(&before, &after, "agentmesh_runs_finished_total", &[]),
        runs,
        "no other ends"
    );
    assert_eq!(
        moved(
            &before,
            &after,
            "agentmesh_run_duration_seconds",
            &[("state", "completed")]
        ),
        runs,
        "one run duration per run"
    );
    assert_eq!(
        moved(
            &before,
            &after,
            "agentmesh_planner_duration_seconds",
            &[("planner", "rules"), ("outcome", "planned")]
        ),
        runs
    );
    for skill in &skills {
        let n = skills.iter().filter(|s| *s == skill).count() as f64 * runs;
        assert_eq!(
            moved(
                &before,
                &after,
                "agentmesh_attempts_total",
                &[("skill", skill), ("outcome", "completed")]
            ),
            n,
            "{skill}"
        );
        assert_eq!(
            moved(
                &before,
                &after,
                "agentmesh_step_duration_seconds",
                &[("skill", skill), ("outcome", "completed")]
            ),
            n,
            "{skill}"
        );
    }
    assert_eq!(
        moved(&before, &after, "agentmesh_attempts_total", &[]),
        steps,
        "no failed attempts"
    );
    assert_eq!(moved(&before, &after, "agentmesh_retries_total", &[]), 0.0);
    assert!(
        moved(&before, &after, "agentmesh_store_commit_seconds", &[]) >= runs,
        "commits are timed"
    );
    assert_eq!(sum(&after, "agentmesh_runs_in_flight", &[]), 0.0);
    assert_eq!(sum(&after, "agentmesh_tasks_in_flight", &[]), 0.0);
    // Attempts are labelled with the agent that served them.
    let agent_names: Vec<String> = after
        .keys()
        .filter(|(n, _)| n == "agentmesh_attempts_total")
        .flat_map(|(_, l)| {
            l.iter()
                .filter(|(k, _)| k == "agent")
                .map(|(_, v)| v.clone())
        })
        .collect();
    assert!(agent_names.iter().all(|a| !a.is_empty()), "{agent_names:?}");
    // No label carries a run or task id.
    for (name, labels) in after.keys() {
        for (k, _) in labels {
            assert!(
                !["run_id", "task_id", "step_id"].contains(&k.as_str()),
                "{name} has {k}"
            );
        }
    }

    // Each agent counted the tasks it did; together, every step of the
    // plans (the planner's own catalog lookups are tasks of other skills).
    let mut distinct = skills.clone();
    distinct.sort();
    distinct.dedup();
    let mut tasks = 0.0;
    let mut durations = 0.0;
    for (i, a) in agent_metrics.iter().enumerate() {
        let (_, now) = scrape(*a).await;
        let all = moved(&agents_before[i], &now, "agentmesh_agent_tasks_total", &[]);
        let completed = moved(
            &agents_before[i],
            &now,
            "agentmesh_agent_tasks_total",
            &[("outcome", "completed")],
        );
        assert!(completed >= runs, "agent {i} did {completed} tasks");
        assert_eq!(all, completed, "agent {i}: only completed tasks");
        for skill in &distinct {
            tasks += moved(
                &agents_before[i],
                &now,
                "agentmesh_agent_tasks_total",
                &[("skill", skill)],
            );
            durations += moved(
                &agents_before[i],
                &now,
                "agentmesh_agent_task_duration_seconds",
                &[("skill", skill)],
            );
        }
        assert_eq!(sum(&now, "agentmesh_agent_tasks_in_flight", &[]), 0.0);
    }
    assert_eq!(tasks, steps);
    assert_eq!(durations, steps);
    drop(children);
}

#[tokio::test]
async fn openmetrics_is_served_when_asked_for() {
    let dir = temp_dir("metrics-openmetrics");
    let listen = free_port([127, 0, 0, 1]);
    let metrics = free_port([127, 0, 0, 1]);
    let metrics_env = metrics.to_string();
    let _agent = start_process_env(
        "summary-agent",
        listen,
        &[],
        &[("AGENTMESH_TELEMETRY__METRICS__LISTEN", &metrics_env)],
        dir.path(),
        AGENT_SERVICE_NAME,
    )
    .await;
    let resp = http()
        .get(format!("http://{metrics}/metrics"))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .unwrap();
    let kind = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    let text = resp.text().await.unwrap();
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    assert!(
        text.contains("# TYPE agentmesh_agent_tasks_in_flight gauge"),
        "{text}"
    );
    assert!(text.contains("agentmesh_agent_tasks_in_flight 0"), "{text}");
    let missing = http()
        .get(format!("http://{metrics}/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
}
