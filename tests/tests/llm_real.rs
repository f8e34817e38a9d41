//! The LLM planner end to end against a real small model on the CPU:
//! SmolLM2-135M-Instruct, served by node-llama-cpp behind an OpenAI-style
//! `/v1/chat/completions` (`tests/llm-server`). A model this small proposes
//! poor plans; what is asserted is the loop, never which skills it picks:
//! every try is recorded with its tokens and time, a refused plan is sent
//! back, and the run either gets the model's valid plan or falls back to
//! the rules planner. The invalid path is also forced deterministically
//! (an answer cut off at 8 tokens).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use agentmesh_analytics::AnalyticsAgent;
use agentmesh_e2e::mesh::*;
use agentmesh_e2e::{Child, spawn_agent};
use agentmesh_orchestrator::config::PlannerMode;
use agentmesh_proto::v1::{PlanRequest, RunState};
use agentmesh_summary::SummaryAgent;

const MODEL: &str = "SmolLM2-135M-Instruct";
const GOAL: &str =
    "Generate a Q2 sales performance report with visualizations and an executive summary";

/// The model server on a free port: (process, port).
fn model_server() -> (Child, u16) {
    let run = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("llm-server/run");
    let setup = Command::new(&run).arg("--setup").output().unwrap();
    assert!(
        setup.status.success(),
        "{} --setup: {}",
        run.display(),
        String::from_utf8_lossy(&setup.stderr)
    );
    let mut child = Command::new(&run)
        .arg("0")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("the model server said {line:?}"));
    (Child(child), port)
}

#[tokio::test]
async fn a_real_small_model_plans_through_the_validation_loop() {
    let (_server, port) = model_server();
    let (_data_root, data) = common::data_agent().await;
    let agents = vec![
        data,
        spawn_agent(AnalyticsAgent).await,
        spawn_agent(SummaryAgent::default()).await,
    ];
    let orchestrator_with = |max_tokens: u32, tries: u32| {
        let mut cfg = test_config(&agents);
        cfg.planning.mode = PlannerMode::LlmThenRules;
        cfg.planning.llm.base_url = format!("http://127.0.0.1:{port}/v1");
        cfg.planning.llm.model = MODEL.into();
        cfg.planning.llm.timeout = Duration::from_secs(120);
        // Planning on a 2-core CPU can take longer than the default 30 s a
        // request may take; the test waits for the model, however slow.
        cfg.server.request_timeout = Duration::from_secs(300);
        cfg.planning.llm.max_tokens = max_tokens;
        cfg.planning.llm_tries = tries;
        cfg
    };

    let mut c = orchestrator(spawn_orchestrator(orchestrator_with(400, 2)).await).await;
    wait_serving_agents(&mut c, 3).await;
    let planning = c
        .plan(PlanRequest {
            spec: Some(goal(GOAL)),
        })
        .await
        .unwrap()
        .into_inner()
        .planned
        .and_then(|p| p.planning)
        .unwrap();
    assert!((1..=2).contains(&planning.tries.len()), "{planning:?}");
    for t in &planning.tries {
        assert_eq!(t.model, MODEL);
        assert!(t.prompt_tokens > 0 && t.completion_tokens > 0, "{t:?}");
        assert!(t.duration.is_some());
    }
    assert!(planning.tokens > 0);
    match planning.planner.as_str() {
        "llm:SmolLM2-135M-Instruct" => assert!(planning.tries.last().unwrap().accepted),
        "rules" => assert!(
            planning
                .tries
                .iter()
                .all(|t| !t.accepted && !t.errors.is_empty()),
            "{planning:?}"
        ),
        other => panic!("planned by {other}"),
    }
    // A refused first answer was sent back with its error.
    if planning.tries.len() == 2 {
        assert!(!planning.tries[0].accepted && !planning.tries[0].errors.is_empty());
    }

    // The invalid path, deterministically: 8 tokens cannot hold a plan.
    let mut c = orchestrator(spawn_orchestrator(orchestrator_with(8, 1)).await).await;
    wait_serving_agents(&mut c, 3).await;
    let events = run_all(&mut c, goal(GOAL)).await;
    let planning = planned(&events).planning.clone().unwrap();
    assert_eq!(planning.planner, "rules");
    assert!(
        planning.tries[0].errors[0].contains("cut off at max_tokens"),
        "{planning:?}"
    );
    assert_eq!(finished(&events).state(), RunState::Completed);
}
