//! What a run's log says about its steps, for taking the run up again
//! after the orchestrator that drove it stopped: which steps completed
//! (their outputs, artifacts and provenance, kept), which failed for good,
//! and how far each other step's attempts got (their count, the replicas
//! tried, the idempotency key in use), so that the next attempt carries on
//! from there.

use std::collections::HashMap;
use std::sync::Arc;

use agentmesh_proto::error::ErrorReason;
use agentmesh_proto::json::from_opt_struct;
use agentmesh_proto::v1::{RunEvent, run_event::Event};
use serde_json::Value;

use crate::run::failure::Failure;
use crate::run::outcome::{Outcome, StepResult};
use crate::run::plan::Plan;

/// How far one step's attempts got.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StepHistory {
    /// Attempts started so far (the next is numbered one more).
    pub attempts: u32,
    /// Replicas whose attempts failed, oldest first.
    pub earlier: Vec<String>,
    /// The idempotency key of the latest attempt, if one started.
    pub key: Option<String>,
    /// The replica of the latest attempt: it may still hold the task (or
    /// its result), so the attempt sent again goes there when it is free.
    pub latest: Option<String>,
}

/// A run's steps as its log left them.
pub struct Prior {
    /// Done for completed steps, Failed for failed ones, NotRun otherwise.
    pub outcomes: Vec<Outcome>,
    /// Each step's attempts so far.
    pub history: Vec<StepHistory>,
}

impl Prior {
    /// A run that has not started: nothing done, no attempts.
    pub fn fresh(steps: usize) -> Self {
        Self {
            outcomes: (0..steps).map(|_| Outcome::NotRun).collect(),
            history: vec![StepHistory::default(); steps],
        }
    }

    /// Reads `events` (a run's log) against `plan`. Events of steps the
    /// plan does not have are ignored.
    pub fn read(plan: &Plan, events: &[Arc<RunEvent>]) -> Self {
        let mut prior = Self::fresh(plan.steps.len());
        let index: HashMap<&str, usize> = plan
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.spec.id.as_str(), i))
            .collect();
        // Replicas of every attempt, the latest last.
        let mut tried: Vec<Vec<String>> = vec![Vec::new(); plan.steps.len()];
        for ev in events {
            match &ev.event {
                Some(Event::StepStarted(s)) => {
                    let Some(&i) = index.get(s.step_id.as_str()) else {
                        continue;
                    };
                    let h = &mut prior.history[i];
                    h.attempts = h.attempts.max(s.attempt);
                    // Task ids are `<key>/<attempt>`.
                    h.key = s.task_id.rsplit_once('/').map(|(key, _)| key.to_string());
                    tried[i].push(s.endpoint.clone());
                }
                Some(Event::StepCompleted(c)) => {
                    let Some(&i) = index.get(c.step_id.as_str()) else {
                        continue;
                    };
                    prior.outcomes[i] = Outcome::Done(Box::new(StepResult {
                        output: Value::Object(from_opt_struct(c.output.as_ref())),
                        artifacts: c.step_artifacts.clone(),
                        provenance: c.provenance.clone().unwrap_or_default(),
                    }));
                }
                Some(Event::StepFailed(f)) => {
                    let Some(&i) = index.get(f.step_id.as_str()) else {
                        continue;
                    };
                    let reason =
                        ErrorReason::from_name(&f.reason).unwrap_or(ErrorReason::AgentFailed);
                    prior.outcomes[i] = Outcome::Failed(Failure::new(reason, f.message.clone()));
                }
                _ => {}
            }
        }
        // The latest attempt may still be alive on its replica: it is not
        // avoided.
        for (h, mut replicas) in prior.history.iter_mut().zip(tried) {
            h.latest = replicas.pop();
            h.earlier = replicas;
        }
        prior
    }

    /// Ids of the steps that completed.
    pub fn completed(&self, plan: &Plan) -> Vec<String> {
        self.ids(plan, |o, _| matches!(o, Outcome::Done(_)))
    }

    /// Ids of the steps that had started and not ended: sent again.
    pub fn in_flight(&self, plan: &Plan) -> Vec<String> {
        self.ids(plan, |o, h| matches!(o, Outcome::NotRun) && h.attempts > 0)
    }

    fn ids(&self, plan: &Plan, keep: impl Fn(&Outcome, &StepHistory) -> bool) -> Vec<String> {
        plan.steps
            .iter()
            .zip(self.outcomes.iter().zip(&self.history))
            .filter(|(_, (o, h))| keep(o, h))
            .map(|(s, _)| s.spec.id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentmesh_proto::v1::{
        Artifact, PlanSpec, PlanStep, Provenance, RunEvent, StepFailed, StepStarted,
    };

    use crate::config::ExecutionConfig;
    use crate::events;
    use crate::routing::fixture::{card, registry, serving, skill};

    fn plan(ids: &[&str]) -> Plan {
        let r = registry();
        serving(
            &r,
            "10.0.0.1:1",
            card("a", 0, vec![skill("work", &[], &[])]),
        );
        let steps = ids
            .iter()
            .map(|id| PlanStep {
                id: (*id).into(),
                skill: "work".into(),
                ..PlanStep::default()
            })
            .collect();
        crate::run::plan::validate(PlanSpec { steps }, &r, &ExecutionConfig::default())
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn log(events: Vec<Event>) -> Vec<Arc<RunEvent>> {
        events
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                Arc::new(RunEvent {
                    run_id: "r".into(),
                    seq: i as u64 + 1,
                    time: None,
                    event: Some(e),
                })
            })
            .collect()
    }

    fn started(step: &str, attempt: u32, endpoint: &str, key: &str) -> Event {
        Event::StepStarted(StepStarted {
            step_id: step.into(),
            attempt,
            endpoint: endpoint.into(),
            task_id: format!("{key}/{attempt}"),
            ..StepStarted::default()
        })
    }

    #[tokio::test]
    async fn reads_what_each_step_got_done() {
        let plan = plan(&["a", "b", "c", "d"]);
        let chart = Artifact {
            artifact_id: "chart".into(),
            ..Artifact::default()
        };
        let mut output = agentmesh_proto::prost_types::Struct::default();
        output.fields.insert(
            "n".into(),
            agentmesh_proto::prost_types::Value {
                kind: Some(agentmesh_proto::prost_types::value::Kind::NumberValue(7.0)),
            },
        );
        let events = log(vec![
            Event::Planned(Default::default()),
            started("a", 1, "x:1", "r/a"),
            events::step_completed(
                "a",
                output,
                Provenance {
                    step_id: "a".into(),
                    attempts: 1,
                    ..Provenance::default()
                },
                vec![chart.clone()],
            ),
            started("b", 1, "x:1", "r/b"),
            started("b", 2, "x:2", "r/b/after-1"),
            started("c", 1, "x:1", "r/c"),
            Event::StepFailed(StepFailed {
                step_id: "c".into(),
                reason: "INVALID_INPUT".into(),
                message: "bad".into(),
                attempts: 1,
            }),
            started("gone", 1, "x:9", "r/gone"),
        ]);
        let prior = Prior::read(&plan, &events);
        match &prior.outcomes[0] {
            Outcome::Done(done) => {
                assert_eq!(done.output["n"], 7.0);
                assert_eq!(done.artifacts, [chart]);
                assert_eq!(done.provenance.attempts, 1);
            }
            _ => panic!("a completed"),
        }
        assert!(matches!(&prior.outcomes[1], Outcome::NotRun));
        assert_eq!(
            prior.history[1],
            StepHistory {
                attempts: 2,
                earlier: vec!["x:1".into()],
                key: Some("r/b/after-1".into()),
                latest: Some("x:2".into()),
            },
            "the latest attempt's replica is preferred, not avoided; its key goes on"
        );
        assert!(
            matches!(&prior.outcomes[2], Outcome::Failed(f) if f.reason == ErrorReason::InvalidInput)
        );
        assert!(matches!(&prior.outcomes[3], Outcome::NotRun));
        assert_eq!(prior.history[3], StepHistory::default());
        assert_eq!(prior.completed(&plan), ["a"]);
        assert_eq!(prior.in_flight(&plan), ["b"]);
    }
}
