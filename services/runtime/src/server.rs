//! `serve(listener, config, shutdown)`: an agent as a production gRPC server.
//!
//! Every agentmesh server (agents and the orchestrator) is wired the same
//! way by [`serve_routes`]: health for `""` and its services, reflection,
//! request timeout, per-connection concurrency limit with load shedding,
//! HTTP/2 stream limit and keepalive, message-size limits, and a graceful,
//! bounded shutdown:
//!
//! 1. the shutdown future resolves (SIGTERM/SIGINT in binaries);
//! 2. health turns NOT_SERVING for every name, new work is refused;
//! 3. in-flight work may finish within `shutdown_grace_ms`;
//! 4. what is left is cancelled, and the server stops (bounded).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use agentmesh_proto::FILE_DESCRIPTOR_SET;
use agentmesh_proto::v1::agent_service_server::AgentServiceServer;
use agentmesh_proto::v1::{AGENT_SERVICE_NAME, PROTOCOL_VERSION};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tower::util::MapResponseLayer;
use tracing::{info, warn};

use crate::agent::Agent;
use crate::auth::{Authenticate, Authenticator};
use crate::config::ServerConfig;
use crate::limits::explain_oversize;
use crate::schema::{SchemaError, SkillSchemas};
use crate::service::AgentGrpc;
use crate::tasks::{TaskLimits, TaskTable};

/// How long the server waits for connections to close after draining.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Why a server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The agent's card has a schema that does not compile.
    #[error("invalid agent card: {0}")]
    Card(#[from] SchemaError),
    /// The card names the same skill twice.
    #[error("invalid agent card: skill {0} is listed twice")]
    DuplicateSkill(String),
    /// Reflection could not be built from the descriptor sets.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// Self-registration could not be set up.
    #[error(transparent)]
    Registration(#[from] crate::registration::RegistrationError),
    /// Authentication could not be set up.
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    /// The listener could not be bound.
    #[error("bind {addr}: {source}")]
    Bind {
        /// Address asked for.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// In-flight work a server drains on shutdown.
pub trait Drain: Send + Sync {
    /// Refuse new work from now on.
    fn begin_drain(&self);
    /// Resolves when no work is in flight.
    fn drained(&self) -> impl Future<Output = ()> + Send;
    /// Cancel whatever is still in flight.
    fn cancel_all(&self);
    /// Work in flight now (tasks of an agent, runs of the orchestrator),
    /// logged when shutdown begins and when it ends.
    fn in_flight(&self) -> usize;
}

impl Drain for TaskTable {
    fn begin_drain(&self) {
        TaskTable::begin_drain(self);
    }
    fn drained(&self) -> impl Future<Output = ()> + Send {
        TaskTable::drained(self)
    }
    fn cancel_all(&self) {
        TaskTable::cancel_all(self);
    }
    fn in_flight(&self) -> usize {
        self.running()
    }
}

/// Serves `agent` on `listener` until `shutdown` resolves, then shuts down
/// gracefully. The card's `protocol_version` and `max_concurrency` are set
/// from the protocol and `cfg`.
pub async fn serve<A: Agent>(
    agent: A,
    listener: TcpListener,
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let agent = Arc::new(agent);
    let mut card = agent.card();
    card.protocol_version = PROTOCOL_VERSION.to_string();
    card.max_concurrency = u32::try_from(cfg.max_concurrent_tasks).unwrap_or(u32::MAX);
    let mut skills = HashMap::new();
    for skill in &card.skills {
        let schemas = Arc::new(SkillSchemas::compile(skill)?);
        if skills.insert(skill.id.clone(), schemas).is_some() {
            return Err(ServeError::DuplicateSkill(skill.id.clone()));
        }
    }
    let table = TaskTable::new(TaskLimits {
        max_concurrency: cfg.max_concurrent_tasks,
        chunk_bytes: cfg.artifact_chunk_bytes,
        idempotency_entries: cfg.idempotency_entries,
        idempotency_bytes: cfg.idempotency_bytes,
        idempotency_ttl: cfg.idempotency_ttl,
        finished_entries: cfg.idempotency_entries.max(1024),
    });
    info!(agent = %card.name, version = %card.version, skills = card.skills.len(), "agent ready");
    let cfg = Arc::new(cfg);
    let grpc = AgentGrpc::new(agent, card, skills, Arc::clone(&table), Arc::clone(&cfg));
    let svc = AgentServiceServer::new(grpc)
        .max_decoding_message_size(cfg.max_message_bytes)
        .max_encoding_message_size(cfg.max_message_bytes);
    // Deregister as soon as shutdown starts, so no new work is sent here.
    let registered = CancellationToken::new();
    let _deregister_on_exit = registered.clone().drop_guard();
    let routes = match &cfg.auth {
        Some(auth) => {
            let auth = Authenticator::load(auth, registered.clone()).await?;
            Routes::new(InterceptedService::new(svc, Authenticate::tasks(auth)))
        }
        None => Routes::new(svc),
    };
    if let Some(reg) = cfg.registration.clone() {
        let channel = crate::registration::channel(&reg)?;
        tokio::spawn(crate::registration::keep_registered(
            reg,
            channel,
            registered.clone(),
        ));
    }
    let shutdown = async move {
        shutdown.await;
        registered.cancel();
    };
    serve_routes(
        routes,
        listener,
        &cfg,
        &[AGENT_SERVICE_NAME],
        table.as_ref(),
        shutdown,
    )
    .await
}

/// Serves `routes` plus health and reflection with the limits of `cfg`, and
/// shuts down as described in the module docs. `health_names` are the
/// service names reported SERVING besides `""`.
pub async fn serve_routes<D: Drain>(
    routes: Routes,
    listener: TcpListener,
    cfg: &ServerConfig,
    health_names: &[&str],
    drain: &D,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    for name in health_names {
        reporter
            .set_service_status(*name, ServingStatus::Serving)
            .await;
    }
    let tls = cfg
        .tls
        .as_ref()
        .map(crate::tls::ServerTls::load)
        .transpose()?;
    // The plaintext health listener for probes stops when this returns.
    let health_stop = CancellationToken::new();
    let _stop_health = health_stop.clone().drop_guard();
    if let Some(addr) = cfg.health_listen {
        let listener = bind_addr(addr).await?;
        info!(addr = %addr, "health listener (plaintext, health only)");
        tokio::spawn(serve_health(listener, health.clone(), health_stop));
    }
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let routes = routes
        .add_service(health)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?);

    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let server = builder
        .timeout(cfg.request_timeout)
        .concurrency_limit_per_connection(cfg.concurrency_per_connection)
        .load_shed(true)
        .max_concurrent_streams(cfg.max_concurrent_streams)
        .http2_keepalive_interval(Some(cfg.keepalive))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .tcp_nodelay(true)
        .layer(MapResponseLayer::new(explain_oversize))
        .add_routes(routes)
        // The builder's tcp_nodelay applies only to listeners it binds
        // itself; without it, streamed events wait ~40 ms for delayed ACKs.
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            async {
                let _ = stop_rx.await;
            },
        );
    tokio::pin!(server);

    tokio::select! {
        res = &mut server => return res.map_err(ServeError::from),
        () = shutdown => {}
    }
    info!(
        in_flight = drain.in_flight(),
        "shutdown: reporting NOT_SERVING and draining in-flight work"
    );
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    for name in health_names {
        reporter
            .set_service_status(*name, ServingStatus::NotServing)
            .await;
    }
    drain.begin_drain();
    let grace = cfg.shutdown_grace;
    let drained = tokio::select! {
        res = &mut server => return res.map_err(ServeError::from),
        r = tokio::time::timeout(grace, drain.drained()) => r.is_ok(),
    };
    if !drained {
        warn!(
            grace_ms = grace.as_millis() as u64,
            "grace period over: cancelling in-flight work"
        );
        drain.cancel_all();
        tokio::select! {
            res = &mut server => return res.map_err(ServeError::from),
            _ = tokio::time::timeout(CLOSE_WAIT, drain.drained()) => {}
        }
    }
    let _ = stop_tx.send(());
    // Long-lived streams (health Watch) would hold the server open: bound it.
    match tokio::time::timeout(CLOSE_WAIT, &mut server).await {
        Ok(res) => res.map_err(ServeError::from)?,
        Err(_) => info!("closing remaining connections"),
    }
    info!(in_flight = drain.in_flight(), "shutdown complete");
    Ok(())
}

/// Serves only health on `listener`, in plaintext, until `stop`.
async fn serve_health<H: Health>(
    listener: TcpListener,
    health: HealthServer<H>,
    stop: CancellationToken,
) {
    let served = Server::builder()
        .timeout(Duration::from_secs(5))
        .concurrency_limit_per_connection(16)
        .add_service(health)
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            stop.cancelled_owned(),
        )
        .await;
    if let Err(e) = served {
        warn!(error = %e, "health listener failed");
    }
}

/// Binds `cfg.listen`.
pub async fn bind(cfg: &ServerConfig) -> Result<TcpListener, ServeError> {
    bind_addr(cfg.listen).await
}

async fn bind_addr(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Binds `server.listen` and serves `agent` until SIGTERM/SIGINT (logging
/// is set up by the caller: [`crate::launch`]).
pub async fn run_agent<A: Agent>(agent: A, server: ServerConfig) -> Result<(), ServeError> {
    let listener = bind(&server).await?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: server.listen,
        source,
    })?;
    info!(%addr, "listening");
    serve(agent, listener, server, crate::shutdown::signal()).await
}
