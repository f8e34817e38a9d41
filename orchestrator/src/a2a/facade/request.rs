//! An A2A message as a run: its text parts are the goal; a data part may
//! carry `parameters` (RunParameters), an explicit `plan` (PlanSpec),
//! `fanIn` and `deadline`, in the proto3 JSON names of the Orchestrator API
//! (camelCase; snake_case is accepted too).

use std::time::Duration;

use a2a::{A2AError, Message, PartContent};
use agentmesh_proto::json::to_struct;
use agentmesh_proto::prost_types::Duration as PbDuration;
use agentmesh_proto::v1::{
    ApprovalGate, Deliverable, FanInPolicy, PlanSpec, PlanStep, RunParameters, RunSpec,
    StepExpectations, StepInputRef,
};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::errors::invalid;

/// Separates the parts of an idempotency key made from A2A ids.
const KEY_SEPARATOR: char = '\u{1}';
/// Prefix of the idempotency keys of runs started through A2A.
const KEY_PREFIX: &str = "a2a";

/// The run a message asks for, under an idempotency key made of its
/// context and message ids (a resent message is the same run).
pub fn run_spec(message: &Message, context_id: &str) -> Result<RunSpec, A2AError> {
    if message.message_id.is_empty() {
        return Err(invalid("message.messageId", "messageId is required"));
    }
    let goal = message
        .parts
        .iter()
        .filter_map(|p| match &p.content {
            PartContent::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut data = RunData::default();
    let mut seen_data = false;
    for part in &message.parts {
        match &part.content {
            PartContent::Text(_) => {}
            PartContent::Data(value) => {
                if seen_data {
                    return Err(invalid(
                        "message.parts",
                        "send at most one data part (parameters, plan, fanIn, deadline)",
                    ));
                }
                seen_data = true;
                data = RunData::deserialize(value).map_err(|e| {
                    invalid("message.parts.data", format!("not a run description: {e}"))
                })?;
            }
            PartContent::Raw(_) | PartContent::Url(_) => {
                return Err(A2AError::content_type_not_supported());
            }
        }
    }
    let plan = data.plan.map(PlanJson::into_spec).transpose()?;
    let parameters = data.parameters.map(ParamsJson::into_spec).transpose()?;
    let fan_in = match data.fan_in.as_deref() {
        None | Some("" | "FAN_IN_POLICY_UNSPECIFIED") => FanInPolicy::Unspecified,
        Some(name) => FanInPolicy::from_str_name(name).ok_or_else(|| {
            invalid(
                "message.parts.data.fanIn",
                format!("unknown fan-in policy {name:?}"),
            )
        })?,
    };
    let deadline = data
        .deadline
        .as_deref()
        .map(|d| parse_duration(d, "message.parts.data.deadline"))
        .transpose()?;
    Ok(RunSpec {
        goal,
        parameters,
        plan,
        fan_in: fan_in.into(),
        deadline,
        idempotency_key: key(context_id, &message.message_id),
    })
}

/// The idempotency key of a message in a context.
pub fn key(context_id: &str, message_id: &str) -> String {
    format!("{KEY_PREFIX}{KEY_SEPARATOR}{context_id}{KEY_SEPARATOR}{message_id}")
}

/// The context id a run's stored idempotency key carries, if it was
/// started through A2A (the key may be scoped to its owner first).
pub fn context_of(stored_key: &str) -> Option<&str> {
    let key = stored_key.rsplit('\0').next()?;
    let mut parts = key.split(KEY_SEPARATOR);
    (parts.next()? == KEY_PREFIX).then_some(())?;
    parts.next()
}

/// A proto3 JSON duration at `field`: `"30s"`, `"1.5s"`.
fn parse_duration(text: &str, field: &str) -> Result<PbDuration, A2AError> {
    let bad = || invalid(field, format!("{text:?} is not a duration such as \"30s\""));
    let secs: f64 = text
        .strip_suffix('s')
        .ok_or_else(bad)?
        .parse()
        .map_err(|_| bad())?;
    let d = Duration::try_from_secs_f64(secs).map_err(|_| bad())?;
    PbDuration::try_from(d).map_err(|_| bad())
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RunData {
    parameters: Option<ParamsJson>,
    plan: Option<PlanJson>,
    #[serde(alias = "fan_in")]
    fan_in: Option<String>,
    deadline: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct ParamsJson {
    period: String,
    regions: Vec<String>,
    countries: Vec<String>,
    #[serde(alias = "product_lines")]
    product_lines: Vec<String>,
    channels: Vec<String>,
    deliverables: Vec<String>,
    #[serde(alias = "compare_previous")]
    compare_previous: Option<bool>,
    #[serde(alias = "compare_year_ago")]
    compare_year_ago: Option<bool>,
    #[serde(alias = "token_budget")]
    token_budget: Option<u32>,
    #[serde(alias = "compare_period")]
    compare_period: String,
}

impl ParamsJson {
    fn into_spec(self) -> Result<RunParameters, A2AError> {
        let deliverables = self
            .deliverables
            .iter()
            .map(|name| {
                Deliverable::from_str_name(name)
                    .or_else(|| {
                        Deliverable::from_str_name(&format!(
                            "DELIVERABLE_{}",
                            name.to_ascii_uppercase()
                        ))
                    })
                    .map(i32::from)
                    .ok_or_else(|| {
                        invalid(
                            "message.parts.data.parameters.deliverables",
                            format!("unknown deliverable {name:?}"),
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(RunParameters {
            period: self.period,
            regions: self.regions,
            countries: self.countries,
            product_lines: self.product_lines,
            channels: self.channels,
            deliverables,
            compare_previous: self.compare_previous,
            compare_year_ago: self.compare_year_ago,
            token_budget: self.token_budget,
            compare_period: self.compare_period,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanJson {
    steps: Vec<StepJson>,
}

impl PlanJson {
    fn into_spec(self) -> Result<PlanSpec, A2AError> {
        let steps = self
            .steps
            .into_iter()
            .map(StepJson::into_spec)
            .collect::<Result<_, _>>()?;
        Ok(PlanSpec { steps })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StepJson {
    id: String,
    #[serde(default)]
    skill: String,
    #[serde(default)]
    approval: Option<ApprovalJson>,
    #[serde(default)]
    input: Map<String, Value>,
    #[serde(default)]
    refs: Vec<RefJson>,
    #[serde(default, alias = "artifacts_from")]
    artifacts_from: Vec<String>,
    #[serde(default, alias = "depends_on")]
    depends_on: Vec<String>,
    #[serde(default)]
    rationale: String,
    #[serde(default)]
    expect: Option<ExpectJson>,
    #[serde(default)]
    deadline: Option<String>,
    #[serde(default, alias = "max_attempts")]
    max_attempts: u32,
}

/// An approval gate: `{"prompt": "...", "timeout": "3600s"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalJson {
    #[serde(default)]
    prompt: String,
    #[serde(default)]
    timeout: Option<String>,
}

impl StepJson {
    fn into_spec(self) -> Result<PlanStep, A2AError> {
        let approval = self
            .approval
            .map(|a| -> Result<ApprovalGate, A2AError> {
                Ok(ApprovalGate {
                    prompt: a.prompt,
                    timeout: a
                        .timeout
                        .as_deref()
                        .map(|d| {
                            parse_duration(d, "message.parts.data.plan.steps.approval.timeout")
                        })
                        .transpose()?,
                })
            })
            .transpose()?;
        let deadline = self
            .deadline
            .as_deref()
            .map(|d| parse_duration(d, "message.parts.data.plan.steps.deadline"))
            .transpose()?;
        Ok(PlanStep {
            id: self.id,
            skill: self.skill,
            approval,
            input: Some(to_struct(&self.input)),
            refs: self
                .refs
                .into_iter()
                .map(|r| StepInputRef {
                    field: r.field,
                    from_step: r.from_step,
                    pointer: r.pointer,
                })
                .collect(),
            artifacts_from: self.artifacts_from,
            depends_on: self.depends_on,
            rationale: self.rationale,
            expect: self.expect.map(|e| StepExpectations {
                non_empty: e.non_empty,
                min_svg_artifacts: e.min_svg_artifacts,
                faithful_text: e.faithful_text,
            }),
            deadline,
            max_attempts: self.max_attempts,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RefJson {
    field: String,
    #[serde(alias = "from_step")]
    from_step: String,
    #[serde(default)]
    pointer: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
#[derive(Default)]
struct ExpectJson {
    #[serde(alias = "non_empty")]
    non_empty: Vec<String>,
    #[serde(alias = "min_svg_artifacts")]
    min_svg_artifacts: u32,
    #[serde(alias = "faithful_text")]
    faithful_text: String,
}

/// The answer an A2A message to an input-required task carries for the
/// wait `input_id` asks: its data part (a JSON object) as it is; else its
/// text, which for an approval gate approves when it begins with
/// "approve" or "yes" (the whole text is the reason) and for a question
/// is `{"text": ...}`.
pub fn answer(message: &Message, input_id: &str) -> Result<Map<String, Value>, A2AError> {
    let mut text = Vec::new();
    for part in &message.parts {
        match &part.content {
            PartContent::Data(Value::Object(answer)) => return Ok(answer.clone()),
            PartContent::Data(_) => {
                return Err(invalid("message.parts.data", "an answer is a JSON object"));
            }
            PartContent::Text(t) => text.push(t.as_str()),
            PartContent::Raw(_) | PartContent::Url(_) => {
                return Err(A2AError::content_type_not_supported());
            }
        }
    }
    let text = text.join("\n");
    let mut answer = Map::new();
    if input_id == crate::run::waiting::APPROVAL {
        let said = text.trim_start().to_ascii_lowercase();
        let approved = said.starts_with("approve") || said.starts_with("yes");
        answer.insert("approved".into(), Value::Bool(approved));
        answer.insert("reason".into(), Value::String(text));
    } else {
        answer.insert("text".into(), Value::String(text));
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use a2a::{Part, Role};
    use serde_json::json;

    fn message(parts: Vec<Part>) -> Message {
        let mut m = Message::new(Role::User, parts);
        m.message_id = "m-1".into();
        m
    }

    #[test]
    fn text_is_the_goal_and_data_the_parameters() {
        let m = message(vec![
            Part::text("Generate a Q2 sales report"),
            Part::data(
                json!({"parameters": {"period": "2025-Q2", "regions": ["EMEA"],
                "deliverables": ["DELIVERABLE_SUMMARY", "charts"], "compareYearAgo": true},
                "fanIn": "FAN_IN_POLICY_BEST_EFFORT", "deadline": "90s"}),
            ),
        ]);
        let spec = run_spec(&m, "ctx").unwrap();
        assert_eq!(spec.goal, "Generate a Q2 sales report");
        let p = spec.parameters.unwrap();
        assert_eq!(p.period, "2025-Q2");
        assert_eq!(p.regions, ["EMEA"]);
        assert_eq!(
            p.deliverables,
            [Deliverable::Summary as i32, Deliverable::Charts as i32]
        );
        assert_eq!(p.compare_year_ago, Some(true));
        assert_eq!(spec.fan_in, FanInPolicy::BestEffort as i32);
        assert_eq!(spec.deadline.unwrap().seconds, 90);
        assert_eq!(context_of(&spec.idempotency_key), Some("ctx"));
        assert_eq!(
            context_of(&format!("alice\0{}", spec.idempotency_key)),
            Some("ctx")
        );
        assert_eq!(context_of("a client's own key"), None);
    }

    #[test]
    fn an_explicit_plan_is_read_in_proto_json() {
        let m = message(vec![Part::data(json!({"plan": {"steps": [
            {"id": "a", "skill": "echo", "input": {"text": "hi"}},
            {"id": "b", "skill": "shout", "dependsOn": ["a"],
             "refs": [{"field": "text", "fromStep": "a", "pointer": "/text"}]}
        ]}}))]);
        let plan = run_spec(&m, "c").unwrap().plan.unwrap();
        assert_eq!(plan.steps.len(), 2);
        assert_eq!(plan.steps[1].depends_on, ["a"]);
        assert_eq!(plan.steps[1].refs[0].from_step, "a");
    }

    #[test]
    fn bad_data_names_the_field() {
        for (data, field) in [
            (
                json!({"parameters": {"deliverables": ["poems"]}}),
                "deliverables",
            ),
            (json!({"deadline": "soon"}), "deadline"),
            (json!({"fanIn": "MOST"}), "fanIn"),
            (json!({"goal": "x"}), "data"),
        ] {
            let err = run_spec(&message(vec![Part::data(data)]), "c").unwrap_err();
            assert_eq!(err.code, a2a::error_code::INVALID_PARAMS, "{err:?}");
            let text = format!("{:?}", err.details);
            assert!(text.contains(field), "{field}: {text}");
        }
        let err = run_spec(&message(vec![Part::raw(vec![1])]), "c").unwrap_err();
        assert_eq!(err.code, a2a::error_code::CONTENT_TYPE_NOT_SUPPORTED);
    }
}
