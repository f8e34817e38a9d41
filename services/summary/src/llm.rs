//! Optional backend: any OpenAI-compatible chat-completions endpoint
//! (`POST {base_url}/chat/completions` with `"stream": true`, answered as
//! server-sent events). Tokens are streamed to the caller as they arrive;
//! the finished text must pass the same faithfulness check as the
//! deterministic writer, or the agent falls back to the deterministic
//! summary and says why.

use futures_util::StreamExt;
use serde_json::{Value, json};

pub use agentmesh_llm::{LlmClient, LlmConfig, LlmError, MAX_TEXT_BYTES};

/// Longest single SSE event accepted, in bytes.
const MAX_EVENT_BYTES: usize = 64 * 1024;

/// A finished answer: its text and the tokens the endpoint says it used
/// (0 when it does not say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The text.
    pub text: String,
    /// Prompt and answer tokens together.
    pub tokens: u32,
}

/// Asks `client`'s model for a summary of `metrics` using only `facts`, and
/// returns its text once the model is done. Nothing of it reaches the
/// task's clients here: the caller checks it first.
pub async fn summarize(
    client: &LlmClient,
    metrics: &Value,
    facts: &[String],
) -> Result<Answer, LlmError> {
    let period = metrics["period"]["label"].as_str().unwrap_or("the period");
    let body = json!({
        "model": client.model(),
        "stream": true,
        "stream_options": {"include_usage": true},
        "max_tokens": client.max_tokens(),
        "temperature": client.temperature(),
        "messages": [
            {"role": "system", "content": "You are a sales analyst writing for a sales director. Write an executive summary in Markdown: a bold headline, three to five bullet findings with numbers, risks, and one recommendation. Use only the figures listed, written exactly as given; do not compute new numbers."},
            {"role": "user", "content": format!("Period: {period}\nFigures:\n- {}\n\nMetrics (JSON):\n{}", facts.join("\n- "), metrics)}
        ]
    });
    let resp = client
        .post(&body)
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
    let mut tokens = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| LlmError::Request(e.to_string()))?;
        buf.extend_from_slice(&chunk);
        while let Some(end) = find_event_end(&buf) {
            let event: Vec<u8> = buf.drain(..end.0 + end.1).collect();
            let event = String::from_utf8_lossy(&event[..end.0]).into_owned();
            match parse_event(&event)? {
                Sse::Done => return finish(text, tokens),
                Sse::Delta(delta, used) => {
                    if text.len() + delta.len() > MAX_TEXT_BYTES {
                        return Err(LlmError::TooLong);
                    }
                    text.push_str(&delta);
                    tokens = tokens.max(used);
                }
                Sse::Ignore => {}
            }
        }
        if buf.len() > MAX_EVENT_BYTES {
            return Err(LlmError::Protocol(
                "an event exceeded the size limit".into(),
            ));
        }
    }
    // Some servers close without [DONE].
    finish(text, tokens)
}

fn finish(text: String, tokens: u32) -> Result<Answer, LlmError> {
    if text.trim().is_empty() {
        Err(LlmError::Empty)
    } else {
        Ok(Answer { text, tokens })
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
    /// Text, and the tokens used so far when the chunk says (the last one
    /// does, with `stream_options.include_usage`).
    Delta(String, u32),
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
    let tokens = v["usage"]["total_tokens"]
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0);
    Ok(Sse::Delta(
        v["choices"][0]["delta"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        tokens,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sse_chunks() {
        let e = r#"data: {"choices":[{"delta":{"content":"Hi"}}]}"#;
        assert!(matches!(parse_event(e), Ok(Sse::Delta(d, 0)) if d == "Hi"));
        let usage = r#"data: {"choices":[],"usage":{"total_tokens":321}}"#;
        assert!(matches!(parse_event(usage), Ok(Sse::Delta(d, 321)) if d.is_empty()));
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
