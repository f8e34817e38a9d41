//! Capacity: how many slow runs one orchestrator holds, and what each costs
//! while it waits.
//!
//! ```sh
//! cargo bench -p agentmesh-e2e --bench capacity        # CAPACITY_RUNS=1000,10000 CAPACITY_HOLD_S=40
//! ```
//!
//! The real binaries, each its own process: a data agent whose every task
//! waits `CAPACITY_HOLD_S` seconds before it answers (`server.fault_delay_ms`:
//! heartbeating, cancellable, as a slow agent would), and the orchestrator.
//! For each batch size, runs of one step (`sales.describe`) are submitted by
//! 64 clients at once; once every step is in flight on the agent, the
//! orchestrator's resident memory is read from /proc and compared with its
//! memory just before the batch (KiB per in-flight run), and its CPU time
//! over the wait is read (what waiting costs). Then every run must complete,
//! and the CPU per run over the whole batch is printed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use agentmesh_e2e::mesh::{orchestrator, spec, step, wait_serving_agents};
use agentmesh_e2e::process::{cpu, env_list, rss_kib};
use agentmesh_e2e::{free_port, start_process_env, temp_dir};
use agentmesh_proto::v1::{
    AGENT_SERVICE_NAME, GetRunRequest, ListAgentsRequest, ORCHESTRATOR_SERVICE_NAME, RunState,
    SubmitRequest,
};
use serde_json::json;

#[tokio::main]
async fn main() {
    let sizes = env_list("CAPACITY_RUNS", &[1_000, 10_000]);
    let hold_s = env_list("CAPACITY_HOLD_S", &[40])[0] as u64;
    let most = sizes.iter().copied().max().unwrap_or(0);
    let tmp = temp_dir("capacity");
    let data_addr = free_port([127, 0, 0, 1]);
    let cap = (most * 2).to_string();
    let hold = (hold_s * 1_000).to_string();
    let _data = start_process_env(
        "data-agent",
        data_addr,
        &[],
        &[
            ("AGENTMESH_SERVER__FAULT_DELAY_MS", &hold),
            ("AGENTMESH_SERVER__MAX_CONCURRENT_TASKS", &cap),
            ("AGENTMESH_SERVER__MAX_CONCURRENT_STREAMS", &cap),
            ("AGENTMESH_SERVER__CONCURRENCY_PER_CONNECTION", &cap),
            ("AGENTMESH_SERVER__MAX_TASK_MS", "600000"),
        ],
        &tmp.path().join("data"),
        AGENT_SERVICE_NAME,
    )
    .await;
    let orch_addr = free_port([127, 0, 0, 1]);
    let endpoints = format!("[\"{data_addr}\"]");
    let orch = start_process_env(
        "orchestrator",
        orch_addr,
        &[],
        &[
            ("AGENTMESH_DISCOVERY__ENDPOINTS", &endpoints),
            ("AGENTMESH_EXECUTION__MAX_ACTIVE_RUNS", &cap),
            // Every run of a batch stays readable until it is checked.
            ("AGENTMESH_STORE__RETAINED_RUNS", &cap),
            ("AGENTMESH_SERVER__MAX_CONCURRENT_STREAMS", &cap),
            ("AGENTMESH_SERVER__CONCURRENCY_PER_CONNECTION", &cap),
            ("AGENTMESH_TELEMETRY__LOG_FILTER", "warn"),
        ],
        &tmp.path().join("orchestrator"),
        ORCHESTRATOR_SERVICE_NAME,
    )
    .await;
    let pid = orch.0.id();
    let mut client = orchestrator(orch_addr).await;
    wait_serving_agents(&mut client, 1).await;

    println!(
        "| runs in flight | idle RSS MiB | RSS in flight MiB | KiB per in-flight run | CPU while waiting, µs per run per s | CPU per run, µs | submit s | all done s |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for n in sizes {
        let idle = rss_kib(pid);
        let cpu_before = cpu(pid);
        let t0 = Instant::now();
        let mut submitters = Vec::new();
        for c in 0..64 {
            let mut client = client.clone();
            submitters.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in (c..n).step_by(64) {
                    let run = spec(vec![step("describe", "sales.describe", json!({}))]);
                    let id = client
                        .submit(SubmitRequest { spec: Some(run) })
                        .await
                        .unwrap()
                        .into_inner()
                        .run_id;
                    ids.push(id);
                }
                ids
            }));
        }
        let mut ids = Vec::with_capacity(n);
        for s in submitters {
            ids.extend(s.await.unwrap());
        }
        let submitted = t0.elapsed();
        // Every step on the agent: the orchestrator holds n waiting runs.
        loop {
            let listed = client
                .list_agents(ListAgentsRequest {})
                .await
                .unwrap()
                .into_inner();
            if listed.endpoints.iter().map(|e| e.in_flight).sum::<u32>() as usize >= n {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(hold_s),
                "steps did not all start in time"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Let the process settle, then measure the wait itself.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let loaded = rss_kib(pid);
        let wait_from = (Instant::now(), cpu(pid));
        tokio::time::sleep(Duration::from_secs(5)).await;
        let waiting_cpu = cpu(pid) - wait_from.1;
        let waited = wait_from.0.elapsed();
        // Then every run completes.
        for id in &ids {
            loop {
                let run = client
                    .get_run(GetRunRequest { run_id: id.clone() })
                    .await
                    .unwrap()
                    .into_inner();
                match run.finished {
                    Some(f) => {
                        assert_eq!(f.state(), RunState::Completed, "{id}: {f:?}");
                        break;
                    }
                    None => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }
        let done = t0.elapsed();
        let per_run_cpu = (cpu(pid) - cpu_before).as_micros() as f64 / n as f64;
        let waiting = waiting_cpu.as_micros() as f64 / n as f64 / waited.as_secs_f64();
        println!(
            "| {n} | {:.1} | {:.1} | {:.1} | {waiting:.1} | {per_run_cpu:.0} | {:.1} | {:.1} |",
            idle as f64 / 1024.0,
            loaded as f64 / 1024.0,
            (loaded.saturating_sub(idle)) as f64 / n as f64,
            submitted.as_secs_f64(),
            done.as_secs_f64(),
        );
    }
}
