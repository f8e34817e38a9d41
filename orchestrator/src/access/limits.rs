//! Per-principal limits: runs executing at once and runs started per
//! second (`[access]`), answered with RESOURCE_EXHAUSTED and RetryInfo.
//! They apply to authenticated principals; without `[server.auth]` the
//! orchestrator's own admission (`execution.max_active_runs`) is the limit.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use agentmesh_proto::error::{ErrorReason, MeshError};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;

use crate::config::AccessConfig;

/// Rate-limiter entries kept before idle ones are dropped.
const RATE_KEYS_KEPT: usize = 10_000;

/// The limits and what each principal uses of them.
pub struct PrincipalLimits {
    cfg: AccessConfig,
    active: Mutex<HashMap<Arc<str>, usize>>,
    rate: Option<DefaultKeyedRateLimiter<Arc<str>>>,
    clock: DefaultClock,
}

/// A run counted against its owner's active runs until dropped.
pub struct ActiveSlot {
    limits: Arc<PrincipalLimits>,
    owner: Arc<str>,
}

impl Drop for ActiveSlot {
    fn drop(&mut self) {
        let mut active = self.limits.active.lock();
        if let Some(n) = active.get_mut(&self.owner) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                active.remove(&self.owner);
            }
        }
    }
}

impl PrincipalLimits {
    /// Limits as `cfg` sets them.
    pub fn new(cfg: AccessConfig) -> Arc<Self> {
        let rate = NonZeroU32::new(cfg.submits_per_second).map(|per_second| {
            let burst = NonZeroU32::new(cfg.submit_burst).unwrap_or(per_second);
            RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst))
        });
        Arc::new(Self {
            cfg,
            active: Mutex::new(HashMap::new()),
            rate,
            clock: DefaultClock::default(),
        })
    }

    /// Admits one more run of `owner`, or says which limit refuses it and
    /// when to try again. Runs of no one ("") are not limited here.
    pub fn admit(self: &Arc<Self>, owner: &Arc<str>) -> Result<Option<ActiveSlot>, MeshError> {
        if owner.is_empty() {
            return Ok(None);
        }
        let max = self.cfg.max_active_runs_per_principal;
        // Checked and counted under one lock: concurrent submits of one
        // principal cannot both take the last slot.
        let mut active = self.active.lock();
        if max > 0 && active.get(owner).copied().unwrap_or(0) >= max {
            return Err(MeshError::new(
                ErrorReason::ResourceExhausted,
                format!(
                    "{max} of your runs are executing already (access.max_active_runs_per_principal); try again when one ends"
                ),
            )
            .with_meta("limit", "access.max_active_runs_per_principal")
            .with_retry_after(self.cfg.retry_after));
        }
        if let Some(rate) = &self.rate {
            if let Err(not_until) = rate.check_key(owner) {
                let wait = not_until.wait_time_from(self.clock.now());
                return Err(MeshError::new(
                    ErrorReason::ResourceExhausted,
                    format!(
                        "you start runs faster than {} per second (access.submits_per_second); try again in {} ms",
                        self.cfg.submits_per_second,
                        wait.as_millis().max(1)
                    ),
                )
                .with_meta("limit", "access.submits_per_second")
                .with_retry_after(wait));
            }
            if rate.len() > RATE_KEYS_KEPT {
                rate.retain_recent();
            }
        }
        *active.entry(Arc::clone(owner)).or_insert(0) += 1;
        drop(active);
        Ok(Some(ActiveSlot {
            limits: Arc::clone(self),
            owner: Arc::clone(owner),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_active_runs_per_principal_and_frees_them() {
        let limits = PrincipalLimits::new(AccessConfig {
            max_active_runs_per_principal: 2,
            ..AccessConfig::default()
        });
        let alice: Arc<str> = Arc::from("alice");
        let bob: Arc<str> = Arc::from("bob");
        let a1 = limits.admit(&alice);
        let a2 = limits.admit(&alice);
        assert!(a1.is_ok() && a2.is_ok());
        let refused = limits.admit(&alice).err();
        assert_eq!(
            refused.as_ref().map(|e| e.reason),
            Some(ErrorReason::ResourceExhausted)
        );
        assert!(refused.is_some_and(|e| e.retry_after.is_some()));
        assert!(limits.admit(&bob).is_ok(), "bob has his own count");
        drop(a1);
        assert!(
            limits.admit(&alice).is_ok(),
            "a finished run frees its slot"
        );
        assert!(matches!(limits.admit(&Arc::from("")), Ok(None)));
    }

    #[test]
    fn limits_the_rate_per_principal_with_a_retry_delay() {
        let limits = PrincipalLimits::new(AccessConfig {
            submits_per_second: 1,
            submit_burst: 2,
            ..AccessConfig::default()
        });
        let alice: Arc<str> = Arc::from("alice");
        assert!(limits.admit(&alice).is_ok());
        assert!(limits.admit(&alice).is_ok());
        let refused = limits.admit(&alice).err();
        let wait = refused.as_ref().and_then(|e| e.retry_after);
        assert!(
            wait.is_some_and(
                |w| w > std::time::Duration::ZERO && w <= std::time::Duration::from_secs(1)
            ),
            "{refused:?}"
        );
        assert!(limits.admit(&Arc::from("bob")).is_ok());
    }
}
