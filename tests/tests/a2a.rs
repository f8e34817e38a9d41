//! Agent2Agent both ways, with the official A2A Python SDK as the peer:
//! its client drives the mesh's A2A facade over gRPC and over JSON-RPC, and
//! an A2A agent built with its server joins the mesh through
//! `[[discovery.a2a]]` and serves steps of runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use agentmesh_e2e::mesh::*;
use agentmesh_e2e::{a2a, free_port, spawn_agent, start_agents, start_process_env, temp_dir};
use agentmesh_orchestrator::config::A2aPeerConfig;
use agentmesh_proto::json::from_opt_struct;
use agentmesh_proto::v1::{
    EndpointHealth, GetRunRequest, ORCHESTRATOR_SERVICE_NAME, RunState, TaskState, WatchRunRequest,
    run_event::Event, task_event,
};
use serde_json::Value;

const GOAL: &str =
    "Generate a Q2 sales performance report with visualizations and an executive summary";

#[tokio::test]
async fn the_sdk_client_runs_the_goal_over_grpc_and_jsonrpc() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tmp = temp_dir("a2a-facade");
    let dir = tmp.path();
    let (mut children, data, analytics, summary) = start_agents(dir).await;
    let slow = TestAgent::new("slow", &["slow"]);
    let slow_seen = std::sync::Arc::clone(&slow.seen);
    let slow_addr = spawn_agent(slow).await;
    let grpc = free_port([127, 0, 0, 1]);
    let http = free_port([127, 0, 0, 1]);
    let mut args = Vec::new();
    for a in [data, analytics, summary, slow_addr] {
        args.extend(["--agent".to_string(), a.to_string()]);
    }
    let listen = http.to_string();
    children.push(
        start_process_env(
            "orchestrator",
            grpc,
            &args,
            &[("AGENTMESH_A2A__LISTEN", &listen)],
            dir,
            ORCHESTRATOR_SERVICE_NAME,
        )
        .await,
    );
    let mut client = orchestrator(grpc).await;
    wait_serving_agents(&mut client, 4).await;

    // The public card describes the mesh from its live skills.
    let card: Value = reqwest::get(format!("http://{http}/.well-known/agent-card.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let skills: Vec<&str> = card["skills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    for id in [
        "goal",
        "sales.extract",
        "analytics.charts",
        "summary.write",
        "slow",
    ] {
        assert!(skills.contains(&id), "{id} not in {skills:?}");
    }
    let bindings: Vec<&str> = card["supportedInterfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["protocolBinding"].as_str().unwrap())
        .collect();
    assert_eq!(bindings, ["JSONRPC", "GRPC"]);
    assert_eq!(card["capabilities"]["streaming"], true);

    let url = format!("http://{http}");
    for binding in ["GRPC", "JSONRPC"] {
        let cancelled_before = slow_seen.cancelled.load(Ordering::SeqCst);
        let seen = a2a::client(&url, binding, GOAL, "slow").await;

        // The goal streamed to the end, with the report's files.
        let goal = &seen["goal"];
        let states: Vec<&str> = goal["states"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        // The task first (submitted once its plan is stored: WORKING).
        assert_eq!(goal["first"], "task", "{binding}: {goal}");
        assert!(
            matches!(states[0], "TASK_STATE_SUBMITTED" | "TASK_STATE_WORKING"),
            "{binding}: {states:?}"
        );
        assert!(
            states.contains(&"TASK_STATE_WORKING"),
            "{binding}: {states:?}"
        );
        assert_eq!(
            states.last(),
            Some(&"TASK_STATE_COMPLETED"),
            "{binding}: {states:?}"
        );
        let files = goal["files"].as_object().unwrap();
        for name in ["report.html", "report.md", "report.json", "dataset.csv"] {
            assert_eq!(
                files[name]["complete"], true,
                "{binding}: {name} in {files:?}"
            );
            assert!(
                files[name]["bytes"].as_u64().unwrap() > 100,
                "{binding}: {name}"
            );
        }
        assert!(
            files.keys().filter(|n| n.ends_with(".svg")).count() >= 2,
            "{binding}: charts in {files:?}"
        );
        // The report itself as data: its title and who did what.
        let report = &files["report.json"];
        assert!(
            report["title"].as_str().unwrap().contains("Q2"),
            "{binding}: {report}"
        );
        assert_eq!(
            report["agents"],
            serde_json::json!(["analytics", "data", "summary"]),
            "{binding}: {report}"
        );
        // GetTask gives the same files; the run is an ordinary run.
        let task_id = goal["task_id"].as_str().unwrap();
        assert_eq!(goal["get_task"]["state"], "TASK_STATE_COMPLETED");
        assert_eq!(goal["get_task"]["run_state"], "RUN_STATE_COMPLETED");
        let mut names: Vec<&str> = files.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(goal["get_task"]["artifacts"], serde_json::json!(names));
        assert_eq!(
            goal["listed"],
            serde_json::json!([task_id]),
            "ListTasks by context"
        );
        let run = client
            .get_run(GetRunRequest {
                run_id: task_id.to_string(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(run.run.unwrap().state(), RunState::Completed);
        let report = run.finished.unwrap().report.unwrap();
        let html = files["report.html"]["bytes"].as_u64().unwrap();
        assert!(
            report.artifacts.iter().any(|a| a.name == "report.html"),
            "{binding}"
        );
        assert!(html > 1_000, "{binding}: report.html is {html} bytes");

        // A dropped stream, resumed with SubscribeToTask, to the end.
        let re = &seen["resubscribe"];
        assert_eq!(re["same_task"], true, "{binding}: {re}");
        assert_eq!(re["after"][0], "TASK_STATE_WORKING", "{binding}: {re}");
        assert_eq!(
            re["after"].as_array().unwrap().last().unwrap(),
            "TASK_STATE_COMPLETED",
            "{binding}: {re}"
        );
        assert_eq!(
            re["files"]["report.html"]["complete"], true,
            "{binding}: {re}"
        );

        // CancelTask cancels the run, and the agent's task with it.
        let cancel = &seen["cancel"];
        assert_eq!(
            cancel["state"], "TASK_STATE_CANCELED",
            "{binding}: {cancel}"
        );
        assert_eq!(
            cancel["get_task"], "TASK_STATE_CANCELED",
            "{binding}: {cancel}"
        );
        let run = client
            .get_run(GetRunRequest {
                run_id: cancel["task_id"].as_str().unwrap().to_string(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(run.run.unwrap().state(), RunState::Canceled);
        until(|| slow_seen.cancelled.load(Ordering::SeqCst) > cancelled_before).await;
    }
}

async fn until(cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met in 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_a2a_agent_joins_through_discovery_and_serves_steps() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tmp = temp_dir("a2a-peer");
    let addr = free_port([127, 0, 0, 1]);
    let agent = a2a::agent(addr, &tmp.path().join("agent.log")).await;
    let url = format!("http://{addr}");
    let mut cfg = test_config(&[]);
    cfg.discovery.a2a = vec![A2aPeerConfig {
        url: url.clone(),
        ..A2aPeerConfig::default()
    }];
    let orch = spawn_orchestrator(cfg).await;
    let mut client = orchestrator(orch).await;
    wait_serving_agents(&mut client, 1).await;

    // The card's skills are mesh skills; the extension gave their schemas.
    let ep = endpoints(&mut client).await.remove(0);
    assert_eq!(ep.address, url);
    assert_eq!(ep.source, "a2a");
    let card = ep.card.unwrap();
    assert_eq!(card.name, "shouter");
    let shout = card.skills.iter().find(|s| s.id == "shout").unwrap();
    assert_eq!(shout.produces, ["demo.shout"]);
    let input = from_opt_struct(shout.input_schema.as_ref());
    assert_eq!(input["required"], serde_json::json!(["text"]));

    // A step on the A2A agent: its artifact text is the output.
    let events = run_all(
        &mut client,
        spec(vec![step(
            "loud",
            "shout",
            serde_json::json!({"text": "hello mesh"}),
        )]),
    )
    .await;
    let f = finished(&events);
    assert_eq!(f.state(), RunState::Completed, "{f:?}");
    let done = step_completed(&events, "loud").clone();
    let output = from_opt_struct(done.output.as_ref());
    assert_eq!(output["text"], "HELLO MESH");
    assert!(!output["a2a_task_id"].as_str().unwrap().is_empty());
    let prov = done.provenance.unwrap();
    assert_eq!(
        (prov.agent.as_str(), prov.endpoint.as_str()),
        ("shouter", url.as_str())
    );
    // Its working status came through as the step's progress.
    assert!(
        events.iter().any(|e| matches!(&e.event, Some(Event::StepEvent(s)) if format!("{s:?}").contains("shouting 10 characters"))),
        "no progress from the A2A agent"
    );

    // An input the extension's schema refuses never reaches the agent.
    let refused = client
        .run(agentmesh_proto::v1::RunRequest {
            spec: Some(spec(vec![step(
                "loud",
                "shout",
                serde_json::json!({"text": ""}),
            )])),
            stream: None,
        })
        .await;
    match refused {
        Err(status) => assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}"),
        Ok(stream) => {
            let events: Vec<_> =
                tokio_stream::StreamExt::collect::<Vec<_>>(stream.into_inner()).await;
            let last = events.last().unwrap().as_ref().unwrap();
            let Some(Event::Finished(f)) = &last.event else {
                panic!("{last:?}")
            };
            assert_eq!(f.state(), RunState::Failed, "{f:?}");
            assert!(f.message.contains("text"), "{f:?}");
        }
    }

    // A task that asks for input pauses its step, which says so with the
    // question, until someone answers on the A2A side.
    let run_id = submit(
        &mut client,
        spec(vec![step(
            "greet",
            "ask",
            serde_json::json!({"text": "greet"}),
        )]),
    )
    .await;
    let mut stream = client
        .watch_run(WatchRunRequest {
            run_id: run_id.clone(),
            after_seq: 0,
            stream: None,
        })
        .await
        .unwrap()
        .into_inner();
    let question = loop {
        let ev = stream
            .message()
            .await
            .unwrap()
            .expect("the run ended without asking");
        if let Some(Event::StepEvent(s)) = &ev.event
            && let Some(task_event::Event::Status(st)) =
                s.event.as_ref().and_then(|e| e.event.as_ref())
            && st.state() == TaskState::InputRequired
        {
            break st.message.clone();
        }
    };
    assert!(
        question.contains("Which language should I greet in?"),
        "{question}"
    );
    let a2a_task = question
        .rsplit("[A2A task ")
        .next()
        .unwrap()
        .trim_end_matches(']')
        .to_string();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let waiting = client
        .get_run(GetRunRequest {
            run_id: run_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(waiting.run.unwrap().state(), RunState::Running);
    let answer = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "SendMessage",
        "params": {"message": {"messageId": "answer-1", "role": "ROLE_USER",
                               "taskId": a2a_task, "parts": [{"text": "French"}]}}
    });
    let resp: Value = reqwest::Client::new()
        .post(format!("{url}/"))
        .header("A2A-Version", "1.0")
        .json(&answer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(resp.get("error").is_none(), "{resp}");
    let mut rest = Vec::new();
    while let Some(ev) = stream.message().await.unwrap() {
        rest.push(ev);
    }
    let f = finished(&rest);
    assert_eq!(f.state(), RunState::Completed, "{f:?}");
    let greeting = from_opt_struct(step_completed(&rest, "greet").output.as_ref());
    assert_eq!(greeting["text"], "greeting in French");

    // An A2A task that fails fails the step, with the agent's reason.
    let events = run_all(
        &mut client,
        spec(vec![step("boom", "fail", serde_json::json!({"text": "x"}))]),
    )
    .await;
    let f = finished(&events);
    assert_eq!(f.state(), RunState::Failed, "{f:?}");
    let failed = events
        .iter()
        .find_map(|e| match &e.event {
            Some(Event::StepFailed(s)) => Some(s.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(failed.reason, "AGENT_FAILED", "{failed:?}");
    assert!(failed.message.contains("always fails"), "{failed:?}");

    // Its health is its card: gone, it is UNREACHABLE.
    drop(agent);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ep = endpoints(&mut client).await.remove(0);
        if ep.health() == EndpointHealth::Unreachable {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {:?}",
            ep.health()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
