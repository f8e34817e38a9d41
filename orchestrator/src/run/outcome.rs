//! What became of each step of a run.

use agentmesh_proto::v1::{Artifact, Provenance};
use serde_json::Value;

use crate::run::failure::Failure;

/// What a completed step hands to later steps and to the report.
pub struct StepResult {
    /// The validated output.
    pub output: Value,
    /// Its artifacts.
    pub artifacts: Vec<Artifact>,
    /// Who produced it.
    pub provenance: Provenance,
}

/// What became of one step.
pub enum Outcome {
    /// Not started (its inputs never existed, or the run stopped).
    NotRun,
    /// In flight.
    Running,
    /// Completed.
    Done(Box<StepResult>),
    /// Failed for good.
    Failed(Failure),
    /// Not run because a step it depends on failed.
    Skipped(String),
}
