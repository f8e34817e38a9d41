//! Who is calling: authentication on every agentmesh server, and the
//! credentials a client presents.
//!
//! A server with `[server.auth]` accepts a call when it carries one of:
//! - a bearer token listed (as its SHA-256) in the tokens file
//!   ([`tokens`]);
//! - a JWT signed by a key of the configured JWKS, for the configured
//!   issuer and audience ([`jwt`]);
//! - under mutual TLS, a client certificate whose identity is listed in
//!   `certificates` ([`certs`]).
//!
//! Each gives a [`Principal`]: a name and its [`Roles`]. The
//! [`Authenticate`] interceptor puts it in the request's extensions, or
//! answers UNAUTHENTICATED with reason `UNAUTHENTICATED` and metadata
//! `credential` saying what was wrong (never the credential itself). What
//! a principal may then do is each service's policy. Health and reflection
//! are never behind it: probes must work without credentials.

pub mod certs;
pub mod config;
pub mod credentials;
pub mod interceptor;
pub mod jwt;
pub mod principal;
pub mod tokens;

pub use config::{AuthConfig, JwtConfig};
pub use credentials::{AuthChannel, CallCredentials};
pub use interceptor::{Authenticate, Authenticator};
pub use principal::{Principal, Role, Roles};

use std::path::PathBuf;

/// Why authentication could not be set up (at start, never per call).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A file could not be read.
    #[error("{what} {path}: {source}")]
    Read {
        /// Which file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file's content is invalid.
    #[error("{what} {path}: {problem}")]
    Invalid {
        /// Which file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong, for people.
        problem: String,
    },
    /// The JWKS could not be fetched.
    #[error("server.auth.jwt.jwks_url {url}: {problem}")]
    Fetch {
        /// The URL.
        url: String,
        /// What went wrong.
        problem: String,
    },
    /// A credential to present could not be used.
    #[error("{0}")]
    Credential(String),
}

/// What was wrong with a refused credential: ErrorInfo metadata
/// `credential`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No credential at all.
    Missing,
    /// Not `Bearer <token>`, or not a well-formed token.
    Malformed,
    /// Well-formed, but not a token or key this server knows.
    Unknown,
    /// A JWT past its `exp`.
    Expired,
    /// A JWT before its `nbf`.
    NotYetValid,
    /// A JWT for another audience.
    WrongAudience,
    /// A JWT from another issuer.
    WrongIssuer,
    /// A JWT whose signature, algorithm or claims do not check out.
    Invalid,
}

impl Refusal {
    /// The wire name (ErrorInfo metadata `credential`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Unknown => "unknown",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongAudience => "wrong_audience",
            Self::WrongIssuer => "wrong_issuer",
            Self::Invalid => "invalid",
        }
    }

    /// The message sent: what is wrong, without the credential.
    pub fn message(self) -> &'static str {
        match self {
            Self::Missing => {
                "this call needs a credential: `authorization: Bearer <token>` or a client certificate"
            }
            Self::Malformed => "the credential is malformed: send `authorization: Bearer <token>`",
            Self::Unknown => "the credential is not known to this server",
            Self::Expired => "the token has expired",
            Self::NotYetValid => "the token is not valid yet",
            Self::WrongAudience => "the token is meant for another audience",
            Self::WrongIssuer => "the token is from an issuer this server does not trust",
            Self::Invalid => "the token's signature or claims do not check out",
        }
    }

    /// As a status.
    pub fn into_status(self) -> tonic::Status {
        agentmesh_proto::error::MeshError::new(
            agentmesh_proto::error::ErrorReason::Unauthenticated,
            self.message(),
        )
        .with_meta("credential", self.name())
        .into_status()
    }
}
