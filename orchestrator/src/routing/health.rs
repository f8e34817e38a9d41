//! One health watcher per endpoint: `grpc.health.v1.Health/Watch` on the
//! Agent service name, falling back to a periodic `Check` when Watch is not
//! implemented. A name the server does not know (NOT_FOUND, or
//! SERVICE_UNKNOWN) counts as NOT_SERVING. Whenever the endpoint turns
//! SERVING its card is fetched again, so the skill index follows upgrades.

use std::sync::Arc;
use std::time::Duration;

use agentmesh_proto::v1::agent_service_client::AgentServiceClient;
use agentmesh_proto::v1::{AGENT_SERVICE_NAME, EndpointHealth, GetAgentCardRequest};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tracing::{debug, warn};

use agentmesh_runtime::auth::AuthChannel;

use crate::routing::registry::{CardInfo, Endpoint, Registry, Transport};

/// Starts watching `ep` until its watcher token is cancelled: gRPC health
/// for a mesh agent, the agent card for an A2A agent.
pub fn spawn_watcher(registry: Arc<Registry>, ep: Arc<Endpoint>) {
    tokio::spawn(async move {
        let token = ep.watcher.clone();
        let watched = async {
            match &ep.transport {
                Transport::Mesh(channel) => watch(&registry, &ep, channel.clone()).await,
                Transport::A2a(peer) => crate::a2a::peer::watch(&registry, &ep, peer).await,
            }
        };
        tokio::select! {
            () = watched => {}
            () = token.cancelled() => {}
        }
    });
}

fn request() -> HealthCheckRequest {
    HealthCheckRequest {
        service: AGENT_SERVICE_NAME.to_string(),
    }
}

async fn watch(registry: &Arc<Registry>, ep: &Arc<Endpoint>, channel: AuthChannel) {
    let interval = registry.discovery().health_check;
    let timeout = registry.discovery().connect_timeout;
    let mut health = HealthClient::new(channel.clone());
    loop {
        match tokio::time::timeout(timeout, health.watch(request())).await {
            Ok(Ok(resp)) => {
                let mut stream = resp.into_inner();
                while let Some(msg) = stream.next().await {
                    match msg {
                        Ok(msg) => apply(registry, ep, &channel, &msg).await,
                        Err(status) => {
                            debug!(address = %ep.address, %status, "health watch ended");
                            break;
                        }
                    }
                }
                registry.set_health(ep, EndpointHealth::Unreachable, None);
            }
            Ok(Err(status)) if status.code() == Code::Unimplemented => {
                check_until_error(registry, ep, &channel, &mut health, interval, timeout).await;
            }
            Ok(Err(status)) if status.code() == Code::NotFound => {
                registry.set_health(ep, EndpointHealth::NotServing, None);
            }
            Ok(Err(status)) => {
                debug!(address = %ep.address, %status, "health watch failed");
                registry.set_health(ep, EndpointHealth::Unreachable, None);
            }
            Err(_) => registry.set_health(ep, EndpointHealth::Unreachable, None),
        }
        tokio::time::sleep(interval).await;
    }
}

/// The fallback for servers without Watch: `Check` every `interval`.
async fn check_until_error(
    registry: &Arc<Registry>,
    ep: &Arc<Endpoint>,
    channel: &AuthChannel,
    health: &mut HealthClient<AuthChannel>,
    interval: Duration,
    timeout: Duration,
) {
    loop {
        match tokio::time::timeout(timeout, health.check(request())).await {
            Ok(Ok(resp)) => apply(registry, ep, channel, resp.get_ref()).await,
            Ok(Err(status)) if status.code() == Code::NotFound => {
                registry.set_health(ep, EndpointHealth::NotServing, None);
            }
            _ => return,
        }
        tokio::time::sleep(interval).await;
    }
}

async fn apply(
    registry: &Arc<Registry>,
    ep: &Arc<Endpoint>,
    channel: &AuthChannel,
    msg: &HealthCheckResponse,
) {
    let serving = msg.status() == ServingStatus::Serving;
    if !serving {
        registry.set_health(ep, EndpointHealth::NotServing, None);
        return;
    }
    if ep.health() == EndpointHealth::Serving && ep.card().is_some() {
        return;
    }
    match fetch_card(registry, channel).await {
        Ok(card) => registry.set_health(ep, EndpointHealth::Serving, Some(Arc::new(card))),
        Err(e) => {
            warn!(address = %ep.address, error = %e, "agent card unavailable; endpoint gets no work");
            registry.set_health(ep, EndpointHealth::NotServing, None);
        }
    }
}

async fn fetch_card(registry: &Registry, channel: &AuthChannel) -> Result<CardInfo, String> {
    let timeout = registry.discovery().connect_timeout;
    let mut client = AgentServiceClient::new(channel.clone());
    let resp = tokio::time::timeout(timeout, client.get_agent_card(GetAgentCardRequest {}))
        .await
        .map_err(|_| "GetAgentCard timed out".to_string())?
        .map_err(|s| format!("GetAgentCard: {}", s.message()))?;
    let card = resp
        .into_inner()
        .card
        .ok_or_else(|| "GetAgentCard returned no card".to_string())?;
    CardInfo::new(card).map_err(|e| e.to_string())
}
