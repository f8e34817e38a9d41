//! Self-registration: an agent tells an orchestrator where it listens
//! (`agentmesh.v1.RegistryService.Register`), renews its lease at a third of
//! the granted time, registers again if the lease was lost, and deregisters
//! when it shuts down. Useful where there is no DNS to discover agents by.

use std::time::Duration;

use agentmesh_proto::v1::registry_service_client::RegistryServiceClient;
use agentmesh_proto::v1::{DeregisterRequest, RegisterRequest, RenewLeaseRequest};
use opentelemetry::trace::SpanContext;
use serde::{Deserialize, Serialize};
use serde_with::{DurationMilliSeconds, serde_as};
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;
use tracing::{Instrument as _, info, info_span, warn};

use crate::auth::{AuthChannel, CallCredentials};
use crate::backoff::Backoff;
use crate::tls::{ClientTls, TlsError};

/// Where and how to register.
#[serde_as]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RegistrationConfig {
    /// The orchestrator, `host:port`.
    pub orchestrator: String,
    /// The address the orchestrator should dial, `host:port` (the pod IP in
    /// Kubernetes); required when listening on 0.0.0.0.
    pub advertise: String,
    /// Lease asked for.
    #[serde(default = "default_lease", rename = "lease_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub lease: Duration,
    /// TLS towards the orchestrator. Unset: plaintext.
    #[serde(default)]
    pub tls: Option<ClientTls>,
    /// A file holding the bearer token presented to the orchestrator's
    /// registry (a principal with the `agent` role), such as a mounted
    /// Secret. Unset: none (mutual TLS may identify the agent instead).
    #[serde(default)]
    pub token_file: Option<std::path::PathBuf>,
}

fn default_lease() -> Duration {
    Duration::from_secs(15)
}

/// Why registration could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// The orchestrator's address is not a valid URI authority.
    #[error("registration: invalid orchestrator address {0:?}")]
    Address(String),
    /// TLS could not be set up.
    #[error("registration: {0}")]
    Tls(#[from] TlsError),
    /// tonic refused the TLS settings.
    #[error("registration: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The token could not be read.
    #[error("registration: {0}")]
    Token(#[from] crate::auth::AuthError),
}

/// The connection to the orchestrator (made lazily, on first use),
/// presenting the registration's token on every call.
pub fn channel(cfg: &RegistrationConfig) -> Result<AuthChannel, RegistrationError> {
    let uri = format!(
        "{}://{}",
        crate::tls::scheme(cfg.tls.is_some()),
        cfg.orchestrator
    );
    let mut endpoint = Channel::from_shared(uri)
        .map_err(|_| RegistrationError::Address(cfg.orchestrator.clone()))?;
    if let Some(tls) = &cfg.tls {
        endpoint = endpoint.tls_config(tls.load()?)?;
    }
    let credentials = CallCredentials::from_file(cfg.token_file.as_deref())?;
    Ok(credentials.channel(endpoint.connect_lazy()))
}

/// `message` as a request that starts a trace of its own (a root span
/// named `name`), carried to the registry in its metadata. Renewals are not
/// traced: they are routine, every third of a lease.
fn traced<T>(name: &'static str, message: T) -> (tonic::Request<T>, tracing::Span) {
    let span = info_span!(
        parent: None,
        "registration",
        otel.name = name,
        otel.kind = "client",
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    let context = crate::telemetry::context::join(&span, &SpanContext::empty_context());
    let mut request = tonic::Request::new(message);
    crate::telemetry::context::inject(request.metadata_mut(), &context);
    (request, span)
}

/// Keeps the registration alive until `stop` is cancelled, then deregisters.
pub async fn keep_registered(
    cfg: RegistrationConfig,
    channel: AuthChannel,
    stop: CancellationToken,
) {
    let mut client = RegistryServiceClient::new(channel);
    let lease = cfg.lease;
    let backoff = Backoff {
        base: Duration::from_millis(200),
        max: lease / 3,
    };
    let mut failures = 0;
    let mut current: Option<(String, Duration)> = None;
    loop {
        let wait = match &current {
            None => {
                let (req, span) = traced(
                    "register",
                    RegisterRequest {
                        address: cfg.advertise.clone(),
                        lease: lease.try_into().ok(),
                    },
                );
                match client.register(req).instrument(span).await {
                    Ok(resp) => {
                        let resp = resp.into_inner();
                        let ttl = resp
                            .lease
                            .and_then(|d| Duration::try_from(d).ok())
                            .unwrap_or(lease);
                        info!(orchestrator = %cfg.orchestrator, advertise = %cfg.advertise, lease_ms = ttl.as_millis() as u64, "registered");
                        current = Some((resp.lease_id, ttl));
                        failures = 0;
                        ttl / 3
                    }
                    Err(status) => {
                        failures += 1;
                        warn!(%status, "registration failed; retrying");
                        backoff.delay(failures)
                    }
                }
            }
            Some((id, ttl)) => {
                let req = RenewLeaseRequest {
                    lease_id: id.clone(),
                };
                match client.renew_lease(req).await {
                    Ok(_) => {
                        failures = 0;
                        *ttl / 3
                    }
                    Err(status) if status.code() == Code::NotFound => {
                        warn!("registration lease lost; registering again");
                        current = None;
                        Duration::ZERO
                    }
                    Err(status) => {
                        failures += 1;
                        warn!(%status, "lease renewal failed; retrying");
                        backoff.delay(failures)
                    }
                }
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => break,
        }
    }
    if let Some((lease_id, _)) = current {
        let (req, span) = traced("deregister", DeregisterRequest { lease_id });
        let dereg = client.deregister(req).instrument(span);
        let _ = tokio::time::timeout(Duration::from_secs(2), dereg).await;
        info!("deregistered");
    }
}
