//! The client side: the bearer token a client presents on every call.

use std::path::Path;

use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

use super::AuthError;

/// A channel that presents [`CallCredentials`] on every call.
pub type AuthChannel = InterceptedService<Channel, CallCredentials>;

/// `authorization: Bearer <token>` on every call, or nothing.
#[derive(Clone, Default)]
pub struct CallCredentials {
    header: Option<AsciiMetadataValue>,
}

impl std::fmt::Debug for CallCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("CallCredentials")
            .field("bearer", &self.header.is_some())
            .finish()
    }
}

impl CallCredentials {
    /// No credential.
    pub fn none() -> Self {
        Self::default()
    }

    /// A bearer token.
    pub fn bearer(token: &str) -> Result<Self, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Credential("the token is empty".into()));
        }
        let mut header: AsciiMetadataValue = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| {
                AuthError::Credential("the token has characters a header cannot carry".into())
            })?;
        header.set_sensitive(true);
        Ok(Self {
            header: Some(header),
        })
    }

    /// The token in a file (a mounted Secret), or none when `path` is
    /// unset.
    pub fn from_file(path: Option<&Path>) -> Result<Self, AuthError> {
        let Some(path) = path else {
            return Ok(Self::none());
        };
        let token = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
            what: "token_file",
            path: path.to_path_buf(),
            source,
        })?;
        Self::bearer(&token)
    }

    /// `channel` presenting these credentials.
    pub fn channel(&self, channel: Channel) -> AuthChannel {
        InterceptedService::new(channel, self.clone())
    }
}

impl Interceptor for CallCredentials {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(header) = &self.header {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
        }
        Ok(request)
    }
}
