//! How long the runs of an orchestrator replica that died wait before
//! another replica drives them again, on PostgreSQL (`store.url`).
//!
//! ```sh
//! cargo bench -p agentmesh-e2e --bench takeover   # TAKEOVER_LEASES_MS=2000,10000 TAKEOVER_RUNS=20
//! ```
//!
//! A real PostgreSQL server (the tests' harness), three agents, and two
//! orchestrator processes A and B on one database. `TAKEOVER_RUNS` runs are
//! submitted to A, each with a step working on its agent; then A is stopped
//! (SIGKILL: its lease has to expire; SIGTERM: it gives the lease up as it
//! exits) and, for each run, a client on B times how long until the run's
//! `RunResumed` (B took it over) and its next `StepStarted` (the step sent
//! again). Printed per lease length and way of stopping: min, p50 and max,
//! and the lease (the wait a kill must cost).
//!
//! Then the lag of following a run on a replica that does not drive it:
//! `TAKEOVER_FOLLOWED` runs of three quick steps on A, each watched at once
//! on A and on B; for every event, how much later B's client got it than
//! A's (B reads it from the database on A's notification).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use agentmesh_e2e::mesh::*;
use agentmesh_e2e::postgres::Postgres;
use agentmesh_e2e::process::env_list;
use agentmesh_e2e::replica::Replica;
use agentmesh_e2e::temp_dir;
use agentmesh_proto::v1::{GetRunRequest, WatchRunRequest, run_event::Event};
use serde_json::json;
use tokio_stream::StreamExt;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(mut v: Vec<Duration>) -> String {
    v.sort();
    format!(
        "{:>7.0} {:>7.0} {:>7.0}",
        ms(v[0]),
        ms(v[v.len() / 2]),
        ms(v[v.len() - 1])
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let leases = env_list("TAKEOVER_LEASES_MS", &[2_000, 10_000]);
    let runs = env_list("TAKEOVER_RUNS", &[20])[0];
    let pg = Postgres::start().await;
    let tmp = temp_dir("takeover");
    let dir = tmp.path();
    let (agents, addrs) = chain_agents(1).await;
    println!(
        "{:<9} {:<8} {:>5}   {:^23}   {:^23}",
        "lease ms", "stop", "runs", "RunResumed min/p50/max ms", "step sent min/p50/max ms"
    );
    for (i, lease) in leases.iter().enumerate() {
        for (j, kill) in [true, false].into_iter().enumerate() {
            let url = pg.database(&format!("takeover_{i}_{j}")).await;
            let lease = u64::try_from(*lease).unwrap();
            let mut a = Replica::start("a", &url, &addrs, dir, lease).await;
            let b = Replica::start("b", &url, &addrs, dir, lease).await;
            let mut ca = orchestrator(a.addr).await;
            wait_serving_agents(&mut ca, 3).await;
            wait_serving_agents(&mut orchestrator(b.addr).await, 3).await;
            let started = agents[1].seen.started.load(Ordering::SeqCst);
            let mut ids = Vec::new();
            for n in 0..runs {
                let plan = chain([json!({"value": n}), json!({"sleep_ms": 600_000}), json!({})]);
                ids.push(submit(&mut ca, plan).await);
            }
            while agents[1].seen.started.load(Ordering::SeqCst) < started + runs as u32 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let mut cb = orchestrator(b.addr).await;
            let mut watches = Vec::new();
            for id in &ids {
                let last = cb
                    .get_run(GetRunRequest { run_id: id.clone() })
                    .await
                    .unwrap()
                    .into_inner()
                    .run
                    .unwrap()
                    .last_seq;
                let stream = cb
                    .watch_run(WatchRunRequest {
                        run_id: id.clone(),
                        after_seq: last,
                        stream: None,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                watches.push(stream);
            }
            let stopped = Instant::now();
            if kill {
                a.kill();
            } else {
                a.signal(nix::sys::signal::Signal::SIGTERM);
            }
            let mut resumed = Vec::new();
            let mut resent = Vec::new();
            for mut w in watches {
                let mut got_resumed = false;
                while let Some(Ok(ev)) = w.next().await {
                    match ev.event {
                        Some(Event::Resumed(_)) => {
                            resumed.push(stopped.elapsed());
                            got_resumed = true;
                        }
                        Some(Event::StepStarted(s)) if got_resumed && s.step_id == "second" => {
                            resent.push(stopped.elapsed());
                            break;
                        }
                        _ => {}
                    }
                }
            }
            println!(
                "{:<9} {:<8} {:>5}   {}   {}",
                lease,
                if kill { "SIGKILL" } else { "SIGTERM" },
                runs,
                summary(resumed),
                summary(resent)
            );
        }
    }
    follow_lag(&pg, &addrs, dir).await;
}

/// Times each event of runs driven by A as clients on A and on B get it.
async fn follow_lag(pg: &Postgres, agents: &[SocketAddr], dir: &Path) {
    let runs = env_list("TAKEOVER_FOLLOWED", &[50])[0];
    let url = pg.database("follow").await;
    let a = Replica::start("a", &url, agents, dir, 10_000).await;
    let b = Replica::start("b", &url, agents, dir, 10_000).await;
    let mut ca = orchestrator(a.addr).await;
    wait_serving_agents(&mut ca, 3).await;
    let cb = orchestrator(b.addr).await;
    let mut lags = Vec::new();
    for n in 0..runs {
        let plan = chain([
            json!({"value": n, "sleep_ms": 150}),
            json!({"sleep_ms": 20}),
            json!({}),
        ]);
        let id = submit(&mut ca, plan).await;
        let watch =
            |mut c: agentmesh_proto::v1::orchestrator_service_client::OrchestratorServiceClient<
                tonic::transport::Channel,
            >| {
                let id = id.clone();
                tokio::spawn(async move {
                    let mut s = c
                        .watch_run(WatchRunRequest {
                            run_id: id,
                            after_seq: 0,
                            stream: None,
                        })
                        .await
                        .unwrap()
                        .into_inner();
                    let mut seen = Vec::new();
                    while let Some(Ok(ev)) = s.next().await {
                        seen.push((ev.seq, Instant::now()));
                    }
                    seen
                })
            };
        let (on_a, on_b) = (watch(ca.clone()), watch(cb.clone()));
        let (on_a, on_b) = (on_a.await.unwrap(), on_b.await.unwrap());
        assert_eq!(on_a.len(), on_b.len(), "both clients got every event");
        // Past the plan and the first step's start (there before both
        // clients are), every event arrives live.
        for ((_, ta), (_, tb)) in on_a.iter().zip(&on_b).skip(2) {
            lags.push(tb.saturating_duration_since(*ta));
        }
    }
    println!(
        "followed on another replica: {} events of {runs} runs, lag behind the driving replica's own clients min/p50/max ms: {}",
        lags.len(),
        summary(lags.clone())
    );
    lags.sort();
    println!("  p99 {:.1} ms", ms(lags[lags.len() * 99 / 100]));
}
