//! Plan validation: a client's (or the planner's) [`PlanSpec`] becomes a
//! checked [`Plan`] before anything runs. Every problem is INVALID_ARGUMENT
//! with a reason and the offending step in the ErrorInfo metadata.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use agentmesh_proto::error::{ErrorReason, MeshError};
use agentmesh_proto::json::from_opt_struct;
use agentmesh_proto::v1::{PlanSpec, PlanStep, PlannedStep};
use agentmesh_runtime::JsonObject;
use tonic::Code;

use crate::config::ExecutionConfig;
use crate::routing::{Registry, SkillInfo};

/// Longest step id.
const MAX_ID_LEN: usize = 64;

/// A field filled from an earlier step's output.
#[derive(Debug, Clone)]
pub struct InputRef {
    /// Top-level input field.
    pub field: String,
    /// Index of the step read.
    pub from: usize,
    /// JSON Pointer into its output ("" = all of it).
    pub pointer: String,
}

/// One validated step.
pub struct StepPlan {
    /// The step as sent.
    pub spec: PlanStep,
    /// Literal input.
    pub input: JsonObject,
    /// Fields taken from earlier outputs.
    pub refs: Vec<InputRef>,
    /// Steps whose artifacts are passed on.
    pub artifacts_from: Vec<usize>,
    /// Every step that must complete first.
    pub deps: Vec<usize>,
    /// Steps that wait for this one.
    pub dependents: Vec<usize>,
    /// Deadline of each attempt.
    pub deadline: Duration,
    /// Attempts in all.
    pub max_attempts: u32,
    /// The skill as the registry knows it; none for an approval gate.
    pub skill: Option<Arc<SkillInfo>>,
}

impl StepPlan {
    /// Whether the step is an approval gate (it runs no skill).
    pub fn is_gate(&self) -> bool {
        self.skill.is_none()
    }
}

/// A validated DAG.
pub struct Plan {
    /// Steps in the order they were sent.
    pub steps: Vec<StepPlan>,
}

fn invalid(step: &str, message: impl Into<String>) -> MeshError {
    MeshError::new(ErrorReason::PlanInvalid, message).with_meta("step", step)
}

fn check_id(id: &str) -> Result<(), MeshError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            id,
            format!("step id {id:?} must be 1..={MAX_ID_LEN} characters of [a-z0-9_-]"),
        ))
    }
}

fn duration(
    step: &str,
    field: &str,
    d: Option<&agentmesh_proto::prost_types::Duration>,
) -> Result<Option<Duration>, MeshError> {
    let Some(d) = d else { return Ok(None) };
    match Duration::try_from(*d) {
        Ok(d) if !d.is_zero() => Ok(Some(d)),
        _ => Err(
            invalid(step, format!("step {step}: {field} must be positive"))
                .with_meta("field", field),
        ),
    }
}

/// Checks `spec` against the registry's skills and the limits in `cfg`.
pub fn validate(
    spec: PlanSpec,
    registry: &Registry,
    cfg: &ExecutionConfig,
) -> Result<Plan, MeshError> {
    if spec.steps.is_empty() {
        return Err(MeshError::new(
            ErrorReason::PlanInvalid,
            "the plan has no steps",
        ));
    }
    if spec.steps.len() > cfg.max_steps {
        return Err(MeshError::new(
            ErrorReason::PlanInvalid,
            format!(
                "the plan has {} steps; at most {} are allowed",
                spec.steps.len(),
                cfg.max_steps
            ),
        ));
    }
    let mut index = HashMap::new();
    for (i, step) in spec.steps.iter().enumerate() {
        check_id(&step.id)?;
        if index.insert(step.id.as_str(), i).is_some() {
            return Err(invalid(
                &step.id,
                format!("step id {:?} is used twice", step.id),
            ));
        }
    }
    let lookup = |step: &str, field: &str, name: &str| -> Result<usize, MeshError> {
        match index.get(name) {
            Some(&i) if name != step => Ok(i),
            Some(_) => Err(
                invalid(step, format!("step {step}: {field} names the step itself"))
                    .with_meta("field", field),
            ),
            None => Err(invalid(
                step,
                format!("step {step}: {field} names {name:?}, which is not a step of this plan"),
            )
            .with_meta("field", field)),
        }
    };

    let mut steps = Vec::with_capacity(spec.steps.len());
    for step in &spec.steps {
        let id = step.id.as_str();
        if let Some(gate) = &step.approval {
            let has_input = step.input.as_ref().is_some_and(|i| !i.fields.is_empty());
            if !step.skill.is_empty() || has_input || !step.refs.is_empty() {
                return Err(invalid(
                    id,
                    format!("step {id}: an approval gate runs no skill; leave skill, input and refs empty"),
                )
                .with_meta("field", "approval"));
            }
            duration(id, "approval.timeout", gate.timeout.as_ref())?;
            let mut deps = Vec::new();
            for name in step.depends_on.iter().chain(&step.artifacts_from) {
                deps.push(lookup(id, "depends_on", name)?);
            }
            deps.sort_unstable();
            deps.dedup();
            steps.push(StepPlan {
                spec: PlanStep::default(),
                input: JsonObject::new(),
                refs: Vec::new(),
                artifacts_from: Vec::new(),
                deps,
                dependents: Vec::new(),
                deadline: cfg.step_deadline,
                max_attempts: 1,
                skill: None,
            });
            continue;
        }
        let skill = registry.skill(&step.skill).ok_or_else(|| {
            MeshError::new(
                ErrorReason::UnknownSkill,
                format!(
                    "step {id}: no known agent offers skill {:?} (see ListAgents)",
                    step.skill
                ),
            )
            .with_code(Code::InvalidArgument)
            .with_meta("step", id)
            .with_meta("skill", step.skill.as_str())
        })?;
        let input = from_opt_struct(step.input.as_ref());
        let mut refs = Vec::with_capacity(step.refs.len());
        let mut deps = Vec::new();
        for r in &step.refs {
            if r.field.is_empty() {
                return Err(invalid(id, format!("step {id}: a ref has no field")));
            }
            if input.contains_key(&r.field) {
                return Err(invalid(
                    id,
                    format!("step {id}: field {:?} is both literal and a ref", r.field),
                )
                .with_meta("field", r.field.as_str()));
            }
            if !(r.pointer.is_empty() || r.pointer.starts_with('/')) {
                return Err(invalid(
                    id,
                    format!(
                        "step {id}: pointer {:?} is not a JSON Pointer (empty or starting with /)",
                        r.pointer
                    ),
                ));
            }
            let from = lookup(id, "refs.from_step", &r.from_step)?;
            deps.push(from);
            refs.push(InputRef {
                field: r.field.clone(),
                from,
                pointer: r.pointer.clone(),
            });
        }
        let mut artifacts_from = Vec::new();
        for name in &step.artifacts_from {
            let from = lookup(id, "artifacts_from", name)?;
            artifacts_from.push(from);
            deps.push(from);
        }
        for name in &step.depends_on {
            deps.push(lookup(id, "depends_on", name)?);
        }
        deps.sort_unstable();
        deps.dedup();

        let pending: Vec<&str> = refs.iter().map(|r| r.field.as_str()).collect();
        skill
            .schemas
            .check_partial_input(&input, &pending)
            .map_err(|e| {
                MeshError::new(
                    ErrorReason::InvalidInput,
                    format!("step {id}: {}", e.message),
                )
                .with_meta("step", id)
            })?;
        if let Some(expect) = &step.expect {
            for pointer in expect.non_empty.iter().chain(Some(&expect.faithful_text)) {
                if !(pointer.is_empty() || pointer.starts_with('/')) {
                    return Err(invalid(
                        id,
                        format!("step {id}: expectation pointer {pointer:?} is not a JSON Pointer"),
                    )
                    .with_meta("field", "expect"));
                }
            }
        }
        let deadline =
            duration(id, "deadline", step.deadline.as_ref())?.unwrap_or(cfg.step_deadline);
        if step.max_attempts > cfg.max_attempts_limit {
            return Err(invalid(
                id,
                format!(
                    "step {id}: max_attempts {} is above the limit {}",
                    step.max_attempts, cfg.max_attempts_limit
                ),
            )
            .with_meta("field", "max_attempts"));
        }
        let max_attempts = if step.max_attempts == 0 {
            cfg.max_attempts
        } else {
            step.max_attempts
        };
        steps.push(StepPlan {
            // Moved in below, once nothing borrows the plan's steps.
            spec: PlanStep::default(),
            input,
            refs,
            artifacts_from,
            deps,
            dependents: Vec::new(),
            deadline,
            max_attempts,
            skill: Some(skill),
        });
    }
    for (step, spec) in steps.iter_mut().zip(spec.steps) {
        step.spec = spec;
    }
    for i in 0..steps.len() {
        for d in steps[i].deps.clone() {
            steps[d].dependents.push(i);
        }
    }
    check_acyclic(&steps)?;
    Ok(Plan { steps })
}

/// Kahn's algorithm; a step left over is on a cycle.
fn check_acyclic(steps: &[StepPlan]) -> Result<(), MeshError> {
    let mut waiting: Vec<usize> = steps.iter().map(|s| s.deps.len()).collect();
    let mut ready: Vec<usize> = (0..steps.len()).filter(|&i| waiting[i] == 0).collect();
    let mut seen = 0;
    while let Some(i) = ready.pop() {
        seen += 1;
        for &d in &steps[i].dependents {
            waiting[d] -= 1;
            if waiting[d] == 0 {
                ready.push(d);
            }
        }
    }
    if seen == steps.len() {
        return Ok(());
    }
    let cycle: Vec<&str> = (0..steps.len())
        .filter(|&i| waiting[i] > 0)
        .map(|i| steps[i].spec.id.as_str())
        .collect();
    Err(invalid(
        cycle.first().copied().unwrap_or_default(),
        format!("the plan has a cycle through steps {}", cycle.join(", ")),
    ))
}

impl Plan {
    /// The plan as clients see it, with the agent and replica that would
    /// serve each step now.
    pub fn describe(&self, registry: &Registry) -> Vec<PlannedStep> {
        self.steps
            .iter()
            .map(|s| {
                let (agent, endpoint) = if s.is_gate() {
                    ("person".to_string(), String::new())
                } else {
                    registry.preview(&s.spec.skill).unwrap_or_default()
                };
                PlannedStep {
                    step: Some(s.spec.clone()),
                    agent,
                    endpoint,
                    after: s
                        .deps
                        .iter()
                        .map(|&d| self.steps[d].spec.id.clone())
                        .collect(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentmesh_proto::v1::StepInputRef;
    use serde_json::json;

    use crate::routing::fixture::{card, registry, serving, skill};

    fn step(id: &str) -> PlanStep {
        PlanStep {
            id: id.into(),
            skill: "work".into(),
            ..PlanStep::default()
        }
    }

    fn needs(mut s: PlanStep, from: &[&str]) -> PlanStep {
        s.depends_on = from.iter().map(|f| (*f).to_string()).collect();
        s
    }

    fn refs(mut s: PlanStep, from: &str, pointer: &str) -> PlanStep {
        s.refs.push(StepInputRef {
            field: "x".into(),
            from_step: from.into(),
            pointer: pointer.into(),
        });
        s
    }

    fn check(steps: Vec<PlanStep>) -> Result<Plan, MeshError> {
        let r = registry();
        let mut work = skill("work", &[], &[]);
        work.input_schema = Some(agentmesh_proto::json::to_struct(
            json!({"type": "object", "properties": {"x": {"type": "integer"}}})
                .as_object()
                .unwrap_or_else(|| unreachable!()),
        ));
        serving(&r, "127.0.0.1:1", card("w", 0, vec![work]));
        validate(PlanSpec { steps }, &r, &ExecutionConfig::default())
    }

    fn refused(steps: Vec<PlanStep>) -> MeshError {
        match check(steps) {
            Ok(_) => panic!("the plan was accepted"),
            Err(e) => e,
        }
    }

    #[tokio::test]
    async fn broken_plans_are_refused_with_the_step_named() {
        let mut wrong_skill = step("a");
        wrong_skill.skill = "nope".into();
        let mut literal_and_ref = refs(step("b"), "a", "");
        literal_and_ref.input = Some(agentmesh_proto::json::to_struct(
            json!({"x": 1})
                .as_object()
                .unwrap_or_else(|| unreachable!()),
        ));
        let mut bad_input = step("a");
        bad_input.input = Some(agentmesh_proto::json::to_struct(
            json!({"x": "one"})
                .as_object()
                .unwrap_or_else(|| unreachable!()),
        ));
        let cases: Vec<(&str, Vec<PlanStep>, ErrorReason, &str, &str)> = vec![
            ("empty", vec![], ErrorReason::PlanInvalid, "", "no steps"),
            (
                "bad id",
                vec![step("A b")],
                ErrorReason::PlanInvalid,
                "A b",
                "[a-z0-9_-]",
            ),
            (
                "duplicate",
                vec![step("a"), step("a")],
                ErrorReason::PlanInvalid,
                "a",
                "used twice",
            ),
            (
                "dangling",
                vec![needs(step("a"), &["z"])],
                ErrorReason::PlanInvalid,
                "a",
                "not a step",
            ),
            (
                "itself",
                vec![needs(step("a"), &["a"])],
                ErrorReason::PlanInvalid,
                "a",
                "itself",
            ),
            (
                "cycle",
                vec![
                    needs(step("a"), &["c"]),
                    needs(step("b"), &["a"]),
                    needs(step("c"), &["b"]),
                ],
                ErrorReason::PlanInvalid,
                "a",
                "cycle through steps a, b, c",
            ),
            (
                "pointer",
                vec![step("a"), refs(step("b"), "a", "x")],
                ErrorReason::PlanInvalid,
                "b",
                "JSON Pointer",
            ),
            (
                "literal and ref",
                vec![step("a"), literal_and_ref],
                ErrorReason::PlanInvalid,
                "b",
                "both literal and a ref",
            ),
            (
                "unknown skill",
                vec![wrong_skill],
                ErrorReason::UnknownSkill,
                "a",
                "no known agent",
            ),
            (
                "input",
                vec![bad_input],
                ErrorReason::InvalidInput,
                "a",
                "step a",
            ),
        ];
        for (name, steps, reason, step, says) in cases {
            let err = refused(steps);
            assert_eq!(err.reason, reason, "{name}: {err:?}");
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{name}");
            if !step.is_empty() {
                assert_eq!(
                    err.metadata.get("step").map(String::as_str),
                    Some(step),
                    "{name}"
                );
            }
            assert!(err.message.contains(says), "{name}: {}", err.message);
        }
    }

    #[tokio::test]
    async fn a_valid_plan_knows_its_edges_both_ways() {
        let plan = check(vec![
            step("a"),
            refs(step("b"), "a", "/n"),
            needs(step("c"), &["a", "b"]),
        ])
        .unwrap_or_else(|e| panic!("{e:?}"));
        let deps: Vec<&[usize]> = plan.steps.iter().map(|s| s.deps.as_slice()).collect();
        assert_eq!(deps, [&[][..], &[0], &[0, 1]]);
        let dependents: Vec<&[usize]> =
            plan.steps.iter().map(|s| s.dependents.as_slice()).collect();
        assert_eq!(dependents, [&[1, 2][..], &[2], &[]]);
        assert_eq!(plan.steps[1].refs[0].pointer, "/n");
        let cfg = ExecutionConfig::default();
        assert_eq!(plan.steps[0].max_attempts, cfg.max_attempts);
        assert_eq!(plan.steps[0].deadline, cfg.step_deadline);
    }

    #[tokio::test]
    async fn limits_are_the_configured_ones() {
        let cfg = ExecutionConfig::default();
        let many: Vec<PlanStep> = (0..=cfg.max_steps)
            .map(|i| step(&format!("s{i}")))
            .collect();
        assert!(refused(many).message.contains("at most"));
        let mut greedy = step("a");
        greedy.max_attempts = cfg.max_attempts_limit + 1;
        assert!(refused(vec![greedy]).message.contains("above the limit"));
    }
}
