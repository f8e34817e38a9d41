//! Connecting to the orchestrator, and what errors mean for the exit code.

use std::fmt;
use std::time::Duration;

use agentmesh_proto::error::MeshError;
use agentmesh_proto::v1::orchestrator_service_client::OrchestratorServiceClient;
use agentmesh_runtime::auth::{AuthChannel, CallCredentials};
use agentmesh_runtime::tls::{ClientTls, scheme};
use tonic::Code;
use tonic::transport::{Channel, ClientTlsConfig};

use crate::args::TlsArgs;

/// Largest message accepted from the orchestrator.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// Process exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success.
    Ok = 0,
    /// The run failed, or the server refused.
    Failed = 1,
    /// A best-effort run completed with gaps.
    Partial = 2,
    /// Bad usage or an invalid request.
    Usage = 64,
    /// The orchestrator cannot be reached.
    Unavailable = 69,
    /// The orchestrator is at capacity: try again later (EX_TEMPFAIL).
    TryLater = 75,
    /// No credential, a refused one, or not allowed (EX_NOPERM).
    NoPermission = 77,
    /// Canceled with Ctrl-C.
    Canceled = 130,
}

/// An error to print, with its exit code.
#[derive(Debug)]
pub struct CliError {
    /// Exit code.
    pub exit: Exit,
    /// What to print.
    pub message: String,
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

impl CliError {
    /// An error with `exit`.
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
        }
    }
}

impl From<tonic::Status> for CliError {
    fn from(status: tonic::Status) -> Self {
        // Every agentmesh status carries details (ErrorInfo). One without
        // them, CANCELLED, UNKNOWN, INTERNAL or UNAVAILABLE, comes from the
        // connection failing before an answer, as a TLS server closes it
        // on a plaintext client (which tonic reports one way or another,
        // depending on timing).
        if status.details().is_empty()
            && matches!(
                status.code(),
                Code::Cancelled | Code::Unknown | Code::Internal | Code::Unavailable
            )
        {
            return Self::new(
                Exit::Unavailable,
                format!(
                    "the connection failed before an answer ({}); if the server uses TLS, \
                     pass --tls or --tls-ca, and --tls-cert/--tls-key if it requires a client \
                     certificate",
                    status.message()
                ),
            );
        }
        let err = MeshError::from_status(&status);
        if let Some(after) = err.retry_after {
            return Self::new(
                Exit::TryLater,
                format!(
                    "{}: {}\nthe orchestrator is at capacity: try again in {:.1} s, or raise the limit named above",
                    err.reason.name(),
                    err.message,
                    after.as_secs_f64()
                ),
            );
        }
        let exit = match status.code() {
            Code::InvalidArgument => Exit::Usage,
            Code::Unavailable => Exit::Unavailable,
            Code::Unauthenticated | Code::PermissionDenied => Exit::NoPermission,
            Code::Cancelled => Exit::Canceled,
            _ => Exit::Failed,
        };
        Self::new(exit, format!("{}: {}", err.reason.name(), err.message))
    }
}

/// Where a command connects: an address, with TLS when asked for.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port` or a URL, as given.
    pub addr: String,
    tls: Option<ClientTlsConfig>,
    credentials: CallCredentials,
}

impl Target {
    /// `addr` in plaintext (the local mesh).
    pub fn plain(addr: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            tls: None,
            credentials: CallCredentials::none(),
        }
    }

    /// The same target, presenting `token` (`--token`) on every call.
    pub fn with_token(mut self, token: Option<&str>) -> Result<Self, CliError> {
        if let Some(token) = token {
            self.credentials = CallCredentials::bearer(token)
                .map_err(|e| CliError::new(Exit::Usage, format!("--token: {e}")))?;
        }
        Ok(self)
    }

    /// `addr` with the command line's TLS options: TLS is on with any of
    /// them, or for an `https://` address.
    pub fn new(addr: &str, args: &TlsArgs) -> Result<Self, CliError> {
        let wanted = args.tls
            || args.tls_ca.is_some()
            || args.tls_cert.is_some()
            || args.tls_key.is_some()
            || args.tls_domain.is_some()
            || addr.starts_with("https://");
        let tls = if wanted {
            let files = ClientTls {
                ca: args.tls_ca.clone(),
                cert: args.tls_cert.clone(),
                key: args.tls_key.clone(),
                domain: args.tls_domain.clone(),
            };
            Some(
                files
                    .load()
                    .map_err(|e| CliError::new(Exit::Usage, e.to_string()))?,
            )
        } else {
            None
        };
        Ok(Self {
            addr: addr.to_string(),
            tls,
            credentials: CallCredentials::none(),
        })
    }
}

/// A channel to `what` at `target`; `hint` follows the error when it
/// cannot be reached.
pub async fn channel(target: &Target, what: &str, hint: &str) -> Result<AuthChannel, CliError> {
    let addr = target.addr.as_str();
    let uri = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("{}://{addr}", scheme(target.tls.is_some()))
    };
    let mut endpoint = Channel::from_shared(uri)
        .map_err(|e| CliError::new(Exit::Usage, format!("{what} address {addr:?}: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5));
    if let Some(tls) = &target.tls {
        endpoint = endpoint
            .tls_config(tls.clone())
            .map_err(|e| CliError::new(Exit::Usage, format!("TLS: {}", causes(&e))))?;
    }
    let channel = endpoint.connect().await.map_err(|e| {
        CliError::new(
            Exit::Unavailable,
            format!("cannot reach {what} at {addr}: {}{hint}", causes(&e)),
        )
    })?;
    Ok(target.credentials.channel(channel))
}

/// An error with its causes, `outer: inner: ...` (tonic's transport error
/// alone says only "transport error").
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// A client of the orchestrator at `target`.
pub async fn connect(target: &Target) -> Result<OrchestratorServiceClient<AuthChannel>, CliError> {
    let channel = channel(
        target,
        "the orchestrator",
        " (is it running? try `meshctl up`)",
    )
    .await?;
    Ok(OrchestratorServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentmesh_proto::error::ErrorReason;

    #[test]
    fn a_full_orchestrator_says_when_to_try_again() {
        let status = MeshError::new(ErrorReason::ResourceExhausted, "10 runs are executing")
            .with_retry_after(std::time::Duration::from_millis(1_500))
            .into_status();
        let err = CliError::from(status);
        assert_eq!(err.exit, Exit::TryLater);
        assert!(
            err.message.contains("try again in 1.5 s"),
            "{}",
            err.message
        );
        let other = CliError::from(
            MeshError::new(ErrorReason::ResourceExhausted, "message too large").into_status(),
        );
        assert_eq!(other.exit, Exit::Failed, "no retry information: no promise");
    }
}
