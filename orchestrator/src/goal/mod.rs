//! The goal front-end: a goal's text becomes an intent (against the data's
//! catalog) and the intent a plan, before the run core sees anything.
//!
//! - [`intent`]: goal text → intent;
//! - [`catalog`]: the data's catalog, asked of the skill that describes it;
//! - [`llm`]: the optional LLM planner, whose plans are validated like a
//!   client's;
//! - [`planner`]: intent → plan, by playbook or by chaining skills;
//! - [`playbook`]: fixed plans for named intents, from files;
//! - [`vocabulary`]: the words that name kinds, from the agents' cards;
//! - [`words`]: tokens, deliverable words and filler, shared by both.

pub mod catalog;
pub mod intent;
pub mod llm;
pub mod planner;
pub mod playbook;
pub mod vocabulary;
pub mod words;

use std::sync::Arc;
use std::time::Instant;

use agentmesh_proto::error::{ErrorReason, MeshError};
use agentmesh_proto::v1::{Intent, PlanSpec, Planning, PlanningTry, RunSpec};

use crate::config::{ExecutionConfig, PlannerMode};
use crate::routing::{Registry, SkillInfo};
use catalog::CatalogCache;
use llm::LlmPlanner;
use planner::Planner;

/// A goal, read and planned.
pub struct Planned {
    /// The plan, to be validated by the run core like any client's.
    pub plan: PlanSpec,
    /// What was understood, as the protocol carries it.
    pub intent: Intent,
    /// Which planner made it, and the LLM planner's tries.
    pub planning: Planning,
}

/// Goal → plan.
pub struct FrontEnd {
    registry: Arc<Registry>,
    planner: Planner,
    catalog: CatalogCache,
    execution: ExecutionConfig,
    mode: PlannerMode,
    llm: Option<LlmPlanner>,
}

impl FrontEnd {
    /// A front-end planning with `planner` (rules and playbooks) over the
    /// skills in `registry`.
    pub fn new(registry: Arc<Registry>, planner: Planner, execution: &ExecutionConfig) -> Self {
        Self {
            catalog: CatalogCache::new(execution),
            execution: execution.clone(),
            registry,
            planner,
            mode: PlannerMode::Rules,
            llm: None,
        }
    }

    /// Plans with `llm` as `mode` says.
    #[must_use]
    pub fn with_llm(mut self, mode: PlannerMode, llm: LlmPlanner) -> Self {
        self.mode = mode;
        self.llm = Some(llm);
        self
    }

    /// Plans `spec`'s goal with the planners `planning.mode` names.
    pub async fn plan(&self, spec: &RunSpec) -> Result<Planned, MeshError> {
        let started = Instant::now();
        let planned = self.plan_with_mode(spec, started).await;
        let m = crate::metrics::metrics();
        m.planner_duration
            .get_or_create(&crate::metrics::Planner {
                planner: self.mode.label(),
                outcome: if planned.is_ok() {
                    "planned"
                } else {
                    "refused"
                },
            })
            .observe(started.elapsed().as_secs_f64());
        if let Ok(p) = &planned {
            m.llm_tokens
                .get_or_create(&crate::metrics::Tokens { source: "planner" })
                .inc_by(u64::from(p.planning.tokens));
        }
        planned
    }

    async fn plan_with_mode(&self, spec: &RunSpec, started: Instant) -> Result<Planned, MeshError> {
        let mut planned = match (self.mode, &self.llm) {
            (PlannerMode::Rules, _) | (_, None) => self.rules(spec).await?,
            (PlannerMode::Llm, Some(llm)) => self
                .by_model(llm, spec, Vec::new())
                .await
                .map_err(|(e, _)| e)?,
            (PlannerMode::LlmThenRules, Some(llm)) => {
                match self.by_model(llm, spec, Vec::new()).await {
                    Ok(p) => p,
                    Err((e, tries)) => {
                        let mut p = self.rules(spec).await?;
                        p.intent.notes.push(format!(
                            "the LLM planner gave no valid plan ({}); the rules planner made this one",
                            e.message
                        ));
                        p.planning.tries = tries;
                        p
                    }
                }
            }
            (PlannerMode::RulesThenLlm, Some(llm)) => match self.rules(spec).await {
                Ok(p) => p,
                Err(e) if e.reason == ErrorReason::GoalNotUnderstood => {
                    let why = format!(
                        "the rules planner could not read the goal ({}); the LLM planner made this plan",
                        e.message
                    );
                    self.by_model(llm, spec, vec![why])
                        .await
                        .map_err(|(e, _)| e)?
                }
                Err(e) => return Err(e),
            },
        };
        planned.planning.tokens = planned
            .planning
            .tries
            .iter()
            .map(|t| t.prompt_tokens + t.completion_tokens)
            .sum();
        planned.planning.duration = started.elapsed().try_into().ok();
        Ok(planned)
    }

    /// The rules planner: the goal read against the data's catalog, then a
    /// playbook or skills chained by kind.
    async fn rules(&self, spec: &RunSpec) -> Result<Planned, MeshError> {
        let described = self.catalog.get(&self.registry).await?;
        let skills = self.registry.known_skills();
        let vocab = vocabulary::Vocabulary::from_skills(skills.iter().map(|s| &s.skill));
        let mut intent = intent::parse_with(
            &spec.goal,
            spec.parameters.as_ref(),
            &described.catalog,
            &vocab,
        )?;
        intent
            .notes
            .push(format!("data described by {}", described.source));
        let (plan, playbook) = self.planner.plan_with(&intent, &self.registry)?;
        Ok(Planned {
            plan,
            intent: intent.to_proto(),
            planning: Planning {
                planner: playbook.map_or_else(|| "rules".into(), |name| format!("playbook:{name}")),
                ..Planning::default()
            },
        })
    }

    /// The LLM planner, its plan validated like a client's.
    async fn by_model(
        &self,
        llm: &LlmPlanner,
        spec: &RunSpec,
        mut notes: Vec<String>,
    ) -> Result<Planned, (MeshError, Vec<PlanningTry>)> {
        // The catalog helps the model name periods and values; without it
        // the model plans from the skills alone.
        let described = self.catalog.get(&self.registry).await.ok();
        let skills = self.registry.known_skills();
        let check = |plan: &PlanSpec| {
            crate::run::plan::validate(plan.clone(), &self.registry, &self.execution)
                .map(|_| ())
                .map_err(|e| match e.metadata.get("step") {
                    Some(step) => format!("{} (step {step})", e.message),
                    None => e.message.clone(),
                })
        };
        let model = llm.model().to_string();
        match llm
            .plan(
                &spec.goal,
                described.as_ref().map(|d| &d.catalog),
                &skills,
                check,
            )
            .await
        {
            Ok(made) => {
                notes.push(format!(
                    "planned by the LLM planner ({model}) in {} {}",
                    made.tries.len(),
                    if made.tries.len() == 1 {
                        "try"
                    } else {
                        "tries"
                    }
                ));
                Ok(Planned {
                    intent: intent_of(&made.plan, &skills, notes),
                    plan: made.plan,
                    planning: Planning {
                        planner: format!("llm:{model}"),
                        tries: made.tries,
                        ..Planning::default()
                    },
                })
            }
            Err(failed) => Err((
                MeshError::new(
                    ErrorReason::GoalNotUnderstood,
                    format!(
                        "the LLM planner ({model}) gave no valid plan in {} {}: {}",
                        failed.tries.len(),
                        if failed.tries.len() == 1 {
                            "try"
                        } else {
                            "tries"
                        },
                        failed.why
                    ),
                )
                .with_meta("field", "spec.goal")
                .with_meta("planner", "llm"),
                failed.tries,
            )),
        }
    }
}

/// What a model's plan delivers: the kinds its last steps (those no other
/// step reads) produce, as deliverables where they are one.
fn intent_of(plan: &PlanSpec, skills: &[Arc<SkillInfo>], notes: Vec<String>) -> Intent {
    let read: Vec<&str> = plan
        .steps
        .iter()
        .flat_map(|s| s.refs.iter().map(|r| r.from_step.as_str()))
        .collect();
    let mut intent = Intent {
        notes,
        ..Intent::default()
    };
    for step in plan.steps.iter().filter(|s| !read.contains(&s.id.as_str())) {
        let Some(skill) = skills.iter().find(|k| k.skill.id == step.skill) else {
            continue;
        };
        for kind in &skill.skill.produces {
            match planner::deliverable_of(kind) {
                Some(d) if !intent.deliverables.contains(&(d as i32)) => {
                    intent.deliverables.push(d as i32);
                }
                Some(_) => {}
                None if !intent.kinds.contains(kind) => intent.kinds.push(kind.clone()),
                None => {}
            }
        }
    }
    intent
}
