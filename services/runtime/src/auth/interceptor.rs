//! The server side: [`Authenticator`] turns a call's credential into a
//! [`Principal`]; [`Authenticate`] is the tonic interceptor that puts it in
//! the request's extensions or refuses the call.

use std::collections::HashMap;
use std::sync::Arc;

use agentmesh_proto::error::{ErrorReason, MeshError};
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataMap;
use tonic::service::Interceptor;
use tonic::{Request, Status};

use super::config::AuthConfig;
use super::jwt::JwtVerifier;
use super::principal::{Method, Principal, Roles};
use super::tokens::Tokens;
use super::{AuthError, Refusal};

/// Everything a server knows to authenticate its callers by.
#[derive(Debug)]
pub struct Authenticator {
    tokens: Tokens,
    jwt: Option<Arc<JwtVerifier>>,
    certificates: HashMap<String, Roles>,
    task_callers: Vec<Arc<str>>,
}

impl Authenticator {
    /// Reads the tokens file and the JWKS of `cfg`; with a JWKS URL, keeps
    /// it fresh until `stop`.
    pub async fn load(cfg: &AuthConfig, stop: CancellationToken) -> Result<Arc<Self>, AuthError> {
        if let Some((key, problem)) = cfg.problem() {
            return Err(AuthError::Credential(format!("{key}: {problem}")));
        }
        let tokens = match &cfg.tokens_file {
            Some(path) => Tokens::load(path)?,
            None => Tokens::default(),
        };
        let jwt = match &cfg.jwt {
            Some(jwt) => {
                let verifier = JwtVerifier::load(jwt).await?;
                tokio::spawn(Arc::clone(&verifier).refresh(stop));
                Some(verifier)
            }
            None => None,
        };
        let certificates = cfg
            .certificates
            .iter()
            .map(|(name, roles)| (name.clone(), roles.iter().copied().collect()))
            .collect();
        Ok(Arc::new(Self {
            tokens,
            jwt,
            certificates,
            task_callers: cfg
                .task_callers
                .iter()
                .map(|s| Arc::from(s.as_str()))
                .collect(),
        }))
    }

    /// The principal of a call: from its bearer token when it has an
    /// `authorization` header, else from its client certificate.
    pub fn authenticate(
        &self,
        metadata: &MetadataMap,
        peer_cert: Option<&[u8]>,
    ) -> Result<Principal, Refusal> {
        if let Some(value) = metadata.get("authorization") {
            let token = bearer(value.to_str().map_err(|_| Refusal::Malformed)?)?;
            return self.token(token);
        }
        if let Some(der) = peer_cert
            && let Some(identity) = super::certs::identity(der)
            && let Some(roles) = self.certificates.get(&identity)
        {
            return Ok(Principal {
                name: Arc::from(identity),
                roles: *roles,
                method: Method::Certificate,
            });
        }
        Err(if peer_cert.is_some() {
            Refusal::Unknown
        } else {
            Refusal::Missing
        })
    }

    /// The principal of an HTTP request by its `Authorization` header
    /// value (`Bearer <token>`), for the orchestrator's HTTP listeners.
    pub fn authenticate_bearer(&self, authorization: Option<&str>) -> Result<Principal, Refusal> {
        self.token(bearer(authorization.ok_or(Refusal::Missing)?)?)
    }

    fn token(&self, token: &str) -> Result<Principal, Refusal> {
        if let Some(p) = self.tokens.principal(token) {
            return Ok(p.clone());
        }
        match &self.jwt {
            // A JWT is three base64url parts; anything else is an opaque
            // token that was not listed.
            Some(jwt) if token.split('.').count() == 3 => jwt.verify(token),
            _ => Err(Refusal::Unknown),
        }
    }

    /// Whether `principal` may send this agent tasks (`task_callers`).
    pub fn may_call_tasks(&self, principal: &Principal) -> bool {
        self.task_callers.is_empty() || self.task_callers.contains(&principal.name)
    }
}

/// The token of an `authorization: Bearer <token>` value.
fn bearer(value: &str) -> Result<&str, Refusal> {
    let (scheme, token) = value.trim().split_once(' ').ok_or(Refusal::Malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(Refusal::Malformed);
    }
    Ok(token)
}

/// The interceptor: authenticates every call of the service it wraps and
/// puts the [`Principal`] in the request's extensions. With
/// [`Authenticate::tasks`], also refuses callers not in `task_callers`
/// (an agent's AgentService).
#[derive(Clone)]
pub struct Authenticate {
    auth: Arc<Authenticator>,
    tasks: bool,
}

impl Authenticate {
    /// Authenticates calls; what each principal may do is the service's
    /// policy.
    pub fn new(auth: Arc<Authenticator>) -> Self {
        Self { auth, tasks: false }
    }

    /// Authenticates calls to an agent and accepts only `task_callers`.
    pub fn tasks(auth: Arc<Authenticator>) -> Self {
        Self { auth, tasks: true }
    }
}

impl Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let certs = request.peer_certs();
        let leaf = certs.as_ref().and_then(|c| c.first()).map(|c| c.as_ref());
        let principal = self
            .auth
            .authenticate(request.metadata(), leaf)
            .map_err(|refusal| {
                tracing::info!(
                    credential = refusal.name(),
                    "call refused: not authenticated"
                );
                refusal.into_status()
            })?;
        if self.tasks && !self.auth.may_call_tasks(&principal) {
            tracing::info!(caller = %principal.name, "call refused: not a task caller");
            return Err(MeshError::new(
                ErrorReason::PermissionDenied,
                "this agent accepts tasks only from its orchestrator (server.auth.task_callers)",
            )
            .with_meta("caller", &*principal.name)
            .into_status());
        }
        request.extensions_mut().insert(principal);
        Ok(request)
    }
}
