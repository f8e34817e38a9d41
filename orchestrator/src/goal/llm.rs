//! The LLM planner: a goal becomes a plan by asking a language model
//! (any OpenAI-compatible chat-completions endpoint, `[planning.llm]`).
//!
//! The prompt is built from the live skill catalog (ids, descriptions,
//! consumed and produced kinds, input schemas) and the data's catalog; the
//! answer is constrained by a JSON Schema of the plan whose skill ids are
//! an enum of the known skills. The answer then goes through the same
//! validation as a client's explicit plan; a refused one is sent back with
//! the errors, up to `planning.llm_tries` answers in all. Every try is
//! kept, with its tokens and time, for the run's plan event.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentmesh_llm::{Completion, LlmClient, LlmConfig, LlmError};
use agentmesh_proto::json::{from_opt_struct, to_struct};
use agentmesh_proto::v1::{PlanSpec, PlanStep, PlanningTry, StepInputRef};
use agentmesh_sales::Catalog;
use serde_json::{Map, Value, json};

use crate::routing::SkillInfo;

/// Most steps a model's plan may have (the schema says so too).
const MAX_STEPS: usize = 12;

/// The configured model, and how many answers it may give per goal.
pub struct LlmPlanner {
    client: LlmClient,
    tries: u32,
}

/// A plan the model made, and every try it took.
pub struct ModelPlan {
    /// The accepted plan.
    pub plan: PlanSpec,
    /// Every try, the accepted one last.
    pub tries: Vec<PlanningTry>,
}

/// No valid plan: why, and every try.
pub struct NoPlan {
    /// What went wrong last.
    pub why: String,
    /// Every try.
    pub tries: Vec<PlanningTry>,
}

fn duration(d: Duration) -> Option<agentmesh_proto::prost_types::Duration> {
    d.try_into().ok()
}

impl LlmPlanner {
    /// A planner asking `cfg`'s model, with the API key the binary read.
    pub fn new(cfg: &LlmConfig, api_key: Option<String>, tries: u32) -> Result<Self, LlmError> {
        Ok(Self {
            client: LlmClient::new(cfg, api_key)?,
            tries: tries.max(1),
        })
    }

    /// The model's name.
    pub fn model(&self) -> &str {
        self.client.model()
    }

    /// Plans `goal` with `skills`; `check` is the validation a client's plan
    /// gets (an error message when the plan is refused).
    pub async fn plan(
        &self,
        goal: &str,
        catalog: Option<&Catalog>,
        skills: &[Arc<SkillInfo>],
        check: impl Fn(&PlanSpec) -> Result<(), String>,
    ) -> Result<ModelPlan, NoPlan> {
        let schema = plan_schema(skills);
        let mut messages = vec![
            json!({"role": "system", "content": system_prompt(catalog, skills)}),
            json!({"role": "user", "content": format!("Goal: {goal}")}),
        ];
        let mut tries = Vec::new();
        let mut why = String::from("no answer");
        for _ in 0..self.tries {
            let started = Instant::now();
            let answer = self.client.chat_json(&messages, "plan", &schema).await;
            let mut attempt = PlanningTry {
                model: self.model().to_string(),
                duration: duration(started.elapsed()),
                ..PlanningTry::default()
            };
            let result = match answer {
                Ok(done) => {
                    attempt.prompt_tokens = done.prompt_tokens;
                    attempt.completion_tokens = done.completion_tokens;
                    let read = read_plan(&done).and_then(|plan| check(&plan).map(|()| plan));
                    messages.push(json!({"role": "assistant", "content": done.content}));
                    read
                }
                // The endpoint failed: no point in asking again.
                Err(e) => {
                    attempt.errors.push(e.to_string());
                    tries.push(attempt);
                    return Err(NoPlan {
                        why: e.to_string(),
                        tries,
                    });
                }
            };
            match result {
                Ok(plan) => {
                    attempt.accepted = true;
                    tries.push(attempt);
                    return Ok(ModelPlan { plan, tries });
                }
                Err(error) => {
                    messages.push(json!({
                        "role": "user",
                        "content": format!(
                            "That plan was refused: {error}\nAnswer with a corrected plan, as JSON only."
                        )
                    }));
                    attempt.errors.push(error.clone());
                    tries.push(attempt);
                    why = error;
                }
            }
        }
        Err(NoPlan { why, tries })
    }
}

/// The JSON Schema of a plan: steps with an id, a known skill, literal
/// input, references to earlier steps' outputs, and a rationale.
fn plan_schema(skills: &[Arc<SkillInfo>]) -> Value {
    let ids: Vec<&str> = skills.iter().map(|s| s.skill.id.as_str()).collect();
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["steps"],
        "properties": {
            "steps": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_STEPS,
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["id", "skill", "input", "refs", "rationale"],
                    "properties": {
                        "id": {"type": "string", "pattern": "^[a-z0-9_-]{1,40}$"},
                        "skill": {"type": "string", "enum": ids},
                        "input": {"type": "object"},
                        "refs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "additionalProperties": false,
                                "required": ["field", "from_step"],
                                "properties": {
                                    "field": {"type": "string"},
                                    "from_step": {"type": "string"}
                                }
                            }
                        },
                        "rationale": {"type": "string"}
                    }
                }
            }
        }
    })
}

fn system_prompt(catalog: Option<&Catalog>, skills: &[Arc<SkillInfo>]) -> String {
    let mut p = String::from(
        "You plan work for a mesh of agents. Answer with a JSON plan only: a list of steps, each \
         running one skill. A step's `input` holds literal input fields; a step that needs an \
         earlier step's output names it in `refs` (field = the input field to set, from_step = \
         that step's id): a skill consuming kind `a.b` takes it in input field `b`. Use only the \
         skills below, follow each input schema, give each step a short rationale, and add no \
         step the goal does not need.\n\nSkills:\n",
    );
    for s in skills {
        let schema = from_opt_struct(s.skill.input_schema.as_ref());
        p.push_str(&format!(
            "- {}: {} consumes {:?}, produces {:?}; input schema: {}\n",
            s.skill.id,
            s.skill.description,
            s.skill.consumes,
            s.skill.produces,
            Value::Object(schema)
        ));
    }
    if let Some(c) = catalog {
        p.push_str(&format!(
            "\nThe data covers {} to {} (complete through {}). Periods are written like \
             2025-Q2, 2025-H1, 2025, 2025-04 or 2025-04..2025-06.\n",
            c.first_date, c.last_date, c.complete_through
        ));
        for (field, values) in &c.values {
            p.push_str(&format!("{field}: {}\n", values.join(", ")));
        }
    }
    p
}

/// The plan in a model's answer, or what is wrong with it.
fn read_plan(done: &Completion) -> Result<PlanSpec, String> {
    if done.finish_reason == "length" {
        return Err("the answer was cut off at max_tokens".into());
    }
    let v: Value = serde_json::from_str(done.content.trim())
        .map_err(|e| format!("the answer is not JSON: {e}"))?;
    let steps = v
        .get("steps")
        .and_then(Value::as_array)
        .ok_or("the answer has no `steps` list")?;
    if steps.len() > MAX_STEPS {
        return Err(format!("{} steps; at most {MAX_STEPS}", steps.len()));
    }
    let mut out = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let text = |k: &str| {
            step.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let input: Map<String, Value> = match step.get("input") {
            Some(Value::Object(m)) => m.clone(),
            None | Some(Value::Null) => Map::new(),
            Some(_) => return Err(format!("step {}: `input` is not an object", i + 1)),
        };
        let refs = step
            .get("refs")
            .and_then(Value::as_array)
            .map(|refs| {
                refs.iter()
                    .map(|r| StepInputRef {
                        field: r["field"].as_str().unwrap_or_default().to_string(),
                        from_step: r["from_step"].as_str().unwrap_or_default().to_string(),
                        pointer: r["pointer"].as_str().unwrap_or_default().to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(PlanStep {
            id: text("id"),
            skill: text("skill"),
            input: Some(to_struct(&input)),
            refs,
            rationale: text("rationale"),
            ..PlanStep::default()
        });
    }
    Ok(PlanSpec { steps: out })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(content: &str, finish: &str) -> Completion {
        Completion {
            content: content.into(),
            finish_reason: finish.into(),
            prompt_tokens: 1,
            completion_tokens: 1,
        }
    }

    #[test]
    fn a_plan_is_read_from_the_answer_and_broken_answers_say_why() {
        let plan = read_plan(&done(
            r#"{"steps": [{"id": "a", "skill": "s.x", "input": {"period": "2025-Q2"}, "refs": [], "rationale": "r"},
                          {"id": "b", "skill": "s.y", "input": {}, "refs": [{"field": "dataset", "from_step": "a"}], "rationale": "q"}]}"#,
            "stop",
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan.steps.len(), 2);
        assert_eq!(plan.steps[1].refs[0].from_step, "a");
        assert_eq!(plan.steps[0].rationale, "r");
        assert!(
            read_plan(&done("{\"steps\": [", "length"))
                .unwrap_err()
                .contains("cut off")
        );
        assert!(
            read_plan(&done("not json", "stop"))
                .unwrap_err()
                .contains("not JSON")
        );
        assert!(
            read_plan(&done("{}", "stop"))
                .unwrap_err()
                .contains("no `steps`")
        );
        assert!(
            read_plan(&done(r#"{"steps": [{"input": 3}]}"#, "stop"))
                .unwrap_err()
                .contains("not an object")
        );
    }
}
