//! Serving on real loopback sockets: agents (also ones that can crash as a
//! killed process would), an in-process orchestrator, and waiting until it
//! sees its agents.

use std::net::SocketAddr;
use std::time::Duration;

use agentmesh_orchestrator::OrchestratorConfig;
use agentmesh_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use agentmesh_proto::v1::orchestrator_service_client::OrchestratorServiceClient;
use agentmesh_proto::v1::{AGENT_SERVICE_NAME, EndpointHealth, ListAgentsRequest};
use agentmesh_runtime::{Agent, ServerConfig};
use tonic::transport::Channel;

use super::agents::{Impostor, RawAgent, TestAgent};
use super::events::CHAIN;

/// One [`TestAgent`] per skill of [`super::chain`], each served by
/// `replicas` in-process replicas that count together: the agents, and
/// every replica's address.
pub async fn chain_agents(replicas: usize) -> (Vec<TestAgent>, Vec<SocketAddr>) {
    let agents: Vec<TestAgent> = CHAIN.iter().map(|s| TestAgent::new(s, &[s])).collect();
    let mut addrs = Vec::new();
    for a in &agents {
        for _ in 0..replicas {
            addrs.push(crate::spawn_agent(a.clone()).await);
        }
    }
    (agents, addrs)
}

/// Serves `agent` on `ip:port` (port 0 = any) until the returned sender is
/// used or dropped, which starts a graceful shutdown (NOT_SERVING, drain).
pub async fn spawn_agent_at<A: Agent>(
    agent: A,
    addr: SocketAddr,
    cfg: ServerConfig,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(agentmesh_runtime::serve(agent, listener, cfg, async {
        let _ = rx.await;
    }));
    (addr, tx)
}

/// An agent served on its own runtime and thread; [`Crash::crash`] drops
/// that runtime, which closes every socket at once, as a killed process
/// would.
pub struct Crash(
    Option<std::sync::mpsc::Sender<()>>,
    Option<std::thread::JoinHandle<()>>,
);

impl Crash {
    /// Kills the agent abruptly.
    pub fn crash(mut self) {
        self.0.take();
        if let Some(t) = self.1.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Crash {
    fn drop(&mut self) {
        self.0.take();
    }
}

/// Serves `agent` on a new loopback port on a separate runtime.
pub fn spawn_crashable<A: Agent>(agent: A) -> (SocketAddr, Crash) {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (kill_tx, kill_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        addr_tx.send(listener.local_addr().unwrap()).unwrap();
        rt.spawn(agentmesh_runtime::serve(
            agent,
            listener,
            ServerConfig::default(),
            std::future::pending(),
        ));
        let _ = kill_rx.recv();
        rt.shutdown_background();
    });
    (addr_rx.recv().unwrap(), Crash(Some(kill_tx), Some(thread)))
}

struct NoDrain;

impl agentmesh_runtime::Drain for NoDrain {
    fn begin_drain(&self) {}
    async fn drained(&self) {}
    fn cancel_all(&self) {}
    fn in_flight(&self) -> usize {
        0
    }
}

/// Serves an `AgentService` implementation with health (the Agent service
/// SERVING) on a new loopback port.
pub async fn spawn_agent_service<S: AgentService>(agent: S) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        agentmesh_runtime::serve_routes(
            tonic::service::Routes::new(AgentServiceServer::new(agent)),
            listener,
            &ServerConfig::default(),
            &[AGENT_SERVICE_NAME],
            &NoDrain,
            std::future::pending(),
        )
        .await
    });
    addr
}

/// Serves a [`RawAgent`].
pub async fn spawn_raw(agent: RawAgent) -> SocketAddr {
    spawn_agent_service(agent).await
}

/// One agent and an orchestrator that has discovered it; the agent serves
/// until this is dropped.
pub struct Solo {
    /// The agent's address.
    pub agent: SocketAddr,
    /// A client of the orchestrator.
    pub client: OrchestratorServiceClient<Channel>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Serves `agent` and an orchestrator with it as a static endpoint, and
/// waits until the orchestrator sees it SERVING.
pub async fn solo<A: Agent>(agent: A) -> Solo {
    let (addr, stop) = spawn_agent_at(
        agent,
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::default(),
    )
    .await;
    let orch = spawn_orchestrator(test_config(&[addr])).await;
    let mut client = orchestrator(orch).await;
    wait_serving_agents(&mut client, 1).await;
    Solo {
        agent: addr,
        client,
        _stop: stop,
    }
}

/// Orchestrator settings for tests: fast health checks, short backoff and
/// heartbeat lease, `agents` as static endpoints.
pub fn test_config(agents: &[SocketAddr]) -> OrchestratorConfig {
    let mut cfg = OrchestratorConfig::default();
    cfg.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.discovery.endpoints = agents.iter().map(ToString::to_string).collect();
    cfg.discovery.health_check = Duration::from_millis(100);
    cfg.discovery.dns_refresh = Duration::from_millis(100);
    cfg.execution.backoff_base = Duration::from_millis(20);
    cfg.execution.backoff_max = Duration::from_millis(200);
    cfg.execution.heartbeat = Duration::from_millis(100);
    cfg.routing.no_replica_wait = Duration::from_millis(1_000);
    cfg
}

/// Serves an orchestrator with `cfg` on a new loopback port until the test
/// ends.
pub async fn spawn_orchestrator(cfg: OrchestratorConfig) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(agentmesh_orchestrator::serve(
        cfg,
        listener,
        std::future::pending(),
    ));
    addr
}

/// A client of the orchestrator at `addr`.
pub async fn orchestrator(addr: SocketAddr) -> OrchestratorServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    OrchestratorServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024)
}

/// A transport an [`OrchestratorServiceClient`] runs on: a plain
/// [`Channel`], or one that presents credentials.
pub trait Transport:
    tonic::client::GrpcService<
        tonic::body::Body,
        Error: Into<tonic::codegen::StdError>,
        ResponseBody: tonic::codegen::Body<
            Data = tonic::codegen::Bytes,
            Error: Into<tonic::codegen::StdError> + Send,
        > + Send
                          + 'static,
    >
{
}

impl<T> Transport for T where
    T: tonic::client::GrpcService<
            tonic::body::Body,
            Error: Into<tonic::codegen::StdError>,
            ResponseBody: tonic::codegen::Body<
                Data = tonic::codegen::Bytes,
                Error: Into<tonic::codegen::StdError> + Send,
            > + Send
                              + 'static,
        >
{
}

/// Every endpoint the orchestrator lists (`ListAgents`).
pub async fn endpoints<T: Transport>(
    client: &mut OrchestratorServiceClient<T>,
) -> Vec<agentmesh_proto::v1::AgentEndpoint> {
    client
        .list_agents(ListAgentsRequest {})
        .await
        .unwrap()
        .into_inner()
        .endpoints
}

/// Waits (bounded) until exactly `n` endpoints are SERVING; returns their
/// addresses.
pub async fn wait_serving_agents<T: Transport>(
    client: &mut OrchestratorServiceClient<T>,
    n: usize,
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let serving: Vec<String> = endpoints(client)
            .await
            .into_iter()
            .filter(|e| e.health() == EndpointHealth::Serving && e.card.is_some())
            .map(|e| e.address)
            .collect();
        if serving.len() == n {
            return serving;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {n} serving agents, have {serving:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Serves an [`Impostor`].
pub async fn spawn_impostor(agent: Impostor) -> SocketAddr {
    spawn_agent_service(agent).await
}
