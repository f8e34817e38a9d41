//! The agentmesh Rust agent runtime.
//!
//! An agent crate implements [`Agent`] (its card and `execute`) and calls
//! [`serve`]; the runtime provides everything else a production gRPC agent
//! needs: the `agentmesh.v1.AgentService` protocol, grpc.health.v1, server
//! reflection, limits, graceful shutdown, typed config, tracing, and the task
//! bookkeeping described in [`tasks`].

pub mod agent;
pub mod auth;
pub mod backoff;
pub mod config;
pub mod event_log;
pub mod launch;
pub mod limits;
pub mod metrics;
pub mod registration;
pub mod schema;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod tasks;
pub mod telemetry;
pub mod tls;

pub use agent::{
    Agent, InputArtifact, JsonObject, OutArtifact, Question, SkillSpec, Task, TaskContext,
    TaskError, TaskOutput,
};
pub use agentmesh_proto::error::{ErrorReason, MeshError};
pub use config::{CommonArgs, ServerConfig, TelemetryConfig};
pub use server::{Drain, ServeError, bind, run_agent, serve, serve_routes};
