//! JWTs verified against a JWKS (a file, or an identity provider's URL
//! fetched at start and refreshed), with issuer and audience checks.

use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::RwLock;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::config::JwtConfig;
use super::principal::{Method, Principal, Role, Roles};
use super::{AuthError, Refusal};

/// One usable key of the set.
struct Key {
    kid: Option<String>,
    key: DecodingKey,
    validation: Validation,
}

/// Verifies JWTs against the current key set.
pub struct JwtVerifier {
    cfg: JwtConfig,
    keys: RwLock<Arc<Vec<Key>>>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.cfg.issuer)
            .field("audience", &self.cfg.audience)
            .field("keys", &self.keys.read().len())
            .finish()
    }
}

impl JwtVerifier {
    /// Loads the key set (reading the file or fetching the URL once).
    pub async fn load(cfg: &JwtConfig) -> Result<Arc<Self>, AuthError> {
        let set = match (&cfg.jwks_file, &cfg.jwks_url) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
                    what: "server.auth.jwt.jwks_file",
                    path: path.clone(),
                    source,
                })?;
                serde_json::from_str::<JwkSet>(&text).map_err(|e| AuthError::Invalid {
                    what: "server.auth.jwt.jwks_file",
                    path: path.clone(),
                    problem: e.to_string(),
                })?
            }
            (None, Some(url)) => fetch(url).await?,
            (None, None) => {
                return Err(AuthError::Credential(
                    "server.auth.jwt: set jwks_file or jwks_url".into(),
                ));
            }
        };
        let keys = keys_of(&set, cfg);
        if keys.is_empty() {
            return Err(AuthError::Credential(
                "server.auth.jwt: the JWKS has no usable key".into(),
            ));
        }
        Ok(Arc::new(Self {
            cfg: cfg.clone(),
            keys: RwLock::new(Arc::new(keys)),
        }))
    }

    /// With `jwks_url`: fetches the set every `jwks_refresh` until `stop`.
    /// A failed fetch or an empty set keeps the keys there were.
    pub async fn refresh(self: Arc<Self>, stop: CancellationToken) {
        let Some(url) = self.cfg.jwks_url.clone() else {
            return;
        };
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.cfg.jwks_refresh) => {}
                () = stop.cancelled() => return,
            }
            match fetch(&url).await {
                Ok(set) => {
                    let keys = keys_of(&set, &self.cfg);
                    if keys.is_empty() {
                        warn!(%url, "JWKS has no usable key; keeping the previous keys");
                    } else {
                        *self.keys.write() = Arc::new(keys);
                    }
                }
                Err(e) => warn!(error = %e, "JWKS refresh failed; keeping the previous keys"),
            }
        }
    }

    /// The principal a token proves, or why it proves none.
    pub fn verify(&self, token: &str) -> Result<Principal, Refusal> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::Malformed)?;
        let keys = Arc::clone(&self.keys.read());
        let candidates: Vec<&Key> = match &header.kid {
            Some(kid) => keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid.as_str()))
                .collect(),
            None => keys.iter().collect(),
        };
        if candidates.is_empty() {
            return Err(Refusal::Unknown);
        }
        let mut refusal = Refusal::Invalid;
        for key in candidates {
            match jsonwebtoken::decode::<serde_json::Map<String, Value>>(
                token,
                &key.key,
                &key.validation,
            ) {
                Ok(data) => return self.principal(&data.claims),
                Err(e) => {
                    refusal = refusal_of(e.kind());
                    // A signature that fails under one key may verify
                    // under another key without a kid; anything else is
                    // the token's own fault.
                    if !matches!(refusal, Refusal::Invalid) {
                        return Err(refusal);
                    }
                }
            }
        }
        Err(refusal)
    }

    fn principal(&self, claims: &serde_json::Map<String, Value>) -> Result<Principal, Refusal> {
        let name = claims
            .get(&self.cfg.principal_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .ok_or(Refusal::Invalid)?;
        let roles = match claims.get(&self.cfg.roles_claim) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .filter_map(Role::from_name)
                .collect(),
            Some(Value::String(s)) => s.split_whitespace().filter_map(Role::from_name).collect(),
            _ => Roles::NONE,
        };
        Ok(Principal {
            name: Arc::from(name),
            roles,
            method: Method::Jwt,
        })
    }
}

fn refusal_of(kind: &ErrorKind) -> Refusal {
    match kind {
        ErrorKind::ExpiredSignature => Refusal::Expired,
        ErrorKind::ImmatureSignature => Refusal::NotYetValid,
        ErrorKind::InvalidAudience => Refusal::WrongAudience,
        ErrorKind::InvalidIssuer => Refusal::WrongIssuer,
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => Refusal::Malformed,
        _ => Refusal::Invalid,
    }
}

/// The usable keys of a set, each with its validation: the key's own
/// algorithm if it names one, else its family's; issuer, audience, `exp`
/// required.
fn keys_of(set: &JwkSet, cfg: &JwtConfig) -> Vec<Key> {
    set.keys
        .iter()
        .filter_map(|jwk| {
            let key = match DecodingKey::from_jwk(jwk) {
                Ok(key) => key,
                Err(e) => {
                    warn!(kid = ?jwk.common.key_id, error = %e, "JWKS key skipped");
                    return None;
                }
            };
            let algorithms: Vec<Algorithm> = match jwk.common.key_algorithm {
                Some(alg) => Algorithm::try_from(alg)
                    .ok()
                    .filter(|a| a.family() == key.family())
                    .into_iter()
                    .collect(),
                None => key.family().algorithms().to_vec(),
            };
            let first = *algorithms.first()?;
            let mut validation = Validation::new(first);
            validation.algorithms = algorithms;
            validation.set_issuer(&[&cfg.issuer]);
            validation.set_audience(&[&cfg.audience]);
            validation.set_required_spec_claims(&["exp", "iss", "aud"]);
            validation.validate_nbf = true;
            validation.leeway = cfg.leeway.as_secs();
            Some(Key {
                kid: jwk.common.key_id.clone(),
                key,
                validation,
            })
        })
        .collect()
}

/// Fetches a JWKS over HTTP(S).
async fn fetch(url: &str) -> Result<JwkSet, AuthError> {
    let failed = |problem: String| AuthError::Fetch {
        url: url.to_string(),
        problem,
    };
    // rustls needs a process-wide crypto provider; a second install is a
    // no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let resp = client
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| failed(e.to_string()))?;
    resp.json::<JwkSet>()
        .await
        .map_err(|e| failed(format!("not a JWKS: {e}")))
}
