//! Error reasons on the wire.
//!
//! Every non-OK status agentmesh sends carries a google.rpc.ErrorInfo with
//! domain [`ERROR_DOMAIN`] and a reason from [`ErrorReason`]. [`MeshError`] is
//! the domain-side error; [`MeshError::into_status`] is the only place where a
//! reason becomes a gRPC status code.

use std::collections::HashMap;
use std::fmt;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

pub use crate::v1::ErrorReason;

/// ErrorInfo domain of every agentmesh error.
pub const ERROR_DOMAIN: &str = "agentmesh";

const REASON_PREFIX: &str = "ERROR_REASON_";

impl ErrorReason {
    /// The wire name: the enum value's name without `ERROR_REASON_`.
    pub fn name(self) -> &'static str {
        let full = self.as_str_name();
        full.strip_prefix(REASON_PREFIX).unwrap_or(full)
    }

    /// Parses a wire name such as `"UNKNOWN_SKILL"`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::from_str_name(&format!("{REASON_PREFIX}{name}"))
    }

    /// The gRPC code a status with this reason carries unless a caller
    /// chooses another.
    pub fn default_code(self) -> Code {
        match self {
            Self::Unspecified | Self::AgentFailed => Code::Internal,
            Self::UnknownSkill | Self::NotFound | Self::RunEvicted => Code::NotFound,
            Self::InvalidInput | Self::PlanInvalid | Self::GoalNotUnderstood => {
                Code::InvalidArgument
            }
            Self::NoAgentForSkill | Self::NotWaiting | Self::Rejected => Code::FailedPrecondition,
            Self::AgentUnavailable
            | Self::Interrupted
            | Self::StoreUnavailable
            | Self::RunMoved => Code::Unavailable,
            Self::OutputInvalid => Code::Internal,
            Self::DeadlineExceeded | Self::InputTimeout => Code::DeadlineExceeded,
            Self::Canceled => Code::Cancelled,
            Self::ResourceExhausted | Self::TokenBudgetExceeded => Code::ResourceExhausted,
            Self::Unauthenticated => Code::Unauthenticated,
            Self::PermissionDenied => Code::PermissionDenied,
        }
    }

    /// Whether another attempt may succeed where one failed for this reason
    /// (the one retry rule; the agent's own `retryable` flag can only add
    /// to it).
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Self::AgentUnavailable
                | Self::DeadlineExceeded
                | Self::OutputInvalid
                | Self::ResourceExhausted
                | Self::Unauthenticated
                | Self::PermissionDenied
        )
    }

    /// Whether a failure for this reason counts against the replica that
    /// failed (towards its ejection). A busy replica is not a faulty one;
    /// one that refuses the orchestrator's credentials is misconfigured, and
    /// gets no work until it is fixed.
    pub fn counts_against_endpoint(self) -> bool {
        matches!(
            self,
            Self::AgentUnavailable
                | Self::DeadlineExceeded
                | Self::OutputInvalid
                | Self::Unauthenticated
                | Self::PermissionDenied
        )
    }

    /// The reason a plain gRPC status without ErrorInfo stands for, so that
    /// transport failures get a reason too.
    pub fn from_code(code: Code) -> Self {
        match code {
            Code::Unavailable | Code::Unknown => Self::AgentUnavailable,
            Code::DeadlineExceeded => Self::DeadlineExceeded,
            Code::Cancelled => Self::Canceled,
            Code::ResourceExhausted | Code::OutOfRange => Self::ResourceExhausted,
            Code::InvalidArgument => Self::InvalidInput,
            Code::NotFound => Self::NotFound,
            Code::Unauthenticated => Self::Unauthenticated,
            Code::PermissionDenied => Self::PermissionDenied,
            _ => Self::AgentFailed,
        }
    }
}

/// A domain error with a machine-readable reason.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshError {
    /// Why.
    pub reason: ErrorReason,
    /// For people; must not leak internals.
    pub message: String,
    /// Extra ErrorInfo metadata, e.g. `{"step": "extract"}`.
    pub metadata: HashMap<String, String>,
    /// Overrides [`ErrorReason::default_code`].
    pub code: Option<Code>,
    /// When the client may try again (sent as google.rpc.RetryInfo).
    pub retry_after: Option<std::time::Duration>,
}

impl MeshError {
    /// A new error with the reason's default code.
    pub fn new(reason: ErrorReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            metadata: HashMap::new(),
            code: None,
            retry_after: None,
        }
    }

    /// Tells the client when it may try again.
    #[must_use]
    pub fn with_retry_after(mut self, after: std::time::Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// Adds an ErrorInfo metadata entry.
    #[must_use]
    pub fn with_meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Uses `code` instead of the reason's default code.
    #[must_use]
    pub fn with_code(mut self, code: Code) -> Self {
        self.code = Some(code);
        self
    }

    /// The gRPC code this error is sent with.
    pub fn code(&self) -> Code {
        self.code.unwrap_or_else(|| self.reason.default_code())
    }

    /// The status sent on the wire, with ErrorInfo attached.
    pub fn into_status(self) -> Status {
        let code = self.code();
        let mut details =
            ErrorDetails::with_error_info(self.reason.name(), ERROR_DOMAIN, self.metadata);
        if self.retry_after.is_some() {
            details.set_retry_info(self.retry_after);
        }
        Status::with_error_details(code, self.message, details)
    }

    /// Reads the reason back from a status. A status without agentmesh
    /// ErrorInfo (a transport failure, another server) gets the reason its
    /// code stands for.
    pub fn from_status(status: &Status) -> Self {
        let details = status.get_error_details();
        let info = details
            .error_info()
            .filter(|info| info.domain == ERROR_DOMAIN)
            .cloned();
        let (reason, metadata) = match info {
            Some(info) => (
                ErrorReason::from_name(&info.reason)
                    .unwrap_or_else(|| ErrorReason::from_code(status.code())),
                info.metadata,
            ),
            None => (ErrorReason::from_code(status.code()), HashMap::new()),
        };
        Self {
            reason,
            message: status.message().to_string(),
            metadata,
            code: Some(status.code()),
            retry_after: details.retry_info().and_then(|r| r.retry_delay),
        }
    }
}

impl fmt::Display for MeshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.name(), self.message)
    }
}

impl std::error::Error for MeshError {}

impl From<MeshError> for Status {
    fn from(err: MeshError) -> Self {
        err.into_status()
    }
}

/// The ErrorInfo reason of a status, if it carries an agentmesh one.
pub fn reason_of(status: &Status) -> Option<String> {
    status
        .get_error_details()
        .error_info()
        .filter(|info| info.domain == ERROR_DOMAIN)
        .map(|info| info.reason.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_names_round_trip() {
        for reason in [
            ErrorReason::UnknownSkill,
            ErrorReason::InvalidInput,
            ErrorReason::NoAgentForSkill,
            ErrorReason::PlanInvalid,
            ErrorReason::AgentUnavailable,
            ErrorReason::OutputInvalid,
            ErrorReason::DeadlineExceeded,
            ErrorReason::Canceled,
            ErrorReason::ResourceExhausted,
        ] {
            assert!(!reason.name().starts_with("ERROR_REASON_"));
            assert_eq!(ErrorReason::from_name(reason.name()), Some(reason));
        }
    }

    #[test]
    fn retry_information_survives_the_wire() {
        let after = std::time::Duration::from_millis(1_500);
        let status = MeshError::new(ErrorReason::ResourceExhausted, "full")
            .with_retry_after(after)
            .into_status();
        assert_eq!(status.code(), Code::ResourceExhausted);
        let back = MeshError::from_status(&status);
        assert_eq!(back.retry_after, Some(after));
        assert_eq!(back.reason, ErrorReason::ResourceExhausted);
        let plain =
            MeshError::from_status(&MeshError::new(ErrorReason::Canceled, "x").into_status());
        assert_eq!(plain.retry_after, None);
    }

    #[test]
    fn status_carries_error_info() {
        let status = MeshError::new(ErrorReason::PlanInvalid, "cycle through step b")
            .with_meta("step", "b")
            .into_status();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(reason_of(&status).as_deref(), Some("PLAN_INVALID"));
        let back = MeshError::from_status(&status);
        assert_eq!(back.reason, ErrorReason::PlanInvalid);
        assert_eq!(back.metadata.get("step").map(String::as_str), Some("b"));
    }

    #[test]
    fn plain_status_gets_reason_from_code() {
        let back = MeshError::from_status(&Status::unavailable("connection refused"));
        assert_eq!(back.reason, ErrorReason::AgentUnavailable);
        assert_eq!(reason_of(&Status::unavailable("x")), None);
    }
}
