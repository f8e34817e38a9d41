//! Where agents are and which replica gets a task.
//!
//! - [`registry`]: the endpoint table (health, cards, load, ejection) and
//!   replica choice;
//! - [`health`]: one health watcher per endpoint, started by the registry
//!   through the watcher it is given;
//! - [`discovery`]: static endpoints and DNS names re-resolved on a timer;
//! - [`leases`]: self-registration with a lease (the Registry API);
//! - [`queue`]: the per-skill wait for a busy skill, fair across runs.

pub mod discovery;
#[cfg(test)]
pub(crate) mod fixture;
pub mod health;
pub mod leases;
pub mod queue;
pub mod registry;

pub use registry::{CardInfo, Endpoint, NoSlot, Registry, SkillInfo, Slot, SlotRequest, Transport};
