//! Intent → plan. A playbook for exactly the intent's deliverables wins;
//! otherwise the plan is found by chaining skills through the kinds they
//! consume and produce (from the agents' cards), from each deliverable back
//! to a source. A new agent whose card declares a new skill is usable with
//! no change here.
//!
//! Conventions an agent author follows (docs/PROTOCOL.md):
//! - a consumed kind `a.b` arrives in the input field named `b` (its last
//!   segment), as the producing step's whole output;
//! - input fields named `period`, `filters`, `compare` receive the goal's
//!   period, filters and comparisons (`previous_period`, `year_ago`, or a
//!   period named like `period`);
//! - an input field `charts` whose items are an enum receives the values the
//!   goal names (e.g. "revenue by region" → `revenue_by_region`);
//! - an input field `horizon` receives the months after the data the goal
//!   asks about ("next quarter" → 3), within the field's `maximum`;
//! - a skill's `planning.full_history` and `planning.upstream_input` shape
//!   the steps that produce what it consumes (a forecast reads the whole
//!   history by month), planned apart from the same kind made for others.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use agentmesh_proto::error::{ErrorReason, MeshError};
use agentmesh_proto::json::to_struct;
use agentmesh_proto::v1::{
    ApprovalGate, Deliverable, PlanSpec, PlanStep, StepExpectations, StepInputRef,
};
use agentmesh_sales::kinds;
use serde_json::{Map, Value, json};

use crate::goal::intent::GoalIntent;
use crate::goal::playbook::Playbook;
use crate::goal::words::deliverable_name;
use crate::routing::{Registry, SkillInfo};

/// The kind each deliverable is.
pub fn kind_of(d: Deliverable) -> Option<&'static str> {
    match d {
        Deliverable::Dataset => Some(kinds::DATASET),
        Deliverable::Metrics => Some(kinds::METRICS),
        Deliverable::Charts => Some(kinds::CHART),
        Deliverable::Summary => Some(kinds::SUMMARY),
        Deliverable::Unspecified => None,
    }
}

/// The deliverable `kind` is, if it is one.
pub fn deliverable_of(kind: &str) -> Option<Deliverable> {
    [
        Deliverable::Dataset,
        Deliverable::Metrics,
        Deliverable::Charts,
        Deliverable::Summary,
    ]
    .into_iter()
    .find(|d| kind_of(*d) == Some(kind))
}

/// The input field a consumed kind arrives in.
pub fn field_of(kind: &str) -> &str {
    kind.rsplit('.').next().unwrap_or(kind)
}

/// Makes plans for intents.
#[derive(Default)]
pub struct Planner {
    playbooks: Vec<Playbook>,
}

impl Planner {
    /// A planner with `playbooks`.
    pub fn new(playbooks: Vec<Playbook>) -> Self {
        Self { playbooks }
    }

    /// The playbooks loaded.
    pub fn playbooks(&self) -> &[Playbook] {
        &self.playbooks
    }

    /// The plan for `intent`, and the playbook that made it, if one did.
    pub fn plan_with(
        &self,
        intent: &GoalIntent,
        registry: &Registry,
    ) -> Result<(PlanSpec, Option<String>), MeshError> {
        let wanted: BTreeSet<i32> = intent.deliverables.iter().map(|d| *d as i32).collect();
        if intent.kinds.is_empty()
            && let Some(book) = self
                .playbooks
                .iter()
                .find(|b| b.deliverable_set() == wanted)
        {
            return Ok((
                from_playbook(book, intent, registry),
                Some(book.name.clone()),
            ));
        }
        self.plan(intent, registry).map(|p| (p, None))
    }

    /// The plan for `intent`.
    pub fn plan(&self, intent: &GoalIntent, registry: &Registry) -> Result<PlanSpec, MeshError> {
        let wanted: BTreeSet<i32> = intent.deliverables.iter().map(|d| *d as i32).collect();
        if intent.kinds.is_empty()
            && let Some(book) = self
                .playbooks
                .iter()
                .find(|b| b.deliverable_set() == wanted)
        {
            return Ok(from_playbook(book, intent, registry));
        }
        let mut chain = Chain {
            registry,
            intent,
            steps: Vec::new(),
            by_kind: BTreeMap::new(),
            visiting: Vec::new(),
        };
        let plain = Map::new();
        for d in &intent.deliverables {
            if let Some(kind) = kind_of(*d) {
                let why = format!("the goal asks for {}", deliverable_name(*d));
                chain.ensure(kind, &why, &plain)?;
            }
        }
        for kind in &intent.kinds {
            chain.ensure(kind, &format!("the goal asks for `{kind}`"), &plain)?;
        }
        Ok(PlanSpec { steps: chain.steps })
    }
}

struct Chain<'a> {
    registry: &'a Registry,
    intent: &'a GoalIntent,
    steps: Vec<PlanStep>,
    by_kind: BTreeMap<String, String>,
    visiting: Vec<String>,
}

impl Chain<'_> {
    /// The id of the step producing `kind` with `shape` over the goal's
    /// input, planning it (and what it needs) if not planned yet.
    fn ensure(
        &mut self,
        kind: &str,
        why: &str,
        shape: &Map<String, Value>,
    ) -> Result<String, MeshError> {
        let key = if shape.is_empty() {
            kind.to_string()
        } else {
            format!("{kind} {}", Value::Object(shape.clone()))
        };
        if let Some(id) = self.by_kind.get(&key) {
            return Ok(id.clone());
        }
        let mut candidates = self.registry.producers(kind);
        if candidates.is_empty() {
            return Err(MeshError::new(
                ErrorReason::NoAgentForSkill,
                format!("no healthy agent offers a skill producing `{kind}` ({why})"),
            )
            .with_meta("kind", kind));
        }
        // Deterministic: fewest inputs first, then by skill id.
        candidates.sort_by(|(a, _), (b, _)| {
            (a.skill.consumes.len(), &a.skill.id).cmp(&(b.skill.consumes.len(), &b.skill.id))
        });
        let names: Vec<String> = candidates.iter().map(|(s, _)| s.skill.id.clone()).collect();
        self.visiting.push(kind.to_string());
        let mut last_err = None;
        for (skill, agents) in &candidates {
            if skill
                .skill
                .consumes
                .iter()
                .any(|c| self.visiting.contains(c))
            {
                continue;
            }
            let mark = self.steps.len();
            let kinds = self.by_kind.clone();
            match self.add_step(kind, &key, shape, skill, agents, &names, why) {
                Ok(id) => {
                    self.visiting.pop();
                    return Ok(id);
                }
                Err(e) => {
                    // Try the next candidate from a clean slate.
                    self.steps.truncate(mark);
                    self.by_kind = kinds;
                    last_err = Some(e);
                }
            }
        }
        self.visiting.pop();
        Err(last_err.unwrap_or_else(|| {
            MeshError::new(
                ErrorReason::NoAgentForSkill,
                format!("every skill producing `{kind}` needs `{kind}` itself ({why})"),
            )
        }))
    }

    #[allow(clippy::too_many_arguments)]
    fn add_step(
        &mut self,
        kind: &str,
        key: &str,
        shape: &Map<String, Value>,
        skill: &Arc<SkillInfo>,
        agents: &[String],
        candidates: &[String],
        why: &str,
    ) -> Result<String, MeshError> {
        let s = &skill.skill;
        let props = input_properties(skill);
        let upstream = upstream_shape(skill, self.intent);
        let mut refs = Vec::new();
        for consumed in &s.consumes {
            let field = field_of(consumed);
            if !props.contains_key(field) {
                return Err(MeshError::new(
                    ErrorReason::NoAgentForSkill,
                    format!(
                        "skill {} consumes `{consumed}` but has no input field `{field}`",
                        s.id
                    ),
                ));
            }
            let from = self.ensure(consumed, &format!("{} consumes it", s.id), &upstream)?;
            refs.push(StepInputRef {
                field: field.to_string(),
                from_step: from,
                pointer: String::new(),
            });
        }
        // Named for what it produces ("charts" when the skill says so).
        let base = field_of(kind);
        let skill_name = field_of(&s.id);
        let name = if skill_name.starts_with(base) {
            skill_name
        } else {
            base
        };
        let id = unique_id(name, &self.steps);
        let choice = if candidates.len() > 1 {
            format!(
                "; chosen among {} (fewest inputs, then by name)",
                candidates.join(", ")
            )
        } else {
            String::new()
        };
        let mut input = intent_input(skill, self.intent);
        if shape.contains_key("period") {
            // A whole history is not compared with anything.
            input.remove("compare");
        }
        for (field, value) in shape {
            if props.contains_key(field) {
                input.insert(field.clone(), value.clone());
            }
        }
        if let (Some(months), Some(field)) = (self.intent.horizon_months, props.get("horizon")) {
            if let Some(max) = field.get("maximum").and_then(Value::as_u64)
                && u64::from(months) > max
            {
                return Err(MeshError::new(
                    ErrorReason::GoalNotUnderstood,
                    format!(
                        "{} answers at most {max} months ahead; the goal asks for {months}",
                        s.id
                    ),
                )
                .with_meta("field", "spec.goal"));
            }
            input.insert("horizon".into(), json!(months));
        }
        let shaped = if shape.is_empty() {
            String::new()
        } else {
            format!(", shaped {}", Value::Object(shape.clone()))
        };
        let step = PlanStep {
            id: id.clone(),
            skill: s.id.clone(),
            input: Some(to_struct(&input)),
            refs,
            rationale: format!(
                "{} (by {}) produces `{kind}`{shaped}: {why}{choice}",
                s.id,
                agents.join(", ")
            ),
            expect: Some(expectations(skill)),
            ..PlanStep::default()
        };
        self.steps.push(step);
        self.by_kind.insert(key.to_string(), id.clone());
        Ok(id)
    }
}

/// What `skill`'s card asks of the steps producing what it consumes: its
/// `upstream_input`, and with `full_history` the data's whole history as
/// their period.
fn upstream_shape(skill: &SkillInfo, intent: &GoalIntent) -> Map<String, Value> {
    let Some(planning) = &skill.skill.planning else {
        return Map::new();
    };
    let mut shape = agentmesh_proto::json::from_opt_struct(planning.upstream_input.as_ref());
    if planning.full_history {
        shape.insert("period".into(), json!(intent.history.spec()));
    }
    shape
}

fn unique_id(base: &str, steps: &[PlanStep]) -> String {
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let mut id = clean.clone();
    let mut n = 2;
    while steps.iter().any(|s| s.id == id) {
        id = format!("{clean}_{n}");
        n += 1;
    }
    id
}

fn input_properties(skill: &SkillInfo) -> Map<String, Value> {
    let schema = agentmesh_proto::json::from_opt_struct(skill.skill.input_schema.as_ref());
    match schema.get("properties") {
        Some(Value::Object(p)) => p.clone(),
        _ => Map::new(),
    }
}

/// The goal's parameters for the input fields this skill has.
pub fn intent_input(skill: &SkillInfo, intent: &GoalIntent) -> Map<String, Value> {
    let props = input_properties(skill);
    let mut input = Map::new();
    if props.contains_key("period") {
        input.insert("period".into(), json!(intent.period.spec()));
    }
    if let Some(f) = props.get("filters")
        && !intent.filters.is_empty()
    {
        let allowed = f.get("properties").and_then(Value::as_object);
        let filters: Map<String, Value> = intent
            .filters
            .iter()
            .filter(|(k, _)| allowed.is_none_or(|a| a.contains_key(*k)))
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        if !filters.is_empty() {
            input.insert("filters".into(), Value::Object(filters));
        }
    }
    // A breakdown of the data alone shapes the extract; the report's
    // sections make their own.
    if props.contains_key("group_by")
        && !intent.group_by.is_empty()
        && intent.deliverables == [Deliverable::Dataset]
    {
        input.insert("group_by".into(), json!(intent.group_by));
    }
    if let (Some(r), true) = (&intent.ranking, props.contains_key("ranking")) {
        input.insert(
            "ranking".into(),
            json!({"dimension": r.dimension, "n": r.n, "order": r.order, "by": r.by}),
        );
    }
    if props.contains_key("compare") {
        let mut compare = Vec::new();
        if intent.compare_previous {
            compare.push("previous_period".to_string());
        }
        if intent.compare_year_ago {
            compare.push("year_ago".to_string());
        }
        compare.extend(intent.compare_period.map(|p| p.spec()));
        if !compare.is_empty() {
            input.insert("compare".into(), json!(compare));
        }
    }
    if let Some(options) = props
        .get("charts")
        .and_then(|c| c.pointer("/items/enum"))
        .and_then(Value::as_array)
    {
        let text = format!(" {} ", intent.words.join(" "));
        let named: Vec<&str> = options
            .iter()
            .filter_map(Value::as_str)
            .filter(|o| text.contains(&format!(" {} ", o.replace('_', " "))))
            .collect();
        if !named.is_empty() {
            input.insert("charts".into(), json!(named));
        }
    }
    input
}

/// Checks for what a skill produces: data not empty, charts valid SVG,
/// summaries faithful to what they were given.
fn expectations(skill: &SkillInfo) -> StepExpectations {
    let produces = |k: &str| skill.skill.produces.iter().any(|p| p == k);
    let output = agentmesh_proto::json::from_opt_struct(skill.skill.output_schema.as_ref());
    let out_props = output.get("properties").and_then(Value::as_object);
    let has = |f: &str| out_props.is_some_and(|p| p.contains_key(f));
    StepExpectations {
        non_empty: if produces(kinds::DATASET) && has("rows") {
            vec!["/rows".into()]
        } else {
            Vec::new()
        },
        min_svg_artifacts: u32::from(produces(kinds::CHART)),
        faithful_text: if produces("summary") && has("markdown") {
            "/markdown".into()
        } else {
            String::new()
        },
    }
}

fn from_playbook(book: &Playbook, intent: &GoalIntent, registry: &Registry) -> PlanSpec {
    let steps = book
        .steps
        .iter()
        .map(|s| {
            let mut input = s.input.clone();
            if s.intent_fields
                && let Some(skill) = registry.skill(&s.skill)
            {
                for (k, v) in intent_input(&skill, intent) {
                    input.entry(k).or_insert(v);
                }
            }
            PlanStep {
                id: s.id.clone(),
                skill: s.skill.clone(),
                input: Some(to_struct(&input)),
                refs: s
                    .refs
                    .iter()
                    .map(|r| StepInputRef {
                        field: r.field.clone(),
                        from_step: r.from.clone(),
                        pointer: r.pointer.clone(),
                    })
                    .collect(),
                artifacts_from: s.artifacts_from.clone(),
                depends_on: s.after.clone(),
                approval: s.approval.as_ref().map(|g| ApprovalGate {
                    prompt: g.prompt.clone(),
                    timeout: g.timeout_ms.and_then(|ms| {
                        agentmesh_proto::prost_types::Duration::try_from(
                            std::time::Duration::from_millis(ms),
                        )
                        .ok()
                    }),
                }),
                rationale: format!("playbook {}: {}", book.name, book.description),
                expect: Some(StepExpectations {
                    non_empty: s.expect.non_empty.clone(),
                    min_svg_artifacts: s.expect.min_svg_artifacts,
                    faithful_text: s.expect.faithful_text.clone(),
                }),
                ..PlanStep::default()
            }
        })
        .collect();
    PlanSpec { steps }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentmesh_sales::Period;

    use crate::routing::fixture::{card, registry, serving};

    /// A skill whose input has a field for each kind it consumes, as the
    /// planner's convention asks (`sales.metrics` arrives in `metrics`).
    fn skill(id: &str, consumes: &[&str], produces: &[&str]) -> agentmesh_proto::v1::Skill {
        let mut s = crate::routing::fixture::skill(id, consumes, produces);
        let properties: Map<String, Value> = consumes
            .iter()
            .map(|k| (field_of(k).to_string(), json!({"type": "object"})))
            .collect();
        s.input_schema = Some(to_struct(
            json!({"type": "object", "properties": properties})
                .as_object()
                .unwrap_or_else(|| unreachable!()),
        ));
        s
    }

    fn intent(deliverables: &[Deliverable]) -> GoalIntent {
        GoalIntent {
            deliverables: deliverables.to_vec(),
            period: Period::quarter(2025, 2).unwrap_or_else(|e| panic!("{e}")),
            filters: BTreeMap::new(),
            compare_previous: true,
            compare_year_ago: false,
            compare_period: None,
            words: Vec::new(),
            notes: Vec::new(),
            kinds: Vec::new(),
            horizon_months: None,
            history: Period::months(2023, 1, 12).unwrap_or_else(|e| panic!("{e}")),
            group_by: Vec::new(),
            understood: Vec::new(),
            filler: Vec::new(),
            not_understood: Vec::new(),
            ranking: None,
        }
    }

    /// A forecast agent as the shipped one's card says: it reads the whole
    /// history by month and takes a horizon of at most 12 months.
    fn forecaster(r: &Arc<Registry>, address: &str) {
        let mut f = skill("forecast.revenue", &[kinds::DATASET], &[kinds::FORECAST]);
        f.input_schema = Some(to_struct(
            json!({"type": "object", "properties": {
                "dataset": {"type": "object"},
                "horizon": {"type": "integer", "minimum": 1, "maximum": 12}
            }})
            .as_object()
            .unwrap_or_else(|| unreachable!()),
        ));
        f.planning = Some(agentmesh_proto::v1::SkillPlanning {
            phrases: vec!["forecast".into()],
            future_periods: true,
            full_history: true,
            upstream_input: Some(to_struct(
                json!({"group_by": ["month"]})
                    .as_object()
                    .unwrap_or_else(|| unreachable!()),
            )),
        });
        serving(r, address, card("forecast", 0, vec![f]));
    }

    fn input_of(plan: &PlanSpec, i: usize) -> Map<String, Value> {
        agentmesh_proto::json::from_opt_struct(plan.steps[i].input.as_ref())
    }

    #[tokio::test]
    async fn a_forecast_reads_the_whole_history_by_month_apart_from_the_report() {
        let r = mesh();
        {
            let mut ex = skill("sales.extract", &[], &[kinds::DATASET]);
            ex.input_schema = Some(to_struct(
                json!({"type": "object", "properties": {
                    "period": {"type": "string"}, "group_by": {"type": "array"},
                    "compare": {"type": "array"}
                }})
                .as_object()
                .unwrap_or_else(|| unreachable!()),
            ));
            serving(&r, "127.0.0.1:1", card("data", 0, vec![ex]));
        }
        forecaster(&r, "127.0.0.1:9");
        let mut want = intent(&[Deliverable::Metrics]);
        want.kinds = vec![kinds::FORECAST.into()];
        want.horizon_months = Some(6);
        let plan = Planner::default()
            .plan(&want, &r)
            .unwrap_or_else(|e| panic!("{e:?}"));
        let steps = shape(&plan);
        assert_eq!(
            steps
                .iter()
                .map(|(id, skill, from)| (id.as_str(), skill.as_str(), from.clone()))
                .collect::<Vec<_>>(),
            [
                ("dataset", "sales.extract", vec![]),
                (
                    "metrics",
                    "analytics.metrics",
                    vec!["dataset<-dataset".into()]
                ),
                ("dataset_2", "sales.extract", vec![]),
                (
                    "forecast",
                    "forecast.revenue",
                    vec!["dataset<-dataset_2".into()]
                ),
            ],
        );
        // The report's extract: the goal's period, compared.
        assert_eq!(input_of(&plan, 0).get("period"), Some(&json!("2025-Q2")));
        assert_eq!(
            input_of(&plan, 0).get("compare"),
            Some(&json!(["previous_period"]))
        );
        // The forecast's: the whole history by month, not compared.
        let history = input_of(&plan, 2);
        assert_eq!(history.get("period"), Some(&json!("2023")));
        assert_eq!(history.get("group_by"), Some(&json!(["month"])));
        assert_eq!(history.get("compare"), None);
        assert_eq!(input_of(&plan, 3).get("horizon"), Some(&json!(6)));

        // A horizon beyond what the skill takes is refused at planning.
        want.horizon_months = Some(18);
        let err = Planner::default().plan(&want, &r).unwrap_err();
        assert_eq!(err.reason, ErrorReason::GoalNotUnderstood);
        assert!(err.message.contains("at most 12 months"), "{}", err.message);
    }

    #[tokio::test]
    async fn a_kind_asked_for_whose_agent_is_gone_is_named() {
        let mut want = intent(&[]);
        want.kinds = vec![kinds::FORECAST.into()];
        let err = Planner::default().plan(&want, &mesh()).unwrap_err();
        assert_eq!(err.reason, ErrorReason::NoAgentForSkill);
        assert_eq!(
            err.metadata.get("kind").map(String::as_str),
            Some(kinds::FORECAST)
        );
    }

    /// A data agent at `address`: the source of `sales.dataset`.
    fn source(r: &Arc<Registry>, address: &str) {
        let mut data = skill("sales.extract", &[], &[kinds::DATASET]);
        data.input_schema = Some(to_struct(
            json!({"type": "object", "properties": {"period": {"type": "string"}}})
                .as_object()
                .unwrap_or_else(|| unreachable!()),
        ));
        serving(r, address, card("data", 0, vec![data]));
    }

    /// The sales mesh's skills as their cards name them.
    fn mesh() -> Arc<Registry> {
        let r = registry();
        source(&r, "127.0.0.1:1");
        serving(
            &r,
            "127.0.0.1:2",
            card(
                "analytics",
                0,
                vec![
                    skill("analytics.metrics", &[kinds::DATASET], &[kinds::METRICS]),
                    skill("analytics.charts", &[kinds::METRICS], &[kinds::CHART]),
                ],
            ),
        );
        serving(
            &r,
            "127.0.0.1:3",
            card(
                "summary",
                0,
                vec![skill("summary.write", &[kinds::METRICS], &[kinds::SUMMARY])],
            ),
        );
        r
    }

    fn shape(plan: &PlanSpec) -> Vec<(String, String, Vec<String>)> {
        plan.steps
            .iter()
            .map(|s| {
                let from = s
                    .refs
                    .iter()
                    .map(|r| format!("{}<-{}", r.field, r.from_step))
                    .collect();
                (s.id.clone(), s.skill.clone(), from)
            })
            .collect()
    }

    #[tokio::test]
    async fn skills_chain_back_to_a_source_and_each_kind_is_made_once() {
        let plan = Planner::default()
            .plan(
                &intent(&[Deliverable::Charts, Deliverable::Summary]),
                &mesh(),
            )
            .unwrap_or_else(|e| panic!("{e:?}"));
        let steps = shape(&plan);
        let skills: Vec<&str> = steps.iter().map(|(_, skill, _)| skill.as_str()).collect();
        assert_eq!(
            skills,
            [
                "sales.extract",
                "analytics.metrics",
                "analytics.charts",
                "summary.write"
            ],
            "{steps:?}"
        );
        // A consumed kind arrives in the field named by its last segment.
        assert_eq!(steps[1].2, [format!("dataset<-{}", steps[0].0)]);
        assert_eq!(steps[2].2, [format!("metrics<-{}", steps[1].0)]);
        assert_eq!(steps[3].2, [format!("metrics<-{}", steps[1].0)]);
        // The goal's period reaches the source.
        let input = agentmesh_proto::json::from_opt_struct(plan.steps[0].input.as_ref());
        assert_eq!(input.get("period"), Some(&json!("2025-Q2")));
    }

    #[tokio::test]
    async fn a_kind_nobody_produces_is_named() {
        let r = registry();
        source(&r, "127.0.0.1:1");
        let err = Planner::default()
            .plan(&intent(&[Deliverable::Summary]), &r)
            .unwrap_err();
        assert_eq!(err.reason, ErrorReason::NoAgentForSkill);
        assert!(err.message.contains("`summary`"), "{}", err.message);
        assert_eq!(
            err.metadata.get("kind").map(String::as_str),
            Some("summary")
        );
    }

    #[tokio::test]
    async fn a_skill_that_needs_its_own_kind_is_not_chained_into_a_loop() {
        let r = registry();
        serving(
            &r,
            "127.0.0.1:1",
            card(
                "loop",
                0,
                vec![skill("refine", &[kinds::DATASET], &[kinds::DATASET])],
            ),
        );
        let err = Planner::default()
            .plan(&intent(&[Deliverable::Dataset]), &r)
            .unwrap_err();
        assert_eq!(err.reason, ErrorReason::NoAgentForSkill);
        assert!(
            err.message.contains("needs `sales.dataset` itself"),
            "{}",
            err.message
        );
        // With a source beside it, the source is chosen.
        source(&r, "127.0.0.1:2");
        let plan = Planner::default()
            .plan(&intent(&[Deliverable::Dataset]), &r)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(shape(&plan).len(), 1);
        assert_eq!(plan.steps[0].skill, "sales.extract");
    }
}
