//! The optional LLM backend against a small local server that speaks the
//! OpenAI chat-completions streaming protocol (HTTP/1.1 + server-sent
//! events). No real model is reachable here; the wire protocol is real.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use agentmesh_proto::json::{from_opt_struct, to_struct};
use agentmesh_proto::v1::{ExecuteTaskRequest, task_event::Event};
use agentmesh_summary::SummaryAgent;
use agentmesh_summary::llm::{LlmClient, LlmConfig};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;

fn metrics() -> Value {
    json!({
        "period": {"label": "Q2 2025", "start": "2025-04-01", "end": "2025-06-30"},
        "totals": {"revenue": 51_820_000.12, "cost": 37_200_000.0, "gross_margin_pct": 28.2, "units": 90_000, "orders": 16_194, "average_order_value": 3_200.0},
        "growth": {
            "vs_previous": {"label": "Q1 2025", "revenue": 44_180_000.0, "revenue_pct": 17.3},
            "vs_year_ago": {"label": "Q2 2024", "revenue": 44_060_000.0, "revenue_pct": 17.6, "gross_margin_pts": -0.7}
        },
        "breakdowns": {"region": [
            {"name": "North America", "revenue": 22_550_000.0, "share_pct": 43.5, "growth_vs_year_ago_pct": 15.1},
            {"name": "Latin America", "revenue": 2_350_000.0, "share_pct": 4.5, "growth_vs_year_ago_pct": -27.3}
        ]},
        "anomalies": [], "movers": {"top": [], "bottom": []}
    })
}

/// Serves one chat-completions request per connection, streaming `text`
/// in small pieces; records the request bodies.
async fn fake_model(text: &'static str, seen: Arc<Mutex<Vec<Value>>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read headers, then the body by Content-Length.
                let (head_end, len) = loop {
                    let n = sock.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "client closed early");
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                        assert!(head.starts_with("post /v1/chat/completions"), "{head}");
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map(|v| v.trim().parse::<usize>().unwrap())
                            .unwrap();
                        break (i + 4, len);
                    }
                };
                while buf.len() < head_end + len {
                    let n = sock.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body: Value = serde_json::from_slice(&buf[head_end..head_end + len]).unwrap();
                seen.lock().unwrap().push(body);
                sock.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n").await.unwrap();
                sock.write_all(b": keep-alive\n\n").await.unwrap();
                for piece in text.split_inclusive(' ') {
                    let event = json!({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": piece}}]});
                    sock.write_all(format!("data: {event}\n\n").as_bytes())
                        .await
                        .unwrap();
                }
                let usage = json!({"id": "c1", "object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": 300, "completion_tokens": 80, "total_tokens": 380}});
                sock.write_all(format!("data: {usage}\n\n").as_bytes())
                    .await
                    .unwrap();
                sock.write_all(b"data: [DONE]\n\n").await.unwrap();
                let _ = sock.shutdown().await;
            });
        }
    });
    addr
}

async fn run(agent: SummaryAgent) -> (Option<serde_json::Map<String, Value>>, String) {
    let (out, streamed, _) = run_counting(agent).await;
    (out, streamed)
}

/// `run`, and the tokens the task reported using.
async fn run_counting(
    agent: SummaryAgent,
) -> (Option<serde_json::Map<String, Value>>, String, u32) {
    let mut client = agentmesh_e2e::connect(agentmesh_e2e::spawn_agent(agent).await).await;
    let Value::Object(input) = json!({"metrics": metrics()}) else {
        panic!()
    };
    let mut stream = client
        .execute_task(ExecuteTaskRequest {
            task_id: "s1".into(),
            skill_id: "summary.write".into(),
            input: Some(to_struct(&input)),
            ..ExecuteTaskRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut streamed = String::new();
    let mut output = None;
    let mut tokens = 0;
    while let Some(ev) = stream.next().await {
        match ev.unwrap().event {
            Some(Event::Progress(p)) => {
                streamed.push_str(&p.text_delta);
                tokens += p.tokens_used;
            }
            Some(Event::Result(r)) => output = Some(from_opt_struct(r.output.as_ref())),
            _ => {}
        }
    }
    (output, streamed, tokens)
}

fn client(addr: SocketAddr) -> LlmClient {
    let cfg = LlmConfig {
        base_url: format!("http://{addr}/v1"),
        model: "test-model".into(),
        ..LlmConfig::default()
    };
    LlmClient::new(&cfg, Some("sk-test".into())).unwrap()
}

const FAITHFUL: &str = "**Q2 2025 revenue rose 17.6% year over year to $51.82M.**\n\n- North America delivered 43.5% of revenue.\n- Latin America fell 27.3% year over year.\n- Gross margin was 28.2%.\n\nRecommendation: protect margin while investigating Latin America.\n";

#[tokio::test]
async fn a_faithful_model_text_is_streamed_and_returned() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let addr = fake_model(FAITHFUL, Arc::clone(&seen)).await;
    let (out, streamed, tokens) = run_counting(SummaryAgent::with_llm(client(addr))).await;
    let out = out.expect("a result");
    assert_eq!(out["backend"], json!("llm"));
    assert_eq!(
        tokens, 380,
        "the model's usage is reported for the run's budget"
    );
    assert_eq!(out["markdown"], json!(FAITHFUL));
    assert_eq!(streamed, FAITHFUL, "tokens arrive as progress events");
    assert_eq!(out["findings"].as_array().unwrap().len(), 3);
    assert!(
        out["recommendation"]
            .as_str()
            .unwrap()
            .contains("Latin America")
    );
    let req = seen.lock().unwrap()[0].clone();
    assert_eq!(req["model"], json!("test-model"));
    assert_eq!(req["stream"], json!(true));
    assert_eq!(req["stream_options"]["include_usage"], json!(true));
    assert!(
        req["messages"][1]["content"]
            .as_str()
            .unwrap()
            .contains("$51.82M"),
        "facts are in the prompt"
    );
}

#[tokio::test]
async fn an_unfaithful_model_text_falls_back_to_the_deterministic_summary() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let addr = fake_model(
        "**Revenue hit $99.99M, up 42.0%.**\n- Great quarter.\n",
        seen,
    )
    .await;
    let (out, streamed) = run(SummaryAgent::with_llm(client(addr))).await;
    let out = out.expect("a result");
    assert!(
        !streamed.contains("$99.99M"),
        "unchecked model text never reaches clients: {streamed:?}"
    );
    assert_eq!(out["backend"], json!("deterministic"));
    let reason = out["fallback_reason"].as_str().unwrap();
    assert!(
        reason.contains("faithfulness") && reason.contains("$99.99M"),
        "{reason}"
    );
    assert_eq!(out["faithfulness"]["passed"], json!(true));
}

#[tokio::test]
async fn a_model_text_without_a_headline_falls_back() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let addr = fake_model("**\n\n**\n", seen).await;
    let (out, streamed) = run(SummaryAgent::with_llm(client(addr))).await;
    let out = out.expect("a result, not OUTPUT_INVALID");
    assert_eq!(out["backend"], json!("deterministic"));
    assert!(
        out["fallback_reason"]
            .as_str()
            .unwrap()
            .contains("no headline"),
        "{out:?}"
    );
    assert!(!out["headline"].as_str().unwrap().is_empty());
    assert!(streamed.is_empty(), "{streamed:?}");
}

#[tokio::test]
async fn an_unreachable_model_falls_back_with_the_reason() {
    // A bound-then-closed port: nothing listens there.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (out, _) = run(SummaryAgent::with_llm(client(addr))).await;
    let out = out.expect("a result");
    assert_eq!(out["backend"], json!("deterministic"));
    assert!(
        out["fallback_reason"]
            .as_str()
            .unwrap()
            .contains("request to the model failed")
    );
}
