//! `meshctl conformance`: checks an agent, written in any gRPC language,
//! against the `agentmesh.v1.AgentService` contract (docs/PROTOCOL.md lists
//! every check).

mod checks;
mod stream;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::client::{CliError, Exit, Target, channel};
use crate::output::say;

/// What a check found.
#[derive(Debug)]
pub enum Verdict {
    /// The agent keeps the contract here.
    Pass(String),
    /// It does not: why.
    Fail(String),
    /// Not checked: why.
    Skip(String),
}

/// One named check and its verdict.
#[derive(Debug)]
pub struct Check {
    /// Stable id, for example `task.stream/sales.extract`.
    pub id: String,
    /// The verdict.
    pub verdict: Verdict,
}

impl Check {
    fn new(id: impl Into<String>, verdict: Verdict) -> Self {
        Self {
            id: id.into(),
            verdict,
        }
    }

    /// `("pass" | "fail" | "skip", detail)`.
    fn parts(&self) -> (&'static str, &str) {
        match &self.verdict {
            Verdict::Pass(d) => ("pass", d),
            Verdict::Fail(d) => ("fail", d),
            Verdict::Skip(d) => ("skip", d),
        }
    }
}

/// Parses `--input SKILL=JSON` and `--input SKILL=@FILE`.
fn parse_inputs(given: &[String]) -> Result<BTreeMap<String, Map<String, Value>>, CliError> {
    let usage = |m: String| CliError::new(Exit::Usage, m);
    let mut inputs = BTreeMap::new();
    for arg in given {
        let Some((skill, value)) = arg.split_once('=') else {
            return Err(usage(format!(
                "--input {arg:?}: expected SKILL=JSON or SKILL=@FILE"
            )));
        };
        let text = match value.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| usage(format!("--input {skill}: cannot read {path}: {e}")))?,
            None => value.to_string(),
        };
        let input = serde_json::from_str::<Map<String, Value>>(&text)
            .map_err(|e| usage(format!("--input {skill}: not a JSON object: {e}")))?;
        inputs.insert(skill.to_string(), input);
    }
    Ok(inputs)
}

/// `meshctl conformance ADDR`: runs every check, prints one line per check
/// (or JSON), and exits 1 if any failed.
pub async fn conformance(
    target: &Target,
    json: bool,
    given: &[String],
    task_timeout: Duration,
) -> Result<Exit, CliError> {
    let given = parse_inputs(given)?;
    let addr = target.addr.as_str();
    let channel = channel(target, "the agent", "").await?;
    let mut all = checks::health(&channel).await;
    all.push(checks::reflection(&channel).await);
    let mut agent = checks::agent(&channel);
    let (card_checks, card) = checks::card(&mut agent).await;
    all.extend(card_checks);
    let mut about = json!({"address": addr});
    match &card {
        Some(card) => {
            let inputs =
                checks::valid_inputs(card, &given).map_err(|e| CliError::new(Exit::Usage, e))?;
            let tasks = checks::Tasks {
                agent,
                card,
                inputs: &inputs,
                task_timeout,
                prefix: format!("conformance-{}", uuid::Uuid::new_v4()),
            };
            all.extend(tasks.run().await);
            about = json!({
                "address": addr, "name": card.card.name, "version": card.card.version,
                "protocol_version": card.card.protocol_version,
                "skills": card.card.skills.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
            });
        }
        None => all.push(Check::new(
            "task.*",
            Verdict::Skip("no card, so no skills to run".into()),
        )),
    }
    let count = |result: &str| all.iter().filter(|c| c.parts().0 == result).count();
    let (passed, failed, skipped) = (count("pass"), count("fail"), count("skip"));
    if json {
        let checks: Vec<Value> = all
            .iter()
            .map(|c| {
                let (result, detail) = c.parts();
                json!({"id": c.id, "result": result, "detail": detail})
            })
            .collect();
        say!(
            "{}",
            json!({
                "agent": about, "checks": checks,
                "passed": passed, "failed": failed, "skipped": skipped,
            })
        );
    } else {
        match &card {
            Some(c) => say!(
                "agent {} {} at {addr} ({} skills)",
                c.card.name,
                c.card.version,
                c.card.skills.len()
            ),
            None => say!("agent at {addr} (no card)"),
        }
        for check in &all {
            let (result, detail) = check.parts();
            say!("  {}  {}: {detail}", result.to_ascii_uppercase(), check.id);
        }
        say!("{passed} passed, {failed} failed, {skipped} skipped");
    }
    Ok(if failed == 0 { Exit::Ok } else { Exit::Failed })
}
