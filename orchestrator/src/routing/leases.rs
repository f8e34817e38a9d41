//! Self-registration: `agentmesh.v1.RegistryService`. An agent registers
//! its address with a lease it must renew; when the lease runs out (or the
//! agent deregisters) the endpoint loses this source.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use agentmesh_proto::error::{ErrorReason, MeshError};
use agentmesh_proto::v1::registry_service_server::RegistryService;
use agentmesh_proto::v1::{
    DeregisterRequest, DeregisterResponse, RegisterRequest, RegisterResponse, RenewLeaseRequest,
    RenewLeaseResponse,
};
use parking_lot::{Mutex, MutexGuard};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::{info, info_span};

use crate::access::{Action, Caller};
use crate::config::DiscoveryConfig;
use crate::routing::discovery::split_host_port;
use crate::routing::registry::Registry;
use agentmesh_runtime::telemetry::context;
use agentmesh_runtime::tls::scheme;

struct Lease {
    address: String,
    /// The principal that registered ("" when the registry is not
    /// authenticated): only it (or an admin) may renew or deregister.
    owner: Arc<str>,
    ttl: Duration,
    expires: Instant,
    stop: CancellationToken,
}

/// The registry RPCs and the leases they hold.
pub struct Leases {
    registry: Arc<Registry>,
    cfg: DiscoveryConfig,
    leases: Mutex<HashMap<String, Lease>>,
}

impl Leases {
    /// No leases yet.
    pub fn new(registry: Arc<Registry>, cfg: DiscoveryConfig) -> Arc<Self> {
        Arc::new(Self {
            registry,
            cfg,
            leases: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Lease>> {
        self.leases.lock()
    }

    fn source(lease_id: &str) -> String {
        format!("registered:{lease_id}")
    }

    /// The endpoint key of a registered address: `host:port`, from
    /// `host:port`, `http://host:port` or `https://host:port` (a trailing
    /// `/` allowed). A scheme must match how the orchestrator reaches
    /// agents (`https` when `discovery.tls` is set), so that a plaintext
    /// agent is never dialled over TLS, or the other way round.
    fn endpoint_of(&self, address: &str) -> Result<String, String> {
        let tls = self.registry.uses_tls();
        let (given, rest) = match address.split_once("://") {
            Some((given, rest)) => (Some(given.to_ascii_lowercase()), rest),
            None => (None, address),
        };
        match given.as_deref() {
            None => {}
            Some("http") if !tls => {}
            Some("https") if tls => {}
            Some(s @ ("http" | "https")) => {
                return Err(format!(
                    "the scheme is {s}, but this orchestrator reaches agents over {} \
                     (discovery.tls); register as {}://host:port or host:port",
                    if tls { "TLS" } else { "plaintext" },
                    scheme(tls)
                ));
            }
            Some(other) => return Err(format!("unknown scheme {other:?}; use http or https")),
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        split_host_port(rest)?;
        Ok(rest.to_string())
    }

    fn register(
        self: &Arc<Self>,
        req: &RegisterRequest,
        owner: Arc<str>,
    ) -> Result<RegisterResponse, MeshError> {
        let address = self.endpoint_of(&req.address).map_err(|problem| {
            MeshError::new(
                ErrorReason::InvalidInput,
                format!("address {:?}: {problem}", req.address),
            )
            .with_meta("field", "address")
        })?;
        let asked = match &req.lease {
            Some(d) => Duration::try_from(*d).map_err(|_| {
                MeshError::new(ErrorReason::InvalidInput, "lease must not be negative")
                    .with_meta("field", "lease")
            })?,
            None => self.cfg.lease_default,
        };
        let ttl = asked.clamp(self.cfg.lease_min, self.cfg.lease_max);
        let lease_id = uuid::Uuid::new_v4().to_string();
        let stop = self.registry.shutdown.child_token();
        {
            let mut leases = self.lock();
            if leases.len() >= self.cfg.max_registrations {
                return Err(MeshError::new(
                    ErrorReason::ResourceExhausted,
                    format!(
                        "{} registrations already; raise discovery.max_registrations",
                        leases.len()
                    ),
                ));
            }
            leases.insert(
                lease_id.clone(),
                Lease {
                    address: address.clone(),
                    owner,
                    ttl,
                    expires: Instant::now() + ttl,
                    stop: stop.clone(),
                },
            );
        }
        if let Err(problem) = self.registry.add_source(&address, &Self::source(&lease_id)) {
            self.lock().remove(&lease_id);
            return Err(
                MeshError::new(ErrorReason::InvalidInput, problem).with_meta("field", "address")
            );
        }
        info!(%address, lease_ms = ttl.as_millis() as u64, "agent registered");
        let this = Arc::clone(self);
        let id = lease_id.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = this.expire_when_due(&id) => {}
                () = stop.cancelled() => {}
            }
        });
        Ok(RegisterResponse {
            lease_id,
            lease: Some(ttl.try_into().unwrap_or_default()),
        })
    }

    /// Sleeps until the lease's expiry (renewals push it back), then drops it.
    async fn expire_when_due(&self, lease_id: &str) {
        loop {
            let Some(expires) = self.lock().get(lease_id).map(|l| l.expires) else {
                return;
            };
            tokio::time::sleep_until(expires).await;
            let expired = {
                let mut leases = self.lock();
                match leases.get(lease_id) {
                    Some(l) if l.expires <= Instant::now() => leases.remove(lease_id),
                    Some(_) => None,
                    None => return,
                }
            };
            if let Some(lease) = expired {
                info!(address = %lease.address, "registration lease expired");
                self.registry
                    .remove_source(&lease.address, &Self::source(lease_id));
                return;
            }
        }
    }

    fn unknown(lease_id: &str) -> MeshError {
        MeshError::new(
            ErrorReason::NotFound,
            format!("lease {lease_id:?} is unknown or expired; register again"),
        )
        .with_meta("lease_id", lease_id)
    }
}

/// The gRPC face of [`Leases`].
pub struct RegistryApi(pub Arc<Leases>);

/// The span of a registration call, continuing the agent's trace.
fn traced<T>(name: &'static str, request: &Request<T>, caller: &Caller) -> tracing::Span {
    let span = info_span!(
        parent: None,
        "registration",
        otel.name = name,
        otel.kind = "server",
        principal = %caller.owner(),
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    context::join(&span, &context::extract(request.metadata()));
    span
}

#[tonic::async_trait]
impl RegistryService for RegistryApi {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let caller = Caller::of(&request);
        let span = traced("register", &request, &caller);
        let _in_span = span.enter();
        caller.require(Action::Register)?;
        Leases::register(&self.0, request.get_ref(), caller.owner())
            .map(Response::new)
            .map_err(MeshError::into_status)
    }

    async fn renew_lease(
        &self,
        request: Request<RenewLeaseRequest>,
    ) -> Result<Response<RenewLeaseResponse>, Status> {
        let caller = Caller::of(&request);
        caller.require(Action::Register)?;
        let id = &request.get_ref().lease_id;
        let mut leases = self.0.lock();
        // Another principal's lease is unknown to the caller.
        let lease = leases
            .get_mut(id)
            .filter(|l| l.expires > Instant::now() && caller.owns_registration(&l.owner))
            .ok_or_else(|| Leases::unknown(id).into_status())?;
        lease.expires = Instant::now() + lease.ttl;
        Ok(Response::new(RenewLeaseResponse {
            lease: Some(lease.ttl.try_into().unwrap_or_default()),
        }))
    }

    async fn deregister(
        &self,
        request: Request<DeregisterRequest>,
    ) -> Result<Response<DeregisterResponse>, Status> {
        let caller = Caller::of(&request);
        let span = traced("deregister", &request, &caller);
        let _in_span = span.enter();
        caller.require(Action::Register)?;
        let id = &request.get_ref().lease_id;
        // Idempotent: a lease already gone (deregistered, expired, never
        // granted) is what was asked for; another principal's lease is
        // one the caller never had, and stays.
        let removed = {
            let mut leases = self.0.lock();
            match leases.get(id) {
                Some(l) if caller.owns_registration(&l.owner) => leases.remove(id),
                _ => None,
            }
        };
        let Some(lease) = removed else {
            return Ok(Response::new(DeregisterResponse {}));
        };
        lease.stop.cancel();
        info!(address = %lease.address, "agent deregistered");
        self.0
            .registry
            .remove_source(&lease.address, &Leases::source(id));
        Ok(Response::new(DeregisterResponse {}))
    }
}
