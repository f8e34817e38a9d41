//! Agent2Agent (A2A v1.0), both ways, on the A2A SDK's types, bindings and
//! clients (`a2a-lf`, `a2a-server-lf`, `a2a-client-lf`, `a2a-grpc`):
//!
//! - [`facade`] (feature `goals`): the mesh as an A2A agent. A message's
//!   text is a goal, a task is a run, the run's events stream as status and
//!   artifact updates, the report's files are the task's artifacts;
//! - [`peer`]: A2A agents as sub-agents (`[[discovery.a2a]]`), watched
//!   through their cards and routed to like any endpoint;
//! - [`extension`]: the card extension both sides use for what A2A skills
//!   cannot say (schemas, content kinds, planning phrases).
//!
//! docs/A2A.md has the mapping tables.

pub mod extension;
#[cfg(feature = "goals")]
pub mod facade;
pub mod peer;
