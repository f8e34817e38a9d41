//! The agentmesh orchestrator: finds agents through health checks, runs
//! plans by delegating every step to an agent over gRPC, and tells clients
//! everything as it happens. It never does an agent's work itself.
//!
//! - [`registry`]: endpoints, health, cards, load, ejection, replica choice;
//! - [`discovery`], [`leases`], [`health`]: where endpoints come from and how
//!   they are watched;
//! - [`plan`]: plan validation; [`engine`], [`step`], [`attempt`]: running it;
//! - [`store`]: runs as event logs; [`service`]: the Orchestrator API;
//! - [`server`]: the wiring.

pub mod attempt;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod discovery;
pub mod engine;
pub mod health;
pub mod intent;
pub mod leases;
pub mod plan;
pub mod planner;
pub mod playbook;
pub mod registry;
pub mod report;
pub mod server;
pub mod service;
pub mod step;
pub mod store;

pub use config::OrchestratorConfig;
pub use server::{OrchestratorError, serve};
