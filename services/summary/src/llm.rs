//! Optional backend: any OpenAI-compatible chat-completions endpoint
//! (`POST {base_url}/chat/completions` with `"stream": true`, answered as
//! server-sent events). Tokens are streamed to the caller as they arrive;
//! the finished text must pass the same faithfulness check as the
//! deterministic writer, or the agent falls back to the deterministic
//! summary and says why.

use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use serde_with::{DurationMilliSeconds, serde_as};

/// Longest text accepted from the model, in bytes.
const MAX_TEXT_BYTES: usize = 32 * 1024;
/// Longest single SSE event accepted, in bytes.
const MAX_EVENT_BYTES: usize = 64 * 1024;

/// `[llm]`: the optional language-model backend. Off unless `base_url` and
/// `model` are set.
#[serde_as]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// e.g. `https://api.openai.com/v1` or `http://127.0.0.1:11434/v1`.
    /// Empty: the backend is off.
    pub base_url: String,
    /// Model name sent in the request.
    pub model: String,
    /// Name of the environment variable that holds the API key (read by the
    /// binary, never by the library).
    pub api_key_env: String,
    /// Whole-request time limit.
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(rename = "timeout_ms")]
    pub timeout: Duration,
    /// Connect time limit.
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(rename = "connect_timeout_ms")]
    pub connect_timeout: Duration,
    /// `max_tokens` sent to the model.
    pub max_tokens: u32,
    /// `temperature` sent to the model.
    pub temperature: f32,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            model: String::new(),
            api_key_env: "OPENAI_API_KEY".into(),
            timeout: Duration::from_millis(60_000),
            connect_timeout: Duration::from_millis(5_000),
            max_tokens: 700,
            temperature: 0.2,
        }
    }
}

impl LlmConfig {
    /// Whether the backend is configured.
    pub fn enabled(&self) -> bool {
        !self.base_url.trim().is_empty() && !self.model.trim().is_empty()
    }
}

/// Why the model gave no usable text.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(String),
    /// The request failed (connect, timeout, transport).
    #[error("request to the model failed: {0}")]
    Request(String),
    /// The endpoint answered with an error status.
    #[error("the model endpoint answered HTTP {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Start of the body.
        body: String,
    },
    /// The stream was not valid server-sent chat-completion chunks.
    #[error("unexpected response from the model: {0}")]
    Protocol(String),
    /// The text exceeded the size limit.
    #[error("the model's text exceeded {MAX_TEXT_BYTES} bytes")]
    TooLong,
    /// The model returned no text.
    #[error("the model returned no text")]
    Empty,
}

/// A client for one configured endpoint.
#[derive(Debug, Clone)]
pub struct LlmClient {
    http: reqwest::Client,
    url: String,
    model: String,
    api_key: Option<String>,
    max_tokens: u32,
    temperature: f32,
}

impl LlmClient {
    /// A client for `cfg`, with the API key the binary read.
    pub fn new(cfg: &LlmConfig, api_key: Option<String>) -> Result<Self, LlmError> {
        // rustls needs a process-wide crypto provider; installing it twice
        // is harmless (the second call reports the first one).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.connect_timeout)
            .build()
            .map_err(|e| LlmError::Client(e.to_string()))?;
        Ok(Self {
            http,
            url: format!("{}/chat/completions", cfg.base_url.trim_end_matches('/')),
            model: cfg.model.clone(),
            api_key: api_key.filter(|k| !k.is_empty()),
            max_tokens: cfg.max_tokens,
            temperature: cfg.temperature,
        })
    }

    /// Asks for a summary of `metrics` using only `facts`, and returns its
    /// text once the model is done. Nothing of it reaches the task's
    /// clients here: the caller checks it first.
    pub async fn summarize(&self, metrics: &Value, facts: &[String]) -> Result<String, LlmError> {
        let period = metrics["period"]["label"].as_str().unwrap_or("the period");
        let body = json!({
            "model": self.model,
            "stream": true,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "messages": [
                {"role": "system", "content": "You are a sales analyst writing for a sales director. Write an executive summary in Markdown: a bold headline, three to five bullet findings with numbers, risks, and one recommendation. Use only the figures listed, written exactly as given; do not compute new numbers."},
                {"role": "user", "content": format!("Period: {period}\nFigures:\n- {}\n\nMetrics (JSON):\n{}", facts.join("\n- "), metrics)}
            ]
        });
        let mut req = self.http.post(&self.url).json(&body);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| LlmError::Request(e.to_string()))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            return Err(LlmError::Status {
                status: status.as_u16(),
                body: text.chars().take(200).collect(),
            });
        }
        let mut stream = resp.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        let mut text = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| LlmError::Request(e.to_string()))?;
            buf.extend_from_slice(&chunk);
            while let Some(end) = find_event_end(&buf) {
                let event: Vec<u8> = buf.drain(..end.0 + end.1).collect();
                let event = String::from_utf8_lossy(&event[..end.0]).into_owned();
                match parse_event(&event)? {
                    Sse::Done => return finish(text),
                    Sse::Delta(delta) if !delta.is_empty() => {
                        if text.len() + delta.len() > MAX_TEXT_BYTES {
                            return Err(LlmError::TooLong);
                        }
                        text.push_str(&delta);
                    }
                    Sse::Delta(_) | Sse::Ignore => {}
                }
            }
            if buf.len() > MAX_EVENT_BYTES {
                return Err(LlmError::Protocol(
                    "an event exceeded the size limit".into(),
                ));
            }
        }
        // Some servers close without [DONE].
        finish(text)
    }
}

fn finish(text: String) -> Result<String, LlmError> {
    if text.trim().is_empty() {
        Err(LlmError::Empty)
    } else {
        Ok(text)
    }
}

/// Position and length of the first event separator (blank line).
fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

enum Sse {
    Delta(String),
    Done,
    Ignore,
}

fn parse_event(event: &str) -> Result<Sse, LlmError> {
    let data: Vec<&str> = event
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim_start)
        .collect();
    if data.is_empty() {
        return Ok(Sse::Ignore); // comments, keep-alives
    }
    let data = data.join("\n");
    if data.trim() == "[DONE]" {
        return Ok(Sse::Done);
    }
    let v: Value = serde_json::from_str(&data)
        .map_err(|e| LlmError::Protocol(format!("chunk is not JSON: {e}")))?;
    if let Some(err) = v.get("error") {
        return Err(LlmError::Protocol(format!(
            "the model reported an error: {err}"
        )));
    }
    Ok(Sse::Delta(
        v["choices"][0]["delta"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sse_chunks() {
        let e = r#"data: {"choices":[{"delta":{"content":"Hi"}}]}"#;
        assert!(matches!(parse_event(e), Ok(Sse::Delta(d)) if d == "Hi"));
        assert!(matches!(parse_event("data: [DONE]"), Ok(Sse::Done)));
        assert!(matches!(parse_event(": keep-alive"), Ok(Sse::Ignore)));
        assert!(parse_event("data: {not json").is_err());
        assert_eq!(find_event_end(b"data: x\r\n\r\nrest"), Some((7, 4)));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// Whatever a server streams: an event boundary inside the buffer,
        /// and each event read or refused as a protocol error, no panic.
        #[test]
        fn any_stream_bytes_are_split_and_read_without_panic(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::prelude::Just(b'\n'),
                    proptest::prelude::Just(b'\r'),
                    proptest::prelude::any::<u8>(),
                ],
                0..200,
            ),
        ) {
            if let Some((at, len)) = find_event_end(&bytes) {
                proptest::prop_assert!(at + len <= bytes.len());
            }
            let text = String::from_utf8_lossy(&bytes);
            match parse_event(&text) {
                Ok(_) => {}
                Err(LlmError::Protocol(why)) => proptest::prop_assert!(!why.is_empty()),
                Err(other) => proptest::prop_assert!(false, "{other:?}"),
            }
        }

        #[test]
        fn any_data_line_is_read_or_refused(data in ".{0,60}") {
            let event = format!("data: {data}");
            if let Err(LlmError::Protocol(why)) = parse_event(&event) {
                proptest::prop_assert!(!why.is_empty());
            }
        }
    }
}
