//! What the run core is given by whoever uses it. The core knows no domain
//! and builds no report; a front-end that does supplies these.

use agentmesh_proto::error::MeshError;
use agentmesh_proto::v1::{Artifact, Intent, Report};
use serde_json::Value;

use crate::run::outcome::Outcome;
use crate::run::plan::Plan;

/// A finished run, as the report hook sees it.
pub struct FinishedRun<'a> {
    /// The goal (or a label for an explicit plan).
    pub goal: &'a str,
    /// What the goal front-end understood, for runs started from a goal.
    pub intent: Option<&'a Intent>,
    /// The plan that ran.
    pub plan: &'a Plan,
    /// What became of each step; the hook may take outputs out of it.
    pub outcomes: &'a mut [Outcome],
    /// Why the run stopped early, if it did.
    pub stop: Option<&'a MeshError>,
}

/// A report and the artifact bytes that go with it.
pub struct BuiltReport {
    /// The structured report (artifacts listed without bytes).
    pub report: Report,
    /// Every artifact with its bytes, streamed to clients in chunks.
    pub artifacts: Vec<Artifact>,
}

/// The core's hooks.
pub trait RunHooks: Send + Sync {
    /// Checks that every figure in `text` is traceable to `input` (a plan
    /// step's `expect.faithful_text`); `Err` names what is not.
    fn check_faithful(&self, text: &str, input: &Value) -> Result<(), String>;

    /// Integrates a finished run into a report, or `None` for no report.
    fn integrate(&self, run: FinishedRun<'_>) -> Option<BuiltReport>;
}

/// No domain, no report: plans that ask for a faithfulness check fail it.
pub struct NoHooks;

impl RunHooks for NoHooks {
    fn check_faithful(&self, _text: &str, _input: &Value) -> Result<(), String> {
        Err("this orchestrator has no faithfulness check".into())
    }

    fn integrate(&self, _run: FinishedRun<'_>) -> Option<BuiltReport> {
        None
    }
}
