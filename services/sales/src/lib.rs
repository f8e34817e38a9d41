//! The example domain of agentmesh: sales reporting.
//!
//! Everything that knows what "sales" means lives here, shared by the data,
//! analytics and summary agents and by the orchestrator's goal front-end and
//! report: the [`kinds`] skills consume and produce, reporting [`period`]s,
//! money and percentage [`format`]ting, the data [`catalog`], the
//! [`faithfulness`] check on written figures, typed views of the agents'
//! outputs ([`model`]) and the report sections of each kind ([`render`]).
//! The mesh itself (the run core, routing, the agent runtime) knows none of
//! it.

pub mod catalog;
pub mod faithfulness;
pub mod format;
pub mod kinds;
pub mod model;
pub mod period;
pub mod render;

pub use catalog::Catalog;
pub use period::{Period, PeriodError, PeriodKind};
