//! `[server.auth]`: how a server authenticates its callers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_with::{DurationMilliSeconds, serde_as};

use super::principal::Role;

/// Authentication of a server's callers. Present: every call but health
/// and reflection needs a credential. Absent: calls are not authenticated
/// (the default, for a mesh on a trusted network).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Bearer tokens: a TOML file of `[[tokens]]` entries, each with the
    /// token's `sha256` (hex), its `principal` and its `roles`. Only hashes
    /// are stored, so the file is not itself a credential.
    pub tokens_file: Option<PathBuf>,
    /// JWTs, verified against a JWKS.
    pub jwt: Option<JwtConfig>,
    /// Mutual TLS (`server.tls.client_ca`): certificate identity (its first
    /// URI SAN, such as a SPIFFE id, else its first DNS SAN, else its
    /// subject CN) → roles. A certificate not listed here is no credential.
    pub certificates: BTreeMap<String, Vec<Role>>,
    /// Agents only: the principals whose tasks this agent accepts (the
    /// orchestrator's identity). Empty: any authenticated caller.
    pub task_callers: Vec<String>,
}

/// `[server.auth.jwt]`.
#[serde_as]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// A JWKS (RFC 7517 key set) file. One of `jwks_file` and `jwks_url`.
    pub jwks_file: Option<PathBuf>,
    /// A JWKS URL (an identity provider's `jwks_uri`), fetched at start and
    /// every `jwks_refresh_ms`.
    pub jwks_url: Option<String>,
    /// How often the JWKS is fetched again from `jwks_url`; a failed fetch
    /// keeps the keys it had.
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(rename = "jwks_refresh_ms")]
    pub jwks_refresh: Duration,
    /// The `iss` every token must carry. Required.
    pub issuer: String,
    /// The `aud` every token must include. Required.
    pub audience: String,
    /// The claim that names the principal.
    pub principal_claim: String,
    /// The claim that lists the roles: an array of names, or one string of
    /// space-separated names. Names that are not agentmesh roles are
    /// ignored.
    pub roles_claim: String,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(rename = "leeway_ms")]
    pub leeway: Duration,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            jwks_file: None,
            jwks_url: None,
            jwks_refresh: Duration::from_secs(300),
            issuer: String::new(),
            audience: String::new(),
            principal_claim: "sub".into(),
            roles_claim: "roles".into(),
            leeway: Duration::from_secs(30),
        }
    }
}

impl AuthConfig {
    /// What is wrong with the settings, naming the key.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if self.tokens_file.is_none() && self.jwt.is_none() && self.certificates.is_empty() {
            return Some((
                "server.auth",
                "set tokens_file, jwt or certificates (or remove [server.auth] to turn authentication off)".into(),
            ));
        }
        let jwt = self.jwt.as_ref()?;
        if jwt.jwks_file.is_some() == jwt.jwks_url.is_some() {
            return Some((
                "server.auth.jwt",
                "set exactly one of jwks_file and jwks_url".into(),
            ));
        }
        if jwt.issuer.is_empty() {
            return Some(("server.auth.jwt.issuer", "is required".into()));
        }
        if jwt.audience.is_empty() {
            return Some(("server.auth.jwt.audience", "is required".into()));
        }
        if jwt.jwks_url.is_some() && jwt.jwks_refresh < Duration::from_secs(1) {
            return Some((
                "server.auth.jwt.jwks_refresh_ms",
                "must be at least 1000".into(),
            ));
        }
        None
    }
}
