//! People in the loop from the terminal: `answer`, `approve`, `reject`,
//! `runs --waiting`, and the prompt `meshctl run` shows when its run waits
//! for a person (answers read line by line, shaped by the question's
//! JSON Schema).

use std::io::{BufRead, IsTerminal, Write};

use agentmesh_proto::json::{from_opt_struct, to_struct};
use agentmesh_proto::prost_types::Struct;
use agentmesh_proto::v1::orchestrator_service_client::OrchestratorServiceClient;
use agentmesh_proto::v1::{ProvideInputRequest, RunSummary, StepWaiting, WaitKind};
use agentmesh_runtime::auth::AuthChannel;
use serde_json::{Map, Value, json};

use crate::client::{CliError, Exit, Target, connect};
use crate::output::{self, say};

/// The answer given on the command line: a JSON object, @FILE, or text.
pub fn parse_answer(answer: Option<&str>, text: Option<String>) -> Result<Struct, CliError> {
    if let Some(text) = text {
        return Ok(to_struct(&object(json!({ "text": text }))));
    }
    let raw = answer.unwrap_or("{}");
    let body = match raw.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| CliError::new(Exit::Usage, format!("answer file {path}: {e}")))?,
        None => raw.to_string(),
    };
    match serde_json::from_str::<Value>(&body) {
        Ok(Value::Object(map)) => Ok(to_struct(&map)),
        Ok(_) => Err(CliError::new(
            Exit::Usage,
            "the answer must be a JSON object",
        )),
        Err(e) => Err(CliError::new(
            Exit::Usage,
            format!("the answer is not JSON: {e}"),
        )),
    }
}

/// The answer to an approval gate.
pub fn approval(approved: bool, reason: String) -> Struct {
    to_struct(&object(json!({ "approved": approved, "reason": reason })))
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// `meshctl answer|approve|reject`.
pub async fn answer(
    target: &Target,
    json: bool,
    run: &str,
    step: &str,
    answer: Struct,
) -> Result<Exit, CliError> {
    let mut client = connect(target).await?;
    let resp = client
        .provide_input(ProvideInputRequest {
            run_id: run.to_string(),
            step_id: step.to_string(),
            answer: Some(answer),
        })
        .await?
        .into_inner();
    let state = output::state_name(resp.state());
    if json {
        say!(
            "{}",
            json!({"run_id": run, "step": step, "seq": resp.seq, "state": state})
        );
    } else {
        say!("{run}: {step} answered; the run is {state}");
    }
    Ok(Exit::Ok)
}

/// `meshctl runs --waiting`: one line per waiting step.
pub fn print_waiting(runs: &[RunSummary]) {
    let rows: Vec<Vec<String>> = runs
        .iter()
        .flat_map(|r| {
            r.waiting.iter().map(move |w| {
                vec![
                    r.run_id.clone(),
                    w.step_id.clone(),
                    kind(w).to_string(),
                    output::ts(w.deadline.as_ref())
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    w.question.clone(),
                ]
            })
        })
        .collect();
    output::table(&["RUN", "STEP", "WAITS FOR", "UNTIL", "QUESTION"], &rows);
}

fn kind(w: &StepWaiting) -> &'static str {
    match w.kind() {
        WaitKind::Approval => "approval",
        _ => "answer",
    }
}

/// Whether `meshctl run` may ask at the terminal.
pub fn can_prompt() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Asks at the terminal what `wait` waits for and gives the answer;
/// another person may answer first (then nothing is sent). An answer the
/// schema refuses is asked again.
pub async fn prompt(
    client: &mut OrchestratorServiceClient<AuthChannel>,
    run_id: &str,
    wait: &StepWaiting,
) -> Result<(), CliError> {
    loop {
        let asked = wait.clone();
        let answer = tokio::task::spawn_blocking(move || read_answer(&asked))
            .await
            .map_err(|e| CliError::new(Exit::Failed, e.to_string()))?;
        let Some(answer) = answer else {
            eprintln!(
                "(left waiting: answer with `meshctl answer {run_id} {} ...`)",
                wait.step_id
            );
            return Ok(());
        };
        let sent = client
            .provide_input(ProvideInputRequest {
                run_id: run_id.to_string(),
                step_id: wait.step_id.clone(),
                answer: Some(to_struct(&answer)),
            })
            .await;
        match sent {
            Ok(_) => return Ok(()),
            Err(status) if status.code() == tonic::Code::InvalidArgument => {
                eprintln!("not accepted: {}", status.message());
            }
            Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                eprintln!("{}", status.message());
                return Ok(());
            }
            Err(status) => return Err(status.into()),
        }
    }
}

/// Reads one answer from stdin (None at end of input or an empty first
/// line).
fn read_answer(wait: &StepWaiting) -> Option<Map<String, Value>> {
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut ask = |prompt: &str| -> Option<String> {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        lines.next()?.ok().map(|l| l.trim().to_string())
    };
    eprintln!("\n{} waits for you: {}", wait.step_id, wait.question);
    if wait.kind() == WaitKind::Approval {
        if let Some(subject) = &wait.subject {
            let shown =
                serde_json::to_string_pretty(&from_opt_struct(Some(subject))).unwrap_or_default();
            eprintln!("{}", shown.chars().take(2_000).collect::<String>());
        }
        let yes = ask("approve? [y/n] ")?;
        if yes.is_empty() {
            return None;
        }
        let reason = ask("reason: ")?;
        return Some(object(json!({
            "approved": yes.to_ascii_lowercase().starts_with('y'),
            "reason": reason,
        })));
    }
    let schema = from_opt_struct(wait.answer_schema.as_ref());
    let Some(Value::Object(props)) = schema.get("properties") else {
        let raw = ask("answer (a JSON object): ")?;
        return serde_json::from_str(&raw).ok();
    };
    let mut answer = Map::new();
    for (name, prop) in props {
        let choices = prop
            .get("enum")
            .and_then(Value::as_array)
            .map(|e| {
                e.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .filter(|c| !c.is_empty())
            .map(|c| format!(" [{c}]"))
            .unwrap_or_default();
        let about = prop
            .get("description")
            .and_then(Value::as_str)
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        let raw = ask(&format!("{name}{about}{choices}: "))?;
        if raw.is_empty() {
            if answer.is_empty() && props.len() == 1 {
                return None;
            }
            continue;
        }
        let value = match prop.get("type").and_then(Value::as_str) {
            Some("string") | None => Value::String(raw),
            Some(_) => serde_json::from_str(&raw).unwrap_or(Value::String(raw)),
        };
        answer.insert(name.clone(), value);
    }
    Some(answer)
}
