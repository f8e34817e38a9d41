//! The run core: a validated plan in, run events out.
//!
//! - [`plan`]: plan validation (ids, references, cycles, schemas, limits);
//! - [`engine`]: admission, the DAG, fan-in, finishing a run;
//! - [`step`]: one step's attempts, backoff and reroutes;
//! - [`attempt`]: one `ExecuteTask` call and the only reader of a task
//!   stream in the orchestrator;
//! - [`output`]: what a step's output must satisfy;
//! - [`outcome`], [`failure`]: what became of a step, and why one failed;
//! - [`waiting`]: steps waiting for people (agents' questions, approval
//!   gates);
//! - [`hooks`]: what the core is given by its user (the report, checks of
//!   written text).

pub mod attempt;
pub mod engine;
pub mod failure;
pub mod hooks;
pub mod outcome;
pub mod output;
pub mod plan;
pub mod resume;
pub mod step;
pub mod trace;
pub mod waiting;

pub use engine::{Accepted, Engine, Prepared};
pub use failure::Failure;
pub use hooks::{FinishedRun, NoHooks, RunHooks};
pub use outcome::{Outcome, StepResult};
