//! Connecting to the orchestrator, and what errors mean for the exit code.

use std::fmt;
use std::time::Duration;

use agentmesh_proto::error::MeshError;
use agentmesh_proto::v1::orchestrator_service_client::OrchestratorServiceClient;
use tonic::Code;
use tonic::transport::Channel;

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
        let err = MeshError::from_status(&status);
        let exit = match status.code() {
            Code::InvalidArgument => Exit::Usage,
            Code::Unavailable => Exit::Unavailable,
            Code::Cancelled => Exit::Canceled,
            _ => Exit::Failed,
        };
        Self::new(exit, format!("{}: {}", err.reason.name(), err.message))
    }
}

/// A channel to `what` at `addr` (`host:port` or a URL); `hint` follows
/// the error when it cannot be reached.
pub async fn channel(addr: &str, what: &str, hint: &str) -> Result<Channel, CliError> {
    let uri = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    let endpoint = Channel::from_shared(uri)
        .map_err(|e| CliError::new(Exit::Usage, format!("{what} address {addr:?}: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5));
    endpoint.connect().await.map_err(|e| {
        CliError::new(
            Exit::Unavailable,
            format!("cannot reach {what} at {addr}: {e}{hint}"),
        )
    })
}

/// A client of the orchestrator at `addr` (`host:port` or a URL).
pub async fn connect(addr: &str) -> Result<OrchestratorServiceClient<Channel>, CliError> {
    let channel = channel(
        addr,
        "the orchestrator",
        " (is it running? try `meshctl up`)",
    )
    .await?;
    Ok(OrchestratorServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE))
}
