//! A scripted server that speaks the OpenAI chat-completions wire protocol
//! (`POST /v1/chat/completions`, answered as one JSON completion), for
//! tests of the LLM planner: each request gets the next scripted answer
//! (the last one repeats), and every request body is kept.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A completion with this text, `finish_reason` "stop".
    Text(String),
    /// A completion cut off at `max_tokens` (`finish_reason` "length").
    Cut(String),
    /// The model declines (`message.refusal`).
    Refusal(String),
    /// Nothing for this long, then this text.
    Slow(Duration, String),
    /// An HTTP error status.
    Status(u16),
}

/// The server's address and the request bodies it received.
pub struct Scripted {
    /// Where it listens; the base URL is `http://{addr}/v1`.
    pub addr: SocketAddr,
    /// Every request body, in order.
    pub seen: Arc<Mutex<Vec<Value>>>,
}

impl Scripted {
    /// The base URL to configure.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The request bodies so far.
    pub fn requests(&self) -> Vec<Value> {
        self.seen.lock().unwrap().clone()
    }
}

fn completion(content: Option<&str>, refusal: Option<&str>, finish: &str) -> Value {
    json!({
        "id": "chatcmpl-scripted", "object": "chat.completion", "model": "scripted-model",
        "choices": [{"index": 0, "finish_reason": finish,
                     "message": {"role": "assistant", "content": content, "refusal": refusal}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}
    })
}

/// Starts a server answering with `script`.
pub async fn scripted(script: Vec<Answer>) -> Scripted {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        let mut next = 0usize;
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let answer = script[next.min(script.len() - 1)].clone();
            next += 1;
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let (head_end, len) = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                        assert!(head.starts_with("post /v1/chat/completions"), "{head}");
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                        break (i + 4, len);
                    }
                };
                while buf.len() < head_end + len {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body: Value = serde_json::from_slice(&buf[head_end..head_end + len]).unwrap();
                log.lock().unwrap().push(body);
                let (status, reply) = match answer {
                    Answer::Text(t) => (200, completion(Some(&t), None, "stop")),
                    Answer::Cut(t) => (200, completion(Some(&t), None, "length")),
                    Answer::Refusal(r) => (200, completion(None, Some(&r), "stop")),
                    Answer::Slow(wait, t) => {
                        tokio::time::sleep(wait).await;
                        (200, completion(Some(&t), None, "stop"))
                    }
                    Answer::Status(code) => {
                        (code, json!({"error": {"message": "scripted failure"}}))
                    }
                };
                let text = reply.to_string();
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    text.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(text.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    Scripted { addr, seen }
}
