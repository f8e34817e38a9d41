//! The goal front-end: a goal's text becomes an intent (against the data's
//! catalog) and the intent a plan, before the run core sees anything.
//!
//! - [`intent`]: goal text → intent;
//! - [`catalog`]: the data's catalog, asked of the skill that describes it;
//! - [`planner`]: intent → plan, by playbook or by chaining skills;
//! - [`playbook`]: fixed plans for named intents, from files;
//! - [`vocabulary`]: the words that name kinds, from the agents' cards;
//! - [`words`]: tokens, deliverable words and filler, shared by both.

pub mod catalog;
pub mod intent;
pub mod planner;
pub mod playbook;
pub mod vocabulary;
pub mod words;

use std::sync::Arc;

use agentmesh_proto::error::MeshError;
use agentmesh_proto::v1::{Intent, PlanSpec, RunSpec};

use crate::config::ExecutionConfig;
use crate::routing::Registry;
use catalog::CatalogCache;
use planner::Planner;

/// A goal, read and planned.
pub struct Planned {
    /// The plan, to be validated by the run core like any client's.
    pub plan: PlanSpec,
    /// What was understood, as the protocol carries it.
    pub intent: Intent,
}

/// Goal → plan.
pub struct FrontEnd {
    registry: Arc<Registry>,
    planner: Planner,
    catalog: CatalogCache,
}

impl FrontEnd {
    /// A front-end planning with `planner` over the skills in `registry`.
    pub fn new(registry: Arc<Registry>, planner: Planner, execution: &ExecutionConfig) -> Self {
        Self {
            catalog: CatalogCache::new(execution),
            registry,
            planner,
        }
    }

    /// Reads `spec`'s goal (and parameters) against the data's catalog and
    /// plans it.
    pub async fn plan(&self, spec: &RunSpec) -> Result<Planned, MeshError> {
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
        let plan = self.planner.plan(&intent, &self.registry)?;
        Ok(Planned {
            plan,
            intent: intent.to_proto(),
        })
    }
}
