//! Wiring: the registry and its discovery sources, the engine, and the
//! Orchestrator and Registry services on one gRPC server with the same
//! limits, health, reflection and graceful shutdown as every agent.

use std::future::Future;
use std::sync::Arc;

use agentmesh_proto::v1::orchestrator_service_server::OrchestratorServiceServer;
use agentmesh_proto::v1::registry_service_server::RegistryServiceServer;
use agentmesh_proto::v1::{ORCHESTRATOR_SERVICE_NAME, REGISTRY_SERVICE_NAME};
use agentmesh_runtime::tls::{ClientTls, TlsError};
use agentmesh_runtime::{ServeError, serve_routes};
use tokio::net::TcpListener;
use tonic::service::Routes;
use tracing::info;

use crate::config::OrchestratorConfig;
use crate::discovery::{self, DiscoveryError};
use crate::engine::Engine;
use crate::leases::{Leases, RegistryApi};
use crate::registry::Registry;
use crate::service::OrchestratorApi;
use crate::store::sqlite::{SqliteStore, StoreError};
use crate::store::{MemoryStore, RunStore};

/// Why the orchestrator could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    /// A discovery entry or the resolver is invalid.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// A playbook could not be loaded.
    #[error(transparent)]
    Playbook(#[from] crate::playbook::PlaybookError),
    /// The run store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// TLS towards the agents could not be set up.
    #[error("discovery.tls: {0}")]
    Tls(#[from] TlsError),
    /// The gRPC server failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// Serves the orchestrator on `listener` until `shutdown` resolves.
pub async fn serve(
    cfg: OrchestratorConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), OrchestratorError> {
    let playbooks = crate::playbook::load(&cfg.planning.playbooks)?;
    let cfg = Arc::new(cfg);
    let tls = cfg
        .discovery
        .tls
        .as_ref()
        .map(ClientTls::load)
        .transpose()?;
    let registry = Registry::new(cfg.routing.clone(), cfg.discovery.clone(), tls);
    discovery::start(&registry, &cfg.discovery)?;
    let leases = Leases::new(Arc::clone(&registry), cfg.discovery.clone());
    let retained = cfg.store.retained_runs;
    let (store, durable): (Arc<dyn RunStore>, _) = match cfg.store.path.clone() {
        Some(path) => {
            let opened = tokio::task::spawn_blocking(move || SqliteStore::open(&path, retained))
                .await
                .map_err(|e| StoreError::Io {
                    path: cfg.store.path.clone().unwrap_or_default(),
                    source: std::io::Error::other(e),
                })??;
            (opened.clone() as Arc<dyn RunStore>, Some(opened))
        }
        None => (
            Arc::new(MemoryStore::new(retained)) as Arc<dyn RunStore>,
            None,
        ),
    };
    let engine = Engine::new(
        Arc::clone(&registry),
        Arc::clone(&cfg),
        store,
        crate::planner::Planner::new(playbooks),
    );
    let max = cfg.server.max_message_bytes;
    let api = OrchestratorServiceServer::new(OrchestratorApi::new(Arc::clone(&engine)))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let reg = RegistryServiceServer::new(RegistryApi(leases))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    info!(
        static_endpoints = cfg.discovery.endpoints.len(),
        dns_names = cfg.discovery.dns.len(),
        "orchestrator ready"
    );
    let result = serve_routes(
        Routes::new(api).add_service(reg),
        listener,
        &cfg.server,
        &[ORCHESTRATOR_SERVICE_NAME, REGISTRY_SERVICE_NAME],
        engine.as_ref(),
        shutdown,
    )
    .await;
    registry.shutdown.cancel();
    if let Some(store) = durable {
        // Every run has finished or was canceled: write the last events.
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
    }
    Ok(result?)
}
