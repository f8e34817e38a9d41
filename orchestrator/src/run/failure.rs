//! Why an attempt or a step did not produce an output, and whether trying
//! again may help. The rule itself lives with the reasons
//! ([`ErrorReason::retryable`], [`ErrorReason::counts_against_endpoint`]).

use std::time::Duration;

use agentmesh_proto::error::{ErrorReason, MeshError};
use tonic::Code;

/// Why an attempt did not produce an output.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Machine-readable reason.
    pub reason: ErrorReason,
    /// For people.
    pub message: String,
    /// Whether another attempt may succeed.
    pub retryable: bool,
    /// The agent's hint for the next attempt.
    pub retry_after: Option<Duration>,
    /// Whether the failure counts against the replica (ejection).
    pub endpoint_fault: bool,
    /// Whether the next attempt must do the work again under a new
    /// idempotency key instead of following the task this one saw (an
    /// output the plan refused, a task the agent canceled itself).
    pub redo: bool,
}

impl Failure {
    /// A failure with the retry rule of its reason.
    pub fn new(reason: ErrorReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            retryable: reason.retryable(),
            retry_after: None,
            endpoint_fault: reason.counts_against_endpoint(),
            redo: false,
        }
    }

    /// The run was stopped (canceled, past its deadline, failed
    /// elsewhere): final, and no replica's fault.
    pub fn stopped(cause: Option<&MeshError>) -> Self {
        Self {
            reason: cause.map_or(ErrorReason::Canceled, |c| c.reason),
            message: cause.map_or_else(|| "the run was stopped".to_string(), |c| c.message.clone()),
            retryable: false,
            retry_after: None,
            endpoint_fault: false,
            redo: false,
        }
    }

    /// A call that ended with `status` instead of a task stream.
    pub fn from_status(status: &tonic::Status) -> Self {
        let err = MeshError::from_status(status);
        let mut f = Self::new(err.reason, err.message);
        // The agent went away while working (drain, crash): try elsewhere.
        if status.code() == Code::Cancelled {
            f.retryable = true;
            f.endpoint_fault = true;
        }
        f
    }

    /// A failure the agent reported for its task. A task it canceled
    /// itself (its shutdown, or a CancelTask for an abandoned attempt whose
    /// task a repeat with the same key followed) is done again elsewhere;
    /// a run that was stopped stops before any retry.
    pub fn from_agent(reason: ErrorReason, message: String, retryable: bool) -> Self {
        let mut f = Self::new(reason, message);
        f.retryable |= retryable;
        if reason == ErrorReason::Canceled {
            f.retryable = true;
            f.redo = true;
            f.message = format!("the agent canceled the task: {}", f.message);
        }
        f
    }

    /// The attempt outlived its deadline.
    pub fn deadline() -> Self {
        Self::new(
            ErrorReason::DeadlineExceeded,
            "the attempt did not finish within the step deadline",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_decides_retry_and_blame() {
        let cases = [
            (ErrorReason::AgentUnavailable, true, true),
            (ErrorReason::DeadlineExceeded, true, true),
            (ErrorReason::OutputInvalid, true, true),
            (ErrorReason::ResourceExhausted, true, false),
            (ErrorReason::InvalidInput, false, false),
            (ErrorReason::UnknownSkill, false, false),
            (ErrorReason::AgentFailed, false, false),
            (ErrorReason::Canceled, false, false),
        ];
        for (reason, retryable, blamed) in cases {
            let f = Failure::new(reason, "x");
            assert_eq!(
                (f.retryable, f.endpoint_fault),
                (retryable, blamed),
                "{reason:?}"
            );
        }
    }

    #[test]
    fn a_task_the_agent_canceled_is_done_again_without_blame() {
        let f = Failure::from_agent(ErrorReason::Canceled, "shutting down".into(), false);
        assert!(f.retryable && f.redo && !f.endpoint_fault, "{f:?}");
        let kept = Failure::from_agent(ErrorReason::AgentFailed, "bug".into(), true);
        assert!(kept.retryable && !kept.redo, "{kept:?}");
    }

    #[test]
    fn a_stream_cancelled_under_the_task_is_tried_elsewhere() {
        let f = Failure::from_status(&tonic::Status::cancelled("connection closed"));
        assert!(f.retryable && f.endpoint_fault);
        let stopped = Failure::stopped(None);
        assert_eq!(stopped.reason, ErrorReason::Canceled);
        assert!(!stopped.retryable && !stopped.endpoint_fault);
    }
}
