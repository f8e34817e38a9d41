//! The one backoff of the mesh: exponential with jitter, used by step
//! retries in the orchestrator and by agent registration. Which failures
//! are worth another attempt is decided next to the reasons
//! ([`agentmesh_proto::error::ErrorReason::retryable`]); this decides only
//! how long to wait.

use std::time::Duration;

/// Delays between attempts: `base * 2^(attempt-1)`, capped at `max`, then
/// scaled by a random factor in [0.5, 1) so that clients that failed
/// together do not retry together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failed attempt (before jitter).
    pub base: Duration,
    /// Longest delay (before jitter).
    pub max: Duration,
}

impl Backoff {
    /// The delay after failed attempt number `attempt` (1 = the first).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        exp.min(self.max).mul_f64(0.5 + fastrand::f64() * 0.5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_are_capped_and_jittered() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_millis(1_000),
        };
        for _ in 0..100 {
            let first = b.delay(1);
            assert!(first >= Duration::from_millis(50) && first < b.base);
            let third = b.delay(3);
            assert!(third >= Duration::from_millis(200) && third < Duration::from_millis(400));
            assert!(b.delay(30) < b.max);
            assert!(b.delay(u32::MAX) < b.max, "no overflow");
        }
    }
}
