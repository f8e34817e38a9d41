//! The one client of OpenAI-compatible chat-completions endpoints
//! (`POST {base_url}/chat/completions`) that agentmesh uses: its
//! configuration (`[llm]` tables), the HTTP client (timeouts, bearer key,
//! rustls with the platform's roots), and structured answers constrained
//! by a JSON Schema (`response_format`). Streaming readers (the summary
//! agent's) build on [`LlmClient::post`].

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use serde_with::{DurationMilliSeconds, serde_as};

/// Longest answer accepted from a model, in bytes.
pub const MAX_TEXT_BYTES: usize = 32 * 1024;

/// An `[llm]` table: which endpoint and model, and the limits of a call.
/// Off unless `base_url` and `model` are set.
#[serde_as]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// e.g. `https://api.openai.com/v1` or `http://127.0.0.1:11434/v1`.
    /// Empty: off.
    pub base_url: String,
    /// Model name sent in the request.
    pub model: String,
    /// Name of the environment variable that holds the API key (read by the
    /// binary, never by a library).
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
    /// Whether an endpoint is configured.
    pub fn enabled(&self) -> bool {
        !self.base_url.trim().is_empty() && !self.model.trim().is_empty()
    }
}

/// Why a model gave no usable answer.
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
    /// The answer was not a chat completion.
    #[error("unexpected response from the model: {0}")]
    Protocol(String),
    /// The text exceeded the size limit.
    #[error("the model's text exceeded {MAX_TEXT_BYTES} bytes")]
    TooLong,
    /// The model returned no text.
    #[error("the model returned no text")]
    Empty,
    /// The model declined to answer.
    #[error("the model refused: {0}")]
    Refused(String),
}

/// A structured answer.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The answer's text (JSON, when a schema was asked for; not checked).
    pub content: String,
    /// `length` when the answer was cut off at `max_tokens`.
    pub finish_reason: String,
    /// Tokens of the prompt, as the endpoint counted them.
    pub prompt_tokens: u32,
    /// Tokens of the answer.
    pub completion_tokens: u32,
}

/// A client of one configured endpoint.
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

    /// The model's name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// `max_tokens` of each call.
    pub fn max_tokens(&self) -> u32 {
        self.max_tokens
    }

    /// `temperature` of each call.
    pub fn temperature(&self) -> f32 {
        self.temperature
    }

    /// A request of `body` to the endpoint, with the key.
    pub fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        let req = self.http.post(&self.url).json(body);
        match &self.api_key {
            Some(key) => req.bearer_auth(key),
            None => req,
        }
    }

    /// Asks for one answer to `messages` that follows `schema` (JSON
    /// Schema, sent as `response_format`), and returns it unchecked.
    pub async fn chat_json(
        &self,
        messages: &[Value],
        schema_name: &str,
        schema: &Value,
    ) -> Result<Completion, LlmError> {
        let body = json!({
            "model": self.model,
            "stream": false,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "messages": messages,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": schema_name, "schema": schema, "strict": false}
            }
        });
        let resp = self
            .post(&body)
            .send()
            .await
            .map_err(|e| LlmError::Request(e.to_string()))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| LlmError::Request(e.to_string()))?;
        if !status.is_success() {
            return Err(LlmError::Status {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            });
        }
        if bytes.len() > 4 * MAX_TEXT_BYTES {
            return Err(LlmError::TooLong);
        }
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| LlmError::Protocol(format!("the response is not JSON: {e}")))?;
        read_completion(&v)
    }
}

/// Reads a (non-streamed) chat completion.
pub fn read_completion(v: &Value) -> Result<Completion, LlmError> {
    if let Some(err) = v.get("error") {
        return Err(LlmError::Protocol(format!(
            "the model reported an error: {err}"
        )));
    }
    let choice = v
        .pointer("/choices/0")
        .ok_or_else(|| LlmError::Protocol("no choices in the answer".into()))?;
    if let Some(refusal) = choice
        .pointer("/message/refusal")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
    {
        return Err(LlmError::Refused(refusal.chars().take(500).collect()));
    }
    let content = choice
        .pointer("/message/content")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if content.len() > MAX_TEXT_BYTES {
        return Err(LlmError::TooLong);
    }
    if content.trim().is_empty() {
        return Err(LlmError::Empty);
    }
    let tokens = |k: &str| {
        v.pointer(&format!("/usage/{k}"))
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0)
    };
    Ok(Completion {
        content: content.to_string(),
        finish_reason: choice["finish_reason"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        prompt_tokens: tokens("prompt_tokens"),
        completion_tokens: tokens("completion_tokens"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completion_is_read_with_its_usage_and_a_refusal_is_an_error() {
        let v = json!({
            "choices": [{"message": {"content": "{\"steps\": []}"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 9}
        });
        let c = read_completion(&v).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((c.prompt_tokens, c.completion_tokens), (120, 9));
        assert_eq!(c.finish_reason, "stop");
        let refused = json!({"choices": [{"message": {"content": null, "refusal": "I can't"}}]});
        assert!(matches!(read_completion(&refused), Err(LlmError::Refused(r)) if r == "I can't"));
        let empty = json!({"choices": [{"message": {"content": "  "}}]});
        assert!(matches!(read_completion(&empty), Err(LlmError::Empty)));
        assert!(matches!(
            read_completion(&json!({})),
            Err(LlmError::Protocol(_))
        ));
    }
}
