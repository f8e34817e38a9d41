//! Helpers for orchestrator tests, by what they hold: [`agents`] tests
//! control, [`spawn`]ing them and the orchestrator on real loopback
//! sockets, and [`events`]: plan builders and reading a run's events.

pub mod agents;
pub mod events;
pub mod spawn;

pub use agents::*;
pub use events::*;
pub use spawn::*;
