//! The delegation engine over real gRPC: agents and the orchestrator on
//! bound loopback listeners.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use agentmesh_e2e::mesh::*;
use agentmesh_proto::error::MeshError;
use agentmesh_proto::v1::{
    CancelRunRequest, FanInPolicy, GetRunRequest, RunState, StepCompleted, StreamOptions,
    WatchRunRequest, run_event::Event,
};
use serde_json::json;
use tokio_stream::StreamExt;

fn completed_at(events: &[agentmesh_proto::v1::RunEvent], id: &str) -> usize {
    position(
        events,
        |e| matches!(e, Event::StepCompleted(c) if c.step_id == id),
    )
    .unwrap_or_else(|| panic!("step {id} did not complete"))
}

fn started_at(events: &[agentmesh_proto::v1::RunEvent], id: &str) -> usize {
    position(
        events,
        |e| matches!(e, Event::StepStarted(s) if s.step_id == id),
    )
    .unwrap_or_else(|| panic!("step {id} did not start"))
}

#[tokio::test]
async fn independent_steps_overlap_and_a_slow_branch_does_not_hold_up_another() {
    let agent = TestAgent::new("work", &["work"]);
    let solo = solo(agent).await;
    let (addr, mut client) = (solo.agent, solo.client.clone());

    // slow: 800 ms. fast1 → fast2: 100 ms each, fast2 needs fast1's output.
    let plan = spec(vec![
        step("slow", "work", json!({"sleep_ms": 800, "value": "s"})),
        step("fast1", "work", json!({"sleep_ms": 100, "value": 41})),
        with_ref(
            step("fast2", "work", json!({"sleep_ms": 100})),
            "value",
            "fast1",
            "/value",
        ),
    ]);
    let t0 = Instant::now();
    let events = run_all(&mut client, plan).await;
    let took = t0.elapsed();
    assert_eq!(
        finished(&events).state(),
        RunState::Completed,
        "{events:#?}"
    );

    // Both roots start before either completes: they overlap.
    let first_done = completed_at(&events, "slow").min(completed_at(&events, "fast1"));
    assert!(started_at(&events, "slow") < first_done && started_at(&events, "fast1") < first_done);
    // The dependent step starts and finishes while the slow branch still runs.
    assert!(completed_at(&events, "fast2") < completed_at(&events, "slow"));
    assert!(
        took < Duration::from_millis(1_500),
        "took {took:?}: not parallel"
    );

    // The ref carried fast1's output into fast2's input.
    let Some(Event::StepCompleted(done)) = events[completed_at(&events, "fast2")].event.as_ref()
    else {
        unreachable!()
    };
    let out = agentmesh_proto::json::from_opt_struct(done.output.as_ref());
    assert_eq!(out["value"], json!(41));
    let prov = done.provenance.as_ref().unwrap();
    assert_eq!(
        (
            prov.agent.as_str(),
            prov.agent_version.as_str(),
            prov.attempts
        ),
        ("work", "1.2.3", 1)
    );
    assert_eq!(prov.endpoint, addr.to_string());
    assert_eq!(prov.input_hash.len(), 64);

    // Sequence numbers are 1..=n with no gap.
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
    // Task events are forwarded as they happen (WORKING before completion).
    let working = position(
        &events,
        |e| matches!(e, Event::StepEvent(s) if s.step_id == "slow"),
    )
    .unwrap();
    assert!(working < completed_at(&events, "slow"));
}

#[tokio::test]
async fn a_retryable_failure_is_retried_with_backoff_and_the_same_idempotency_key() {
    let raw = RawAgent::default();
    raw.script.lock().unwrap().push(RawMode::Unavailable);
    let addr = spawn_raw(raw.clone()).await;
    let orch = spawn_orchestrator(test_config(&[addr])).await;
    let mut client = orchestrator(orch).await;
    wait_serving_agents(&mut client, 1).await;

    let events = run_all(
        &mut client,
        spec(vec![step("only", "raw", json!({"x": 1}))]),
    )
    .await;
    assert_eq!(
        finished(&events).state(),
        RunState::Completed,
        "{events:#?}"
    );
    let retry = events
        .iter()
        .find_map(|e| match &e.event {
            Some(Event::StepRetrying(r)) => Some(r.clone()),
            _ => None,
        })
        .expect("a StepRetrying event");
    assert_eq!(retry.reason, "AGENT_UNAVAILABLE");
    assert_eq!(retry.failed_attempt, 1);
    let delay = std::time::Duration::try_from(retry.delay.unwrap()).unwrap();
    assert!(
        delay >= Duration::from_millis(10) && delay <= Duration::from_millis(200),
        "{delay:?}"
    );

    let requests = raw.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].attempt, 1);
    assert_eq!(requests[1].attempt, 2);
    assert!(!requests[0].idempotency_key.is_empty());
    assert_eq!(requests[0].idempotency_key, requests[1].idempotency_key);
    assert_ne!(requests[0].task_id, requests[1].task_id);
    assert!(requests[0].deadline.is_some() && requests[0].heartbeat_interval.is_some());
    // The retry carries the same input as the first attempt.
    assert!(
        requests[0]
            .input
            .as_ref()
            .is_some_and(|i| i.fields.contains_key("x")),
        "{:?}",
        requests[0].input
    );
    assert_eq!(requests[1].input, requests[0].input);
    // Each attempt's trace context travels in metadata, as agent.proto
    // says, and in the body: one trace, a span per attempt.
    let traceparents = raw.traceparents.lock().unwrap().clone();
    let bodies: Vec<String> = requests
        .iter()
        .map(|r| r.trace.as_ref().unwrap().traceparent.clone())
        .collect();
    assert_eq!(traceparents, bodies);
    let parts: Vec<Vec<&str>> = bodies.iter().map(|b| b.split('-').collect()).collect();
    for (b, p) in bodies.iter().zip(&parts) {
        assert!(b.len() == 55 && p[0] == "00" && p[3] == "01", "{b}");
    }
    assert_eq!(parts[0][1], parts[1][1], "one trace");
    assert_ne!(parts[0][2], parts[1][2], "a span per attempt");
}

#[tokio::test]
async fn an_output_refused_by_the_plans_checks_is_redone_not_replayed() {
    let agent = TestAgent::new("work", &["work"]);
    let seen = std::sync::Arc::clone(&agent.seen);
    let mesh = solo(agent).await;
    let mut client = mesh.client.clone();

    // The agent echoes an empty list; the plan expects a non-empty one.
    let mut s = step("s", "work", json!({"value": []}));
    s.expect = Some(agentmesh_proto::v1::StepExpectations {
        non_empty: vec!["/value".into()],
        ..Default::default()
    });
    s.max_attempts = 3;
    let events = run_all(&mut client, spec(vec![s])).await;
    let f = finished(&events);
    assert_eq!(f.state(), RunState::Failed, "{f:?}");
    assert_eq!(f.reason, "OUTPUT_INVALID");
    // Each attempt did the work again (a replayed result would be refused
    // the same way without the agent running).
    assert_eq!(seen.completed.load(Ordering::SeqCst), 3);
    // Three refused outputs do not eject the only replica.
    let listed = endpoints(&mut client).await;
    assert!(!listed[0].ejected, "{listed:?}");
    let again = run_all(&mut client, spec(vec![step("ok", "work", json!({}))])).await;
    assert_eq!(finished(&again).state(), RunState::Completed);
}

#[tokio::test]
async fn a_task_the_agent_cancels_itself_is_done_again_and_the_run_is_not_canceled() {
    let agent = TestAgent::new("work", &["work"]);
    let seen = std::sync::Arc::clone(&agent.seen);
    seen.cancel_next.store(1, Ordering::SeqCst);
    let mesh = solo(agent).await;
    let mut client = mesh.client.clone();

    let events = run_all(
        &mut client,
        spec(vec![step("s", "work", json!({"value": 1}))]),
    )
    .await;
    let f = finished(&events);
    assert_eq!(f.state(), RunState::Completed, "{f:?}");
    let retry = events
        .iter()
        .find_map(|e| match &e.event {
            Some(Event::StepRetrying(r)) => Some(r.clone()),
            _ => None,
        })
        .expect("the canceled attempt is retried");
    assert_eq!(retry.reason, "CANCELED");
    assert!(retry.message.contains("the agent canceled"), "{retry:?}");
    // Done again, not a repeat of the canceled task.
    assert_eq!(seen.started.load(Ordering::SeqCst), 2);
    assert_eq!(seen.completed.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn provenance_times_the_successful_attempt_not_the_retries() {
    let raw = RawAgent::default();
    raw.script.lock().unwrap().push(RawMode::Unavailable);
    let addr = spawn_raw(raw.clone()).await;
    let mut cfg = test_config(&[addr]);
    // A backoff far longer than a loopback attempt.
    cfg.execution.backoff_base = Duration::from_millis(600);
    cfg.execution.backoff_max = Duration::from_millis(600);
    let orch = spawn_orchestrator(cfg).await;
    let mut client = orchestrator(orch).await;
    wait_serving_agents(&mut client, 1).await;

    let events = run_all(&mut client, spec(vec![step("only", "raw", json!({}))])).await;
    let f = finished(&events);
    assert_eq!(f.state(), RunState::Completed, "{events:#?}");
    let p = &f.report.as_ref().unwrap().provenance[0];
    assert_eq!(p.attempts, 2);
    let took = std::time::Duration::try_from(p.duration.unwrap()).unwrap();
    assert!(
        took < Duration::from_millis(300),
        "{took:?} includes the backoff (at least 300 ms)"
    );
}

#[tokio::test]
async fn a_replica_killed_mid_task_is_rerouted_and_provenance_shows_it() {
    let a = TestAgent::new("work", &["work"]);
    let b = TestAgent::new("work", &["work"]);
    let (addr_a, crash_a) = spawn_crashable(a.clone());
    let (addr_b, crash_b) = spawn_crashable(b.clone());
    let orch = spawn_orchestrator(test_config(&[addr_a, addr_b])).await;
    let mut client = orchestrator(orch).await;
    wait_serving_agents(&mut client, 2).await;

    let mut stream = client
        .run(agentmesh_proto::v1::RunRequest {
            spec: Some(spec(vec![step("long", "work", json!({"sleep_ms": 1500}))])),
            stream: None,
        })
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    let mut crashes = Some((crash_a, crash_b));
    let mut survivor = None;
    let mut first = String::new();
    while let Some(ev) = stream.next().await {
        let ev = ev.unwrap();
        if let Some(Event::StepStarted(s)) = &ev.event
            && let Some((ca, cb)) = crashes.take()
        {
            first = s.endpoint.clone();
            tokio::time::sleep(Duration::from_millis(200)).await;
            if first == addr_a.to_string() {
                ca.crash();
                survivor = Some(cb);
            } else {
                cb.crash();
                survivor = Some(ca);
            }
        }
        events.push(ev);
    }
    assert!(survivor.is_some());
    let f = finished(&events);
    assert_eq!(f.state(), RunState::Completed, "{events:#?}");
    let rerouted = events
        .iter()
        .find_map(|e| match &e.event {
            Some(Event::StepRerouted(r)) => Some(r.clone()),
            _ => None,
        })
        .expect("a StepRerouted event");
    assert_eq!(rerouted.from_endpoint, first);
    assert_ne!(rerouted.to_endpoint, first);
    let prov = &f.report.as_ref().unwrap().provenance[0];
    assert_eq!(prov.earlier_endpoints, vec![first.clone()]);
    assert_eq!(prov.endpoint, rerouted.to_endpoint);
    assert_eq!(prov.attempts, 2);
}

#[tokio::test]
async fn a_silent_agent_loses_its_heartbeat_lease_and_is_told_to_cancel() {
    let raw = RawAgent::default();
    raw.script.lock().unwrap().push(RawMode::Silent);
    let addr = spawn_raw(raw.clone()).await;
    let orch = spawn_orchestrator(test_config(&[addr])).await;
    let mut client = orchestrator(orch).await;
    wait_serving_agents(&mut client, 1).await;

    // Lease: 3 x 100 ms heartbeats. The retry goes to the same (only)
    // replica, which now answers.
    let t0 = Instant::now();
    let events = run_all(&mut client, spec(vec![step("quiet", "raw", json!({}))])).await;
    assert_eq!(
        finished(&events).state(),
        RunState::Completed,
        "{events:#?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(3));
    let retry = events
        .iter()
        .find_map(|e| match &e.event {
            Some(Event::StepRetrying(r)) => Some(r.clone()),
            _ => None,
        })
        .unwrap();
    assert!(retry.message.contains("heartbeat lease"), "{retry:?}");
    let cancels = raw.cancels.lock().unwrap().clone();
    assert_eq!(
        cancels.len(),
        1,
        "the abandoned attempt was cancelled on the agent"
    );
    assert_eq!(cancels[0].task_id, raw.requests.lock().unwrap()[0].task_id);
}

#[tokio::test]
async fn step_and_run_deadlines_stop_the_work_on_the_agent() {
    let agent = TestAgent::new("work", &["work"]);
    let seen = agent.seen.clone();
    let solo = solo(agent).await;
    let mut client = solo.client.clone();

    // Step deadline: each attempt gets 200 ms; two attempts.
    let mut slow = step("slow", "work", json!({"sleep_ms": 5_000}));
    slow.deadline = Some(Duration::from_millis(200).try_into().unwrap());
    slow.max_attempts = 2;
    let t0 = Instant::now();
    let events = run_all(&mut client, spec(vec![slow])).await;
    let f = finished(&events);
    assert_eq!(f.state(), RunState::Failed);
    assert_eq!(f.reason, "DEADLINE_EXCEEDED", "{f:?}");
    assert!(
        f.message.contains("slow"),
        "the failing step is named: {}",
        f.message
    );
    assert!(t0.elapsed() < Duration::from_secs(2));
    let failed = events
        .iter()
        .find_map(|e| match &e.event {
            Some(Event::StepFailed(s)) => Some(s.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        (failed.attempts, failed.reason.as_str()),
        (2, "DEADLINE_EXCEEDED")
    );

    // Run deadline: 300 ms for the whole run.
    let mut run = spec(vec![step("slow", "work", json!({"sleep_ms": 5_000}))]);
    run.deadline = Some(Duration::from_millis(300).try_into().unwrap());
    let t0 = Instant::now();
    let events = run_all(&mut client, run).await;
    let f = finished(&events);
    assert_eq!(
        (f.state(), f.reason.as_str()),
        (RunState::Failed, "DEADLINE_EXCEEDED"),
        "{f:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(2));
    // The agent saw all three tasks cancelled.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while seen.cancelled.load(Ordering::SeqCst) < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "agent saw {} cancellations",
            seen.cancelled.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen.completed.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn cancel_run_and_a_dropped_run_stream_cancel_the_agents_tasks() {
    let agent = TestAgent::new("work", &["work"]);
    let seen = agent.seen.clone();
    let solo = solo(agent).await;
    let mut client = solo.client.clone();
    let two_slow = || {
        spec(vec![
            step("a", "work", json!({"sleep_ms": 10_000})),
            step("b", "work", json!({"sleep_ms": 10_000})),
        ])
    };

    // Submit, wait until both tasks run, CancelRun.
    let run_id = submit(&mut client, two_slow()).await;
    while seen.started.load(Ordering::SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let state = client
        .cancel_run(CancelRunRequest {
            run_id: run_id.clone(),
            reason: "changed my mind".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .state();
    assert_eq!(state, RunState::Canceled);
    assert_eq!(
        seen.cancelled.load(Ordering::SeqCst),
        2,
        "both agent tasks saw the cancel"
    );
    let got = client
        .get_run(GetRunRequest { run_id })
        .await
        .unwrap()
        .into_inner();
    let f = got.finished.unwrap();
    assert_eq!(f.state(), RunState::Canceled);
    assert!(f.message.contains("changed my mind"));
    assert!(f.report.unwrap().sections.iter().all(|s| s.missing));

    // Run, then drop the stream after the first StepStarted.
    let mut stream = client
        .run(agentmesh_proto::v1::RunRequest {
            spec: Some(two_slow()),
            stream: None,
        })
        .await
        .unwrap()
        .into_inner();
    let mut run_id = String::new();
    while let Some(ev) = stream.next().await {
        let ev = ev.unwrap();
        run_id = ev.run_id.clone();
        if matches!(ev.event, Some(Event::StepStarted(_))) {
            break;
        }
    }
    while seen.started.load(Ordering::SeqCst) < 4 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(stream);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while seen.cancelled.load(Ordering::SeqCst) < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dropped stream did not cancel the tasks"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let got = client
        .get_run(GetRunRequest { run_id })
        .await
        .unwrap()
        .into_inner();
    let state = got.run.unwrap().state();
    assert!(
        matches!(state, RunState::Canceled | RunState::Running),
        "{state:?}"
    );
}

#[tokio::test]
async fn all_required_fails_the_run_and_best_effort_completes_with_gaps_marked() {
    let agent = TestAgent::new("work", &["work"]);
    let solo = solo(agent).await;
    let mut client = solo.client.clone();
    let plan = || {
        spec(vec![
            step("good", "work", json!({"sleep_ms": 300, "value": 1})),
            step("bad", "work", json!({"fail": "permanent"})),
            with_ref(
                step("after_bad", "work", json!({})),
                "value",
                "bad",
                "/value",
            ),
        ])
    };

    let events = run_all(&mut client, plan()).await;
    let f = finished(&events);
    assert_eq!(f.state(), RunState::Failed);
    assert_eq!(f.reason, "AGENT_FAILED");
    assert!(f.message.contains("step bad failed"), "{}", f.message);
    // Fail fast: the good step was stopped, not waited for.
    let report = f.report.as_ref().unwrap();
    assert!(
        report
            .sections
            .iter()
            .find(|s| s.id == "good")
            .unwrap()
            .missing
    );

    let mut best = plan();
    best.fan_in = FanInPolicy::BestEffort.into();
    let events = run_all(&mut client, best).await;
    let f = finished(&events);
    assert_eq!(f.state(), RunState::Partial, "{f:?}");
    let report = f.report.as_ref().unwrap();
    let section = |id: &str| report.sections.iter().find(|s| s.id == id).unwrap().clone();
    assert!(!section("good").missing);
    assert!(section("bad").missing && section("bad").missing_reason.contains("always fails"));
    let after = section("after_bad");
    assert!(
        after.missing && after.missing_reason.contains("step bad failed"),
        "{after:?}"
    );
    assert_eq!(report.provenance.len(), 1);
    assert_eq!(report.provenance[0].step_id, "good");
}

#[tokio::test]
async fn watch_run_resumes_after_a_sequence_number_without_gap_or_duplicate() {
    let agent = TestAgent::new("work", &["work"]);
    let solo = solo(agent).await;
    let mut client = solo.client.clone();
    let plan = spec(vec![
        step("a", "work", json!({"sleep_ms": 100})),
        with_ref(
            step("b", "work", json!({"sleep_ms": 100})),
            "value",
            "a",
            "/agent",
        ),
        with_ref(
            step("c", "work", json!({"sleep_ms": 100})),
            "value",
            "b",
            "/agent",
        ),
    ]);
    let run_id = submit(&mut client, plan).await;

    // First connection: read 4 events, then drop it mid-run.
    let mut first = client
        .watch_run(WatchRunRequest {
            run_id: run_id.clone(),
            after_seq: 0,
            stream: None,
        })
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        seen.push(first.next().await.unwrap().unwrap());
    }
    drop(first);
    let last = seen.last().unwrap().seq;
    // Reconnect after the last sequence number received.
    seen.extend(watch_to_end(&mut client, &run_id, last).await);
    let seqs: Vec<u64> = seen.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
    assert_eq!(finished(&seen).state(), RunState::Completed);
    // The whole log, read again, is the same.
    let all = watch_to_end(&mut client, &run_id, 0).await;
    assert_eq!(all, seen);
    let got = client
        .get_run(GetRunRequest { run_id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.run.unwrap().last_seq, seqs.len() as u64);
    assert_eq!(got.planned.unwrap().steps.len(), 3);
}

#[tokio::test]
async fn a_stream_can_leave_step_outputs_out_and_the_log_keeps_them() {
    let agent = TestAgent::new("work", &["work"]);
    let solo = solo(agent).await;
    let mut client = solo.client.clone();
    let plan = spec(vec![
        step("a", "work", json!({"sleep_ms": 10})),
        with_ref(step("b", "work", json!({})), "value", "a", "/agent"),
    ]);
    let lean = Some(StreamOptions {
        omit_step_outputs: true,
    });
    let events = run_all_with(&mut client, plan, lean).await;
    let completed = |events: &[agentmesh_proto::v1::RunEvent]| -> Vec<StepCompleted> {
        events
            .iter()
            .filter_map(|e| match &e.event {
                Some(Event::StepCompleted(c)) => Some(c.clone()),
                _ => None,
            })
            .collect()
    };
    let omitted = completed(&events);
    assert_eq!(omitted.len(), 2);
    for c in &omitted {
        assert!(c.output.is_none() && c.output_omitted, "{c:?}");
        assert!(c.provenance.is_some(), "provenance still comes");
    }
    assert_eq!(finished(&events).state(), RunState::Completed);
    // The log is whole: the step's data still reached step b, and WatchRun
    // without the option sends every output.
    let full = completed(&watch_to_end(&mut client, &events[0].run_id, 0).await);
    assert_eq!(full.len(), 2);
    for c in &full {
        assert!(!c.output_omitted);
        let output = c.output.as_ref().expect("the output is in the log");
        assert!(output.fields.contains_key("agent"), "{output:?}");
    }
    // WatchRun with the option leaves them out again, nothing else.
    let watched = watch_to_end_with(&mut client, &events[0].run_id, 0, lean).await;
    assert_eq!(watched, events);
}

#[tokio::test]
async fn bad_plans_and_requests_get_invalid_argument_naming_the_problem() {
    use agentmesh_proto::v1::{PlanStep, RunSpec};
    let agent = TestAgent::new("work", &["work"]);
    let solo = solo(agent).await;
    let (addr, mut client) = (solo.agent, solo.client.clone());

    let ok = || step("a", "work", json!({}));
    type Case = (
        &'static str,
        Option<RunSpec>,
        &'static str,
        Option<(&'static str, &'static str)>,
    );
    let cases: Vec<Case> = vec![
        ("no spec", None, "INVALID_INPUT", Some(("field", "spec"))),
        (
            "nothing to do",
            Some(RunSpec::default()),
            "INVALID_INPUT",
            Some(("field", "spec")),
        ),
        (
            "unknown skill",
            Some(spec(vec![ok(), step("b", "nope", json!({}))])),
            "UNKNOWN_SKILL",
            Some(("step", "b")),
        ),
        (
            "duplicate id",
            Some(spec(vec![ok(), ok()])),
            "PLAN_INVALID",
            Some(("step", "a")),
        ),
        (
            "bad id",
            Some(spec(vec![step("Bad Id", "work", json!({}))])),
            "PLAN_INVALID",
            Some(("step", "Bad Id")),
        ),
        (
            "cycle",
            Some(spec(vec![
                with_ref(step("a", "work", json!({})), "value", "b", ""),
                with_ref(step("b", "work", json!({})), "value", "a", ""),
            ])),
            "PLAN_INVALID",
            None,
        ),
        (
            "dangling ref",
            Some(spec(vec![with_ref(ok(), "value", "ghost", "/x")])),
            "PLAN_INVALID",
            Some(("step", "a")),
        ),
        (
            "dangling depends_on",
            Some(spec(vec![PlanStep {
                depends_on: vec!["ghost".into()],
                ..ok()
            }])),
            "PLAN_INVALID",
            Some(("step", "a")),
        ),
        (
            "schema violation",
            Some(spec(vec![step("a", "work", json!({"sleep_ms": "soon"}))])),
            "INVALID_INPUT",
            Some(("step", "a")),
        ),
        (
            "unknown field",
            Some(spec(vec![step("a", "work", json!({"colour": 1}))])),
            "INVALID_INPUT",
            Some(("step", "a")),
        ),
        (
            "bad pointer",
            Some(spec(vec![
                ok(),
                with_ref(step("b", "work", json!({})), "value", "a", "value"),
            ])),
            "PLAN_INVALID",
            Some(("step", "b")),
        ),
        (
            "too many attempts",
            Some(spec(vec![PlanStep {
                max_attempts: 99,
                ..ok()
            }])),
            "PLAN_INVALID",
            Some(("step", "a")),
        ),
        (
            "huge goal",
            Some(RunSpec {
                goal: "x".repeat(100_000),
                ..spec(vec![ok()])
            }),
            "INVALID_INPUT",
            Some(("field", "spec.goal")),
        ),
        (
            "bad fan_in",
            Some(RunSpec {
                fan_in: 42,
                ..spec(vec![ok()])
            }),
            "INVALID_INPUT",
            Some(("field", "spec.fan_in")),
        ),
        (
            "zero deadline",
            Some(RunSpec {
                deadline: Some(Default::default()),
                ..spec(vec![ok()])
            }),
            "INVALID_INPUT",
            Some(("field", "spec.deadline")),
        ),
    ];
    for (name, spec, reason, meta) in cases {
        let err = client
            .run(agentmesh_proto::v1::RunRequest {
                spec: spec.clone(),
                stream: None,
            })
            .await
            .err()
            .unwrap_or_else(|| panic!("{name}: accepted"));
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{name}: {err:?}");
        let mesh = MeshError::from_status(&err);
        assert_eq!(mesh.reason.name(), reason, "{name}: {err:?}");
        if let Some((k, v)) = meta {
            assert_eq!(
                mesh.metadata.get(k).map(String::as_str),
                Some(v),
                "{name}: {:?}",
                mesh.metadata
            );
        }
        // Plan answers the same way.
        let err = client
            .plan(agentmesh_proto::v1::PlanRequest { spec })
            .await
            .unwrap_err();
        assert_eq!(
            MeshError::from_status(&err).reason.name(),
            reason,
            "{name} (Plan)"
        );
    }

    // Unknown runs and positions.
    let err = client
        .get_run(GetRunRequest {
            run_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = client
        .get_run(GetRunRequest {
            run_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let events = run_all(&mut client, spec(vec![ok()])).await;
    let err = client
        .watch_run(WatchRunRequest {
            run_id: events[0].run_id.clone(),
            after_seq: 10_000,
            stream: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(MeshError::from_status(&err).metadata["field"], "after_seq");

    // Plan shows who would serve each step, without running anything.
    let planned = client
        .plan(agentmesh_proto::v1::PlanRequest {
            spec: Some(spec(vec![
                ok(),
                with_ref(step("b", "work", json!({})), "value", "a", "/value"),
            ])),
        })
        .await
        .unwrap()
        .into_inner()
        .planned
        .unwrap();
    assert_eq!(planned.steps.len(), 2);
    assert_eq!(planned.steps[0].endpoint, addr.to_string());
    assert_eq!(planned.steps[0].agent, "work");
    assert_eq!(planned.steps[1].after, vec!["a".to_string()]);
}

#[tokio::test]
async fn outputs_that_fail_the_plans_own_checks_fail_the_step() {
    let mesh = solo(TestAgent::new("work", &["work"])).await;
    let mut client = mesh.client.clone();

    use agentmesh_proto::v1::StepExpectations;
    // The agent echoes `value`; `sleep_ms` is the only number in the input.
    let cases = [
        (
            json!({"value": []}),
            StepExpectations {
                non_empty: vec!["/value".into()],
                ..Default::default()
            },
            Some("expected a non-empty array at /value"),
        ),
        (
            json!({"value": "a chart"}),
            StepExpectations {
                min_svg_artifacts: 1,
                ..Default::default()
            },
            Some("expected at least 1 valid SVG artifacts, got 0"),
        ),
        (
            json!({"value": "revenue rose 12.5% to $3.0M", "sleep_ms": 12}),
            StepExpectations {
                faithful_text: "/value".into(),
                ..Default::default()
            },
            Some("not faithful to the step's input: 12.5%, $3.0M not found"),
        ),
        (
            json!({"value": "revenue rose 12%", "sleep_ms": 12}),
            StepExpectations {
                faithful_text: "/value".into(),
                ..Default::default()
            },
            None,
        ),
    ];
    for (input, expect, refused) in cases {
        let mut s = step("s", "work", input.clone());
        s.expect = Some(expect);
        s.max_attempts = 1;
        let events = run_all(&mut client, spec(vec![s])).await;
        let f = finished(&events);
        match refused {
            Some(why) => {
                assert_eq!(f.state(), RunState::Failed, "{input}: {f:?}");
                assert_eq!(f.reason, "OUTPUT_INVALID", "{input}");
                assert!(f.message.contains(why), "{input}: {}", f.message);
            }
            None => assert_eq!(f.state(), RunState::Completed, "{input}: {f:?}"),
        }
    }
}
