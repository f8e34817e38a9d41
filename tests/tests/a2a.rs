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
        let started_before = slow_seen.started.load(Ordering::SeqCst);
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
        // Every slow task the agent started was stopped. On a loaded
        // machine the cancel can come before the attempt reached the agent;
        // then no task started, and none may start later.
        tokio::time::sleep(Duration::from_millis(500)).await;
        until(|| {
            let started = slow_seen.started.load(Ordering::SeqCst) - started_before;
            let stopped = slow_seen.cancelled.load(Ordering::SeqCst) - cancelled_before;
            started <= 1 && started == stopped
        })
        .await;
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

    // A task that asks for input pauses its step (the run WAITING, with the
    // question), until someone answers on the A2A side.
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
    // The run waits for a person, the question shown with it.
    let waiting = waiting.run.unwrap();
    assert_eq!(waiting.state(), RunState::Waiting);
    assert!(
        waiting.waiting[0]
            .question
            .contains("Which language should I greet in?"),
        "{waiting:?}"
    );
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

/// A JSON-RPC call to the facade at `http`, with `token` (if any) and the
/// `A2A-Version` header (if any).
async fn rpc(
    http: std::net::SocketAddr,
    token: Option<&str>,
    version: Option<&str>,
    method: &str,
    params: Value,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("http://{http}/"))
        .json(&serde_json::json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(version) = version {
        req = req.header("A2A-Version", version);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn the_facade_honours_authentication_authorization_and_versions() {
    use agentmesh_runtime::auth::AuthConfig;
    use agentmesh_runtime::auth::tokens::hash_hex;
    const ALICE: &str = "alice-a2a-token-0c2e4a6b8d0f2a4c6e8b0d2f4a6c8e0b";
    const BOB: &str = "bob-a2a-token-7d9f1b3c5e7a9c1e3b5d7f9a1c3e5b7d";
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tmp = temp_dir("a2a-auth");
    let tokens = tmp.path().join("tokens.toml");
    let entry = |token: &str, principal: &str| {
        format!(
            "[[tokens]]\nsha256 = \"{}\"\nprincipal = \"{principal}\"\nroles = [\"submit\"]\n",
            hash_hex(token)
        )
    };
    std::fs::write(&tokens, entry(ALICE, "alice") + &entry(BOB, "bob")).unwrap();
    let worker = spawn_agent(TestAgent::new("work", &["work"])).await;
    let mut cfg = test_config(&[worker]);
    cfg.server.auth = Some(AuthConfig {
        tokens_file: Some(tokens),
        ..AuthConfig::default()
    });
    let http = free_port([127, 0, 0, 1]);
    cfg.a2a.listen = Some(http);
    let orch = spawn_orchestrator(cfg).await;
    let card_url = format!("http://{http}/.well-known/agent-card.json");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let card: Value = loop {
        if let Ok(resp) = reqwest::get(&card_url).await {
            break resp.json().await.unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "no card");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The card is public and declares the scheme the calls need.
    assert_eq!(
        card["securitySchemes"]["bearer"]["httpAuthSecurityScheme"]["scheme"], "Bearer",
        "{card}"
    );
    assert_eq!(
        card["securityRequirements"][0]["schemes"]["bearer"],
        serde_json::json!({"list": []}),
        "{card}"
    );
    assert_eq!(card["capabilities"]["extendedAgentCard"], true);

    let plan = serde_json::json!({"plan": {"steps": [{"id": "w", "skill": "work", "input": {"value": 1}}]}});
    let send = serde_json::json!({
        "message": {"messageId": "m-1", "role": "ROLE_USER", "parts": [{"text": "work"}, {"data": plan}]},
        "configuration": {"returnImmediately": true}
    });

    // No token: 401 before the call is read, with the scheme to use.
    let resp = rpc(http, None, Some("1.0"), "SendMessage", send.clone()).await;
    assert_eq!(resp.status(), reqwest::StatusCode::UNAUTHORIZED);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let resp = rpc(
        http,
        Some("not-a-token"),
        Some("1.0"),
        "SendMessage",
        send.clone(),
    )
    .await;
    assert_eq!(resp.status(), reqwest::StatusCode::UNAUTHORIZED);

    // No A2A-Version: read as 0.3, which is not served.
    let body: Value = rpc(http, Some(ALICE), None, "SendMessage", send.clone())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["error"]["code"], -32009, "{body}");

    // Alice's task is hers: Bob is told it does not exist.
    let body: Value = rpc(http, Some(ALICE), Some("1.0"), "SendMessage", send.clone())
        .await
        .json()
        .await
        .unwrap();
    let task_id = body["result"]["task"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_string();
    assert_eq!(
        body["result"]["task"]["metadata"]["agentmesh"]["owner"], "alice",
        "{body}"
    );
    let get = serde_json::json!({"id": task_id});
    let body: Value = rpc(http, Some(BOB), Some("1.0"), "GetTask", get.clone())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["error"]["code"], -32001, "{body}");
    let body: Value = rpc(http, Some(ALICE), Some("1.0"), "GetTask", get)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["result"]["id"], task_id.as_str(), "{body}");

    // A bad plan is INVALID_PARAMS naming the field, with the mesh's reason.
    let bad = serde_json::json!({
        "message": {"messageId": "m-2", "role": "ROLE_USER",
                    "parts": [{"data": {"parameters": {"deliverables": ["poems"]}}}]}
    });
    let body: Value = rpc(http, Some(ALICE), Some("1.0"), "SendMessage", bad)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["error"]["code"], -32602, "{body}");
    let text = body["error"].to_string();
    assert!(
        text.contains("deliverables") && text.contains("INVALID_INPUT"),
        "{text}"
    );

    // The extended card, for an authenticated caller.
    let body: Value = rpc(
        http,
        Some(BOB),
        Some("1.0"),
        "GetExtendedAgentCard",
        serde_json::json!({}),
    )
    .await
    .json()
    .await
    .unwrap();
    let skills = body["result"]["skills"].to_string();
    assert!(skills.contains("served by work at"), "{body}");

    // The gRPC binding refuses a call without a credential.
    let channel = tonic::transport::Channel::from_shared(format!("http://{orch}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = a2a_pb::proto::a2a_service_client::A2aServiceClient::new(channel);
    let status = grpc
        .get_task(a2a_pb::proto::GetTaskRequest {
            id: task_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    let mut req = tonic::Request::new(a2a_pb::proto::GetTaskRequest {
        id: task_id.clone(),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("authorization", format!("Bearer {ALICE}").parse().unwrap());
    req.metadata_mut()
        .insert("a2a-version", "1.0".parse().unwrap());
    let task = grpc.get_task(req).await.unwrap().into_inner();
    assert_eq!(task.id, task_id);
}

#[tokio::test]
async fn with_server_tls_the_a2a_listener_serves_https() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tmp = temp_dir("a2a-tls");
    let pki = agentmesh_e2e::pki::Pki::create(tmp.path());
    let mut cfg = test_config(&[]);
    cfg.server.tls = Some(agentmesh_runtime::tls::ServerTls {
        cert: pki.server_cert.clone(),
        key: pki.server_key.clone(),
        client_ca: None,
    });
    let http = free_port([127, 0, 0, 1]);
    cfg.a2a.listen = Some(http);
    spawn_orchestrator(cfg).await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&pki.ca).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap();
    let url = format!(
        "https://localhost:{}/.well-known/agent-card.json",
        http.port()
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let card: Value = loop {
        if let Ok(resp) = client.get(&url).send().await {
            break resp.json().await.unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "no card over https");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The card names https addresses; plaintext HTTP is not served.
    let urls = card["supportedInterfaces"].to_string();
    assert!(
        urls.contains(&format!("https://127.0.0.1:{}/", http.port())),
        "{urls}"
    );
    let plain = reqwest::get(format!(
        "http://127.0.0.1:{}/.well-known/agent-card.json",
        http.port()
    ))
    .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}
