//! Bindings for the `agentmesh.v1` protocol, shared by every agentmesh crate.
//!
//! * [`v1`]: generated messages, clients and servers.
//! * [`error`]: the one place a domain error becomes a `tonic::Status` with a
//!   google.rpc.ErrorInfo reason (domain `agentmesh`), and back.
//! * [`json`]: `google.protobuf.Struct` <-> `serde_json` conversion.
//! * [`report`]: a run's report as JSON (meshctl's `report.json`, the A2A
//!   facade's `report` artifact).
//! * [`view`]: protocol messages as JSON for people (`meshctl --json`, the
//!   run viewer).
//! * [`codec`]: the codec of the generated clients and servers.
//!
//! `tonic`, `prost` and `prost_types` are re-exported so that versions cannot
//! drift between crates.

pub mod codec;
pub mod error;
pub mod json;
pub mod report;
pub mod view;

pub use prost;
pub use prost_types;
pub use tonic;

/// Generated code for package `agentmesh.v1`.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("agentmesh.v1");

    /// Fully-qualified name of the Agent service, used as the health-check
    /// service name.
    pub const AGENT_SERVICE_NAME: &str = "agentmesh.v1.AgentService";
    /// Fully-qualified name of the Orchestrator service.
    pub const ORCHESTRATOR_SERVICE_NAME: &str = "agentmesh.v1.OrchestratorService";
    /// Health and reflection name of the registry service.
    pub const REGISTRY_SERVICE_NAME: &str = "agentmesh.v1.RegistryService";
    /// Protocol version agents report in their card.
    pub const PROTOCOL_VERSION: &str = "agentmesh.v1";
}

/// Encoded `FileDescriptorSet` of every agentmesh.v1 file and its imports,
/// for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/agentmesh_descriptor.bin"));
