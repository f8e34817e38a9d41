//! Playbooks: TOML files that fix the plan for a named intent (a set of
//! deliverables). Loaded once at start; a malformed playbook stops the
//! orchestrator from starting. Skills are checked against the registry
//! every time a playbook is used, like any plan.
//!
//! ```toml
//! name = "sales-report"
//! description = "The quarterly report with monthly detail"
//! deliverables = ["dataset", "metrics", "charts", "summary"]
//!
//! [[steps]]
//! id = "dataset"
//! skill = "sales.extract"
//! intent_fields = true            # period, filters, compare from the goal
//! input = { group_by = ["month", "region", "product_line", "channel"] }
//! expect = { non_empty = ["/rows"] }
//!
//! [[steps]]
//! id = "metrics"
//! skill = "analytics.metrics"
//! refs = [{ field = "dataset", from = "dataset" }]
//!
//! [[steps]]                       # an approval gate: no skill, a person
//! id = "approve"
//! after = ["metrics"]
//! approval = { prompt = "Approve the figures before the summary is written", timeout_ms = 3600000 }
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use agentmesh_proto::v1::Deliverable;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Why playbooks could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PlaybookError {
    /// A file or folder could not be read.
    #[error("playbook {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is not a valid playbook.
    #[error("playbook {path}: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// One input reference of a playbook step.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RefSpec {
    /// Input field to set.
    pub field: String,
    /// Step whose output is read.
    pub from: String,
    /// JSON Pointer into that output ("" = all of it).
    #[serde(default)]
    pub pointer: String,
}

/// Output checks of a playbook step.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExpectSpec {
    /// Pointers that must name non-empty arrays.
    #[serde(default)]
    pub non_empty: Vec<String>,
    /// Valid SVG artifacts required.
    #[serde(default)]
    pub min_svg_artifacts: u32,
    /// Pointer to text whose figures must trace to the step's input.
    #[serde(default)]
    pub faithful_text: String,
}

/// An approval gate: the run waits for a person at this step.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GateSpec {
    /// What the person is asked to approve.
    pub prompt: String,
    /// How long the gate waits (unset: `execution.answer_timeout_ms`).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// One step of a playbook.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Step id.
    pub id: String,
    /// Skill (empty for an approval gate).
    #[serde(default)]
    pub skill: String,
    /// Steps it runs after, besides those it reads from.
    #[serde(default)]
    pub after: Vec<String>,
    /// Makes the step an approval gate (it then has no skill, input or
    /// refs).
    #[serde(default)]
    pub approval: Option<GateSpec>,
    /// Literal input.
    #[serde(default)]
    pub input: Map<String, Value>,
    /// Fill `period`, `filters`, `compare` from the intent where the
    /// skill's input has them.
    #[serde(default)]
    pub intent_fields: bool,
    /// Inputs from earlier steps.
    #[serde(default)]
    pub refs: Vec<RefSpec>,
    /// Steps whose artifacts are passed on.
    #[serde(default)]
    pub artifacts_from: Vec<String>,
    /// Output checks.
    #[serde(default)]
    pub expect: ExpectSpec,
}

/// A playbook file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    /// Name shown in plans.
    pub name: String,
    /// For people.
    #[serde(default)]
    pub description: String,
    /// The intent it serves: exactly these deliverables.
    pub deliverables: Vec<String>,
    /// The steps.
    pub steps: Vec<StepSpec>,
}

impl Playbook {
    /// The deliverables as protocol values.
    pub fn deliverable_set(&self) -> BTreeSet<i32> {
        self.deliverables
            .iter()
            .filter_map(|d| deliverable(d))
            .map(|d| d as i32)
            .collect()
    }
}

fn deliverable(name: &str) -> Option<Deliverable> {
    match name {
        "dataset" => Some(Deliverable::Dataset),
        "metrics" => Some(Deliverable::Metrics),
        "charts" => Some(Deliverable::Charts),
        "summary" => Some(Deliverable::Summary),
        _ => None,
    }
}

/// Loads every `*.toml` file of `paths` (files, or folders of files).
pub fn load(paths: &[PathBuf]) -> Result<Vec<Playbook>, PlaybookError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|source| PlaybookError::Read {
                path: path.clone(),
                source,
            })?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    files.iter().map(|f| load_file(f)).collect()
}

fn load_file(path: &Path) -> Result<Playbook, PlaybookError> {
    let invalid = |problem: String| PlaybookError::Invalid {
        path: path.to_path_buf(),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|source| PlaybookError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let book: Playbook = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    if book.steps.is_empty() {
        return Err(invalid("no steps".into()));
    }
    for d in &book.deliverables {
        if deliverable(d).is_none() {
            return Err(invalid(format!(
                "deliverable {d:?} is not one of dataset, metrics, charts, summary"
            )));
        }
    }
    let mut ids = BTreeSet::new();
    for step in &book.steps {
        if !ids.insert(step.id.as_str()) {
            return Err(invalid(format!("step id {:?} is used twice", step.id)));
        }
    }
    for step in &book.steps {
        let gate = step.approval.is_some();
        if gate && (!step.skill.is_empty() || !step.input.is_empty() || !step.refs.is_empty()) {
            return Err(invalid(format!(
                "step {}: an approval gate runs no skill; leave skill, input and refs out",
                step.id
            )));
        }
        if !gate && step.skill.is_empty() {
            return Err(invalid(format!(
                "step {}: name a skill, or make it an approval gate",
                step.id
            )));
        }
        for from in step
            .refs
            .iter()
            .map(|r| &r.from)
            .chain(&step.artifacts_from)
            .chain(&step.after)
        {
            if !ids.contains(from.as_str()) {
                return Err(invalid(format!(
                    "step {} refers to {from:?}, which is not a step of this playbook",
                    step.id
                )));
            }
        }
    }
    Ok(book)
}
