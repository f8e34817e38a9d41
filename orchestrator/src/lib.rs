//! The agentmesh orchestrator: finds agents through health checks, turns
//! goals into plans, runs plans by delegating every step to an agent over
//! gRPC, integrates the outputs into a report, and tells clients everything
//! as it happens. It never does an agent's work itself.
//!
//! The parts, and which way they depend on each other:
//! - [`routing`]: endpoints (static, DNS, self-registered with a lease),
//!   their health, cards and load, and replica choice;
//! - [`run`]: the run core. It takes a plan, drives its DAG through
//!   [`routing`] and tells everything as run events. It knows nothing of
//!   goals, of any domain or of reports: it is given [`run::RunHooks`];
//! - [`store`]: runs as event logs, in memory or on SQLite;
//! - [`events`]: every run event is built there;
//! - [`metrics`]: what is exported to Prometheus;
//! - [`goal`] (feature `goals`): the front-end that turns a goal into a
//!   plan before the run core sees it;
//! - [`report`] (feature `goals`): integrates a finished run's outputs into
//!   one report, as the run core's hook;
//! - [`a2a`]: the A2A facade (the mesh as an A2A agent) and A2A agents as
//!   sub-agents, reached through [`routing`] like any endpoint;
//! - [`access`]: who may do what (roles, run ownership, per-principal
//!   limits) once `[server.auth]` has said who is calling;
//! - [`viewer`] (feature `goals`): the run viewer, web pages over the
//!   Orchestrator API on their own HTTP listener ([`http`]);
//! - [`service`] and [`server`]: the gRPC adapter and the wiring.
//!
//! `cargo check -p agentmesh-orchestrator --no-default-features` builds the
//! run core, routing and the store alone.

pub mod a2a;
pub mod access;
pub mod config;
pub mod events;
pub mod metrics;
pub mod routing;
pub mod run;
pub mod store;

#[cfg(feature = "goals")]
pub mod goal;
#[cfg(feature = "goals")]
pub mod http;
#[cfg(feature = "goals")]
pub mod report;
#[cfg(feature = "goals")]
pub mod server;
#[cfg(feature = "goals")]
pub mod service;
#[cfg(feature = "goals")]
pub mod viewer;

pub use config::OrchestratorConfig;
#[cfg(feature = "goals")]
pub use server::{OrchestratorError, OrchestratorService, serve};
