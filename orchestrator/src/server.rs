//! Wiring: the registry and its discovery sources, the run core with the
//! report as its hooks, the goal front-end, and the Orchestrator and
//! Registry services, and the A2A facade's gRPC binding, on one gRPC server
//! with the same limits, health, reflection and graceful shutdown as every
//! agent (the A2A JSON-RPC binding and the run viewer each on its own HTTP
//! listener). Also the `orchestrator`
//! binary's [`Service`].

use std::future::Future;
use std::sync::Arc;

use a2a_grpc::GrpcHandler;
use a2a_pb::proto::a2a_service_server::A2aServiceServer;
use agentmesh_proto::v1::orchestrator_service_server::OrchestratorServiceServer;
use agentmesh_proto::v1::registry_service_server::RegistryServiceServer;
use agentmesh_proto::v1::{ORCHESTRATOR_SERVICE_NAME, REGISTRY_SERVICE_NAME};
use agentmesh_runtime::auth::{AuthError, Authenticate, Authenticator, CallCredentials};
use agentmesh_runtime::tls::{ClientTls, TlsError};
use agentmesh_runtime::{ServeError, serve_routes};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;
use tracing::info;

use agentmesh_runtime::config::TelemetryConfig;
use agentmesh_runtime::launch::Service;

use crate::a2a::facade::card::CardSource;
use crate::a2a::facade::{self, Facade};
use crate::a2a::peer::{Peer, PeerError};
use crate::access::limits::PrincipalLimits;
use crate::config::{OrchestratorConfig, PlannerMode};
use crate::goal::FrontEnd;
use crate::goal::llm::LlmPlanner;
use crate::goal::planner::Planner;
use crate::goal::playbook::{self, PlaybookError};
use crate::report::SalesReport;
use crate::routing::Registry;
use crate::routing::discovery::{self, DiscoveryError};
use crate::routing::health;
use crate::routing::leases::{Leases, RegistryApi};
use crate::run::Engine;
use crate::service::OrchestratorApi;
use crate::store::postgres::{PgOptions, PgStoreError, PostgresStore};
use crate::store::sqlite::{SqliteStore, StoreError};
use crate::store::{MemoryStore, Retention, RunStore};
use crate::viewer::Viewer;

/// Why the orchestrator could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    /// A discovery entry or the resolver is invalid.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// A playbook could not be loaded.
    #[error(transparent)]
    Playbook(#[from] PlaybookError),
    /// The run store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The shared run store (PostgreSQL) could not be opened.
    #[error(transparent)]
    SharedStore(#[from] PgStoreError),
    /// TLS towards the agents could not be set up.
    #[error("discovery.tls: {0}")]
    Tls(#[from] TlsError),
    /// The LLM planner's client could not be built.
    #[error("planning.llm: {0}")]
    Llm(#[from] agentmesh_llm::LlmError),
    /// The gRPC server failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// Authentication (`server.auth`) or the token for agents
    /// (`discovery.token_file`) could not be set up.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// An A2A agent of `discovery.a2a` could not be set up.
    #[error(transparent)]
    A2aPeer(#[from] PeerError),
    /// The HTTP listeners' TLS (server.tls) could not be loaded.
    #[error("a2a.listen or viewer.listen over TLS (server.tls): {source}")]
    HttpTls {
        /// Why.
        source: std::io::Error,
    },
    /// An HTTP listener (`a2a.listen`, `viewer.listen`) could not be bound.
    #[error("{setting} {addr}: {source}")]
    HttpListen {
        /// The setting that named the address.
        setting: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// The A2A gRPC service's name, for health.
const A2A_SERVICE_NAME: &str = "lf.a2a.v1.A2AService";
/// How long the A2A HTTP listener may take to close after the gRPC server.
const HTTP_CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Serves the orchestrator on `listener` until `shutdown` resolves.
pub async fn serve(
    cfg: OrchestratorConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), OrchestratorError> {
    let playbooks = playbook::load(&cfg.planning.playbooks)?;
    let cfg = Arc::new(cfg);
    let tls = cfg
        .discovery
        .tls
        .as_ref()
        .map(ClientTls::load)
        .transpose()?;
    let credentials = CallCredentials::from_file(cfg.discovery.token_file.as_deref())?;
    let registry = Registry::new(
        cfg.routing.clone(),
        cfg.discovery.clone(),
        tls,
        credentials,
        health::spawn_watcher,
    );
    discovery::start(&registry, &cfg.discovery)?;
    for peer in &cfg.discovery.a2a {
        let peer = Peer::new(peer, cfg.discovery.connect_timeout)?;
        registry.add_a2a(Arc::new(peer));
    }
    let leases = Leases::new(Arc::clone(&registry), cfg.discovery.clone());
    let retained = Retention {
        runs: cfg.store.retained_runs,
        bytes: cfg.store.retained_bytes,
    };
    let instance = instance_name(cfg.store.instance.as_deref());
    let store = open_store(&cfg, retained, &instance).await?;
    let engine = Engine::new(
        Arc::clone(&registry),
        Arc::clone(&cfg),
        store.run_store(),
        Arc::new(SalesReport),
    );
    engine.resume_unfinished(&instance);
    let mut front_end = FrontEnd::new(
        Arc::clone(&registry),
        Planner::new(playbooks),
        &cfg.execution,
    );
    let planning = &cfg.planning;
    if planning.mode != PlannerMode::Rules {
        // The key is read here, by the binary, from the variable the
        // config names; it is never in the config itself.
        let key = std::env::var(&planning.llm.api_key_env).ok();
        let llm = LlmPlanner::new(&planning.llm, key, planning.llm_tries)?;
        info!(mode = ?planning.mode, model = %planning.llm.model, "LLM planner on");
        front_end = front_end.with_llm(planning.mode, llm);
    }
    let max = cfg.server.max_message_bytes;
    let limits = PrincipalLimits::new(cfg.access.clone());
    let api = Arc::new(OrchestratorApi::new(Arc::clone(&engine), front_end, limits));
    let auth = match &cfg.server.auth {
        Some(auth) => {
            info!("authentication on: every call but health and reflection needs a credential");
            Some(Authenticator::load(auth, registry.shutdown.clone()).await?)
        }
        None => None,
    };
    let grpc_addr = listener.local_addr().unwrap_or(cfg.server.listen);
    let http_listener = bind_http("a2a.listen", cfg.a2a.listen).await?;
    let http_addr = http_listener.as_ref().and_then(|l| l.local_addr().ok());
    let card = Arc::new(CardSource::new(
        Arc::clone(&registry),
        &cfg,
        http_addr,
        grpc_addr,
    ));
    let viewer_api = Arc::clone(&api);
    let facade = Arc::new(Facade::new(
        Arc::clone(&api),
        Arc::clone(&engine),
        auth.clone(),
        card,
    ));
    let api = OrchestratorServiceServer::from_arc(api)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let reg = RegistryServiceServer::new(RegistryApi(leases))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let a2a = A2aServiceServer::new(GrpcHandler::new(Arc::clone(&facade)))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let routes = match &auth {
        Some(auth) => Routes::new(InterceptedService::new(
            api,
            Authenticate::new(Arc::clone(auth)),
        ))
        .add_service(InterceptedService::new(
            reg,
            Authenticate::new(Arc::clone(auth)),
        ))
        .add_service(InterceptedService::new(
            a2a,
            Authenticate::new(Arc::clone(auth)),
        )),
        None => Routes::new(api).add_service(reg).add_service(a2a),
    };
    let viewer_listener = bind_http("viewer.listen", cfg.viewer.listen).await?;
    let http_tls = match (
        http_listener.is_some() || viewer_listener.is_some(),
        &cfg.server.tls,
    ) {
        (true, Some(tls)) => Some(
            crate::http::tls(tls)
                .await
                .map_err(|source| OrchestratorError::HttpTls { source })?,
        ),
        _ => None,
    };
    let http_stop = CancellationToken::new();
    let mut http = Vec::new();
    if let Some(listener) = http_listener {
        http.push(tokio::spawn(facade::http::serve(
            listener,
            facade,
            auth.clone(),
            http_tls.clone(),
            http_stop.clone(),
        )));
    }
    if let Some(listener) = viewer_listener {
        let viewer = Viewer::new(viewer_api, auth, http_tls.is_some());
        http.push(tokio::spawn(crate::viewer::serve(
            listener,
            Arc::new(viewer),
            http_tls,
            http_stop.clone(),
        )));
    }
    if cfg.telemetry.metrics.is_some() {
        crate::metrics::watch(
            &mut agentmesh_runtime::metrics::exporter().lock(),
            Arc::clone(&registry),
            Arc::clone(&engine),
        );
    }
    info!(
        static_endpoints = cfg.discovery.endpoints.len(),
        dns_names = cfg.discovery.dns.len(),
        "orchestrator ready"
    );
    let result = serve_routes(
        routes,
        listener,
        &cfg.server,
        &[
            ORCHESTRATOR_SERVICE_NAME,
            REGISTRY_SERVICE_NAME,
            A2A_SERVICE_NAME,
        ],
        engine.as_ref(),
        shutdown,
    )
    .await;
    http_stop.cancel();
    let _ = tokio::time::timeout(HTTP_CLOSE_WAIT, futures_util::future::join_all(http)).await;
    registry.shutdown.cancel();
    // Every run has finished, or was canceled or suspended: write the last
    // events (and give the store lease up).
    store.close().await;
    Ok(result?)
}

/// The run store `store` configures, kept typed for its close.
enum Opened {
    Memory(Arc<MemoryStore>),
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PostgresStore>),
}

impl Opened {
    fn run_store(&self) -> Arc<dyn RunStore> {
        match self {
            Self::Memory(s) => s.clone(),
            Self::Sqlite(s) => s.clone(),
            Self::Postgres(s) => s.clone(),
        }
    }

    async fn close(self) {
        match self {
            Self::Memory(_) => {}
            Self::Sqlite(store) => {
                let _ = tokio::task::spawn_blocking(move || store.close()).await;
            }
            Self::Postgres(store) => store.close().await,
        }
    }
}

/// Opens the store `cfg.store` names: a shared PostgreSQL database
/// (`url`), an SQLite file (`path`), or memory.
/// Binds the HTTP listener `setting` names, if it names one.
async fn bind_http(
    setting: &'static str,
    addr: Option<std::net::SocketAddr>,
) -> Result<Option<TcpListener>, OrchestratorError> {
    let Some(addr) = addr else { return Ok(None) };
    TcpListener::bind(addr)
        .await
        .map(Some)
        .map_err(|source| OrchestratorError::HttpListen {
            setting,
            addr,
            source,
        })
}

async fn open_store(
    cfg: &OrchestratorConfig,
    retained: Retention,
    instance: &Arc<str>,
) -> Result<Opened, OrchestratorError> {
    let st = &cfg.store;
    if let Some(url) = &st.url {
        let store = PostgresStore::open(PgOptions {
            url: url.clone(),
            ca_file: st.ca_file.clone(),
            instance: Arc::clone(instance),
            lease: st.lease,
            poll: st.poll,
            pool_size: st.pool_size,
            retention: retained,
            stored_bytes: st.retained_stored_bytes,
        })
        .await?;
        return Ok(Opened::Postgres(store));
    }
    if let Some(path) = st.path.clone() {
        let shown = path.clone();
        let opened = tokio::task::spawn_blocking(move || SqliteStore::open(&path, retained))
            .await
            .map_err(|e| StoreError::Io {
                path: shown,
                source: std::io::Error::other(e),
            })??;
        return Ok(Opened::Sqlite(opened));
    }
    Ok(Opened::Memory(Arc::new(MemoryStore::new(retained))))
}

/// This orchestrator's name in the runs it resumes: `store.instance`, else
/// `$HOSTNAME` (the pod name in Kubernetes), else the kernel's host name.
fn instance_name(configured: Option<&str>) -> Arc<str> {
    let name = configured
        .map(str::to_string)
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "orchestrator".to_string());
    Arc::from(name)
}

/// The `orchestrator` binary.
pub struct OrchestratorService;

/// The orchestrator's own flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OrchestratorFlags {
    /// Agent address to add to discovery.endpoints (repeatable).
    #[arg(long = "agent", value_name = "HOST:PORT")]
    pub agents: Vec<String>,
    /// Address of the A2A HTTP listener (overrides a2a.listen).
    #[arg(long = "a2a-listen", value_name = "HOST:PORT")]
    pub a2a_listen: Option<std::net::SocketAddr>,
    /// Address of the run viewer's listener (overrides viewer.listen).
    #[arg(long = "viewer-listen", value_name = "HOST:PORT")]
    pub viewer_listen: Option<std::net::SocketAddr>,
}

impl Service for OrchestratorService {
    const NAME: &'static str = "orchestrator";
    const ABOUT: &'static str = "Serves the agentmesh Orchestrator API: discovers agents through health checks and delegates every step of a run to them.";
    type Flags = OrchestratorFlags;
    type Config = OrchestratorConfig;
    type Error = OrchestratorError;

    fn telemetry(cfg: &OrchestratorConfig) -> &TelemetryConfig {
        &cfg.telemetry
    }

    fn register_metrics(exporter: &mut agentmesh_runtime::metrics::Exporter) {
        exporter.register_once("orchestrator", crate::metrics::register);
    }

    async fn serve(
        mut cfg: OrchestratorConfig,
        flags: OrchestratorFlags,
    ) -> Result<(), OrchestratorError> {
        cfg.discovery.endpoints.extend(flags.agents);
        if let Some(addr) = flags.a2a_listen {
            cfg.a2a.listen = Some(addr);
        }
        if let Some(addr) = flags.viewer_listen {
            cfg.viewer.listen = Some(addr);
        }
        let listener = agentmesh_runtime::bind(&cfg.server).await?;
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, "listening");
        }
        serve(cfg, listener, agentmesh_runtime::shutdown::signal()).await
    }
}
