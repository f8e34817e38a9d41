//! A skill's input and output JSON Schemas, compiled once at start.

use agentmesh_proto::error::{ErrorReason, MeshError};
use agentmesh_proto::json::from_opt_struct;
use agentmesh_proto::prost_types::Struct;
use agentmesh_proto::v1::Skill;
use jsonschema::Validator;
use serde_json::Value;

use crate::agent::JsonObject;

/// How many schema violations one error message lists.
const MAX_LISTED: usize = 5;

/// Compiled schemas of one skill.
pub struct SkillSchemas {
    input: Validator,
    output: Validator,
}

/// A card's schema that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("skill {skill}: {which} schema is not valid JSON Schema: {detail}")]
pub struct SchemaError {
    /// The skill.
    pub skill: String,
    /// "input" or "output".
    pub which: &'static str,
    /// What the compiler said.
    pub detail: String,
}

impl SkillSchemas {
    /// Compiles a skill's schemas; a missing schema accepts any object.
    pub fn compile(skill: &Skill) -> Result<Self, SchemaError> {
        let build = |which: &'static str, schema: Option<&Struct>| {
            jsonschema::validator_for(&or_any_object(schema)).map_err(|e| SchemaError {
                skill: skill.id.clone(),
                which,
                detail: e.to_string(),
            })
        };
        Ok(Self {
            input: build("input", skill.input_schema.as_ref())?,
            output: build("output", skill.output_schema.as_ref())?,
        })
    }

    /// Checks a task input; the error names the first offending field.
    pub fn check_input(&self, input: &JsonObject) -> Result<(), MeshError> {
        check(&self.input, input, "input", ErrorReason::InvalidInput)
    }

    /// Checks an input whose `pending` fields are filled in later (from
    /// other steps' outputs): violations about those fields are ignored.
    pub fn check_partial_input(
        &self,
        input: &JsonObject,
        pending: &[&str],
    ) -> Result<(), MeshError> {
        let value = Value::Object(input.clone());
        if self.input.is_valid(&value) {
            return Ok(());
        }
        let about_pending = |err: &jsonschema::ValidationError<'_>| {
            if let jsonschema::error::ValidationErrorKind::Required { property } = err.kind()
                && property.as_str().is_some_and(|p| pending.contains(&p))
            {
                return true;
            }
            let path = err.instance_path().to_string();
            let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
            pending.contains(&first)
        };
        let problems: Vec<String> = self
            .input
            .iter_errors(&value)
            .filter(|e| !about_pending(e))
            .take(MAX_LISTED)
            .map(|e| format!("{}: {e}", display_path(&e.instance_path().to_string())))
            .collect();
        if problems.is_empty() {
            return Ok(());
        }
        Err(MeshError::new(
            ErrorReason::InvalidInput,
            format!(
                "input does not match the skill's schema: {}",
                problems.join("; ")
            ),
        ))
    }

    /// Checks a task output.
    pub fn check_output(&self, output: &JsonObject) -> Result<(), MeshError> {
        check(&self.output, output, "output", ErrorReason::OutputInvalid)
    }

    /// Checks a task output held as a JSON value (no copy).
    pub fn check_output_value(&self, output: &Value) -> Result<(), MeshError> {
        check_value(&self.output, output, "output", ErrorReason::OutputInvalid)
    }
}

/// The JSON Schema a question's answer must satisfy (an agent's question,
/// or an approval gate's), compiled: checked by the agent that asked and by
/// the orchestrator that takes the answer, alike.
pub struct AnswerSchema(Validator);

impl AnswerSchema {
    /// Compiles `schema`; none (or an empty one) accepts any object.
    pub fn compile(schema: Option<&Struct>) -> Result<Self, String> {
        Self::from_value(&or_any_object(schema))
    }

    /// Compiles a schema written as JSON; anything but a non-empty
    /// object accepts any object.
    pub fn from_value(schema: &Value) -> Result<Self, String> {
        let any = serde_json::json!({"type": "object"});
        let schema = match schema {
            Value::Object(m) if !m.is_empty() => schema,
            _ => &any,
        };
        jsonschema::validator_for(schema)
            .map(Self)
            .map_err(|e| format!("the answer schema is not valid JSON Schema: {e}"))
    }

    /// Checks an answer: INVALID_INPUT, metadata `field` naming the first
    /// offending field as `answer.<path>` (`answer` for the whole).
    pub fn check(&self, answer: &JsonObject) -> Result<(), MeshError> {
        let Some((field, problems)) = violations(&self.0, &Value::Object(answer.clone()), |err| {
            let mut field = String::from("answer");
            for part in err
                .instance_path()
                .to_string()
                .split('/')
                .filter(|p| !p.is_empty())
            {
                field.push('.');
                field.push_str(part);
            }
            // A missing required property is reported at its parent.
            if let jsonschema::error::ValidationErrorKind::Required { property } = err.kind()
                && let Some(name) = property.as_str()
            {
                field.push('.');
                field.push_str(name);
            }
            field
        }) else {
            return Ok(());
        };
        Err(MeshError::new(
            ErrorReason::InvalidInput,
            format!("the answer does not match the question's schema: {problems}"),
        )
        .with_meta("field", field))
    }
}

/// `schema` as JSON; none (or an empty one) is a schema accepting any
/// object.
fn or_any_object(schema: Option<&Struct>) -> Value {
    match schema {
        Some(s) if !s.fields.is_empty() => Value::Object(from_opt_struct(Some(s))),
        _ => serde_json::json!({"type": "object"}),
    }
}

/// The first few violations of `value`, each as `<name>: <what>`, and the
/// first one's name; None when it is valid (one `is_valid` pass).
fn violations(
    validator: &Validator,
    value: &Value,
    name: impl Fn(&jsonschema::ValidationError<'_>) -> String,
) -> Option<(String, String)> {
    if validator.is_valid(value) {
        return None;
    }
    let mut first = None;
    let mut problems = Vec::new();
    for err in validator.iter_errors(value).take(MAX_LISTED) {
        let at = name(&err);
        problems.push(format!("{at}: {err}"));
        first.get_or_insert(at);
    }
    Some((first?, problems.join("; ")))
}

/// Validates `value` against `validator`, listing the first few violations.
pub fn check(
    validator: &Validator,
    value: &JsonObject,
    what: &str,
    reason: ErrorReason,
) -> Result<(), MeshError> {
    check_value(validator, &Value::Object(value.clone()), what, reason)
}

/// [`check`] for a value; the valid case costs one `is_valid` pass.
pub fn check_value(
    validator: &Validator,
    value: &Value,
    what: &str,
    reason: ErrorReason,
) -> Result<(), MeshError> {
    match violations(validator, value, |err| {
        display_path(&err.instance_path().to_string())
    }) {
        None => Ok(()),
        Some((field, problems)) => Err(MeshError::new(
            reason,
            format!("{what} does not match the skill's schema: {problems}"),
        )
        .with_meta("field", field)),
    }
}

fn display_path(path: &str) -> String {
    if path.is_empty() {
        "/".to_string()
    } else {
        path.to_string()
    }
}
