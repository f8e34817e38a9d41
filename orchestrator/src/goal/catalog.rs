//! What the data looks like, asked of the agent that describes it (a skill
//! producing `sales.schema`), cached for a short while. The intent parser
//! resolves periods and filters against it.
//!
//! The describe call is a task like any step's: it goes through the run
//! core's attempt (deadline, heartbeat lease, cancel on abandon), only its
//! events go nowhere.

use std::sync::Arc;
use std::time::Duration;

use agentmesh_proto::error::{ErrorReason, MeshError};
use agentmesh_proto::v1::{ExecuteTaskRequest, TraceContext};
use agentmesh_runtime::telemetry::context;
use agentmesh_sales::{Catalog, kinds};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::field::Empty;
use tracing::{Instrument as _, info_span, warn};

use crate::config::ExecutionConfig;
use crate::routing::{Registry, Slot, SlotRequest};
use crate::run::attempt::{self, AttemptOutput, AttemptSpec, Detached};
use crate::run::failure::Failure;

/// How long a fetched catalog is reused.
const TTL: Duration = Duration::from_secs(30);
/// How long a describe call may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the describe call waits for a replica to appear.
const SLOT_WAIT: Duration = Duration::from_secs(2);
/// Replicas tried for one catalog, when one fails.
const FETCH_TRIES: usize = 2;

/// A catalog and where it came from.
#[derive(Debug, Clone)]
pub struct Described {
    /// The catalog.
    pub catalog: Catalog,
    /// "sales.describe on 127.0.0.1:50051", for the plan's notes.
    pub source: String,
}

/// A short-lived cache of the catalog.
pub struct CatalogCache {
    cached: Mutex<Option<(Instant, Arc<Described>)>>,
    /// Held while the catalog is fetched: one describe call at a time,
    /// however many goals arrive together; the others wait and reuse it.
    fetching: tokio::sync::Mutex<()>,
    heartbeat: Duration,
    lease: Duration,
    max_message_bytes: usize,
    max_artifact_bytes: usize,
}

impl CatalogCache {
    /// An empty cache whose describe calls follow `execution`'s heartbeat
    /// and limits.
    pub fn new(execution: &ExecutionConfig) -> Self {
        Self {
            cached: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            heartbeat: execution.heartbeat,
            lease: execution.heartbeat_lease(),
            max_message_bytes: 16 * 1024 * 1024,
            max_artifact_bytes: execution.max_artifact_bytes,
        }
    }

    /// The catalog, fetched when the cached one is older than the TTL.
    pub async fn get(&self, registry: &Arc<Registry>) -> Result<Arc<Described>, MeshError> {
        if let Some(d) = self.fresh() {
            return Ok(d);
        }
        let _one = self.fetching.lock().await;
        // Someone else may have fetched it while this call waited.
        if let Some(d) = self.fresh() {
            return Ok(d);
        }
        let fresh = Arc::new(self.fetch(registry).await?);
        *self.cached.lock() = Some((Instant::now(), Arc::clone(&fresh)));
        Ok(fresh)
    }

    fn fresh(&self) -> Option<Arc<Described>> {
        self.cached
            .lock()
            .as_ref()
            .filter(|(at, _)| at.elapsed() < TTL)
            .map(|(_, d)| Arc::clone(d))
    }

    async fn fetch(&self, registry: &Arc<Registry>) -> Result<Described, MeshError> {
        let producers = registry.producers(kinds::SCHEMA);
        let Some((skill, _)) = producers.first() else {
            return Err(MeshError::new(
                ErrorReason::NoAgentForSkill,
                format!(
                    "no healthy agent offers a skill producing `{}`, needed to read the goal against the data",
                    kinds::SCHEMA
                ),
            ));
        };
        let skill_id = skill.skill.id.clone();
        let stop = CancellationToken::new();
        let deadline = Instant::now() + FETCH_TIMEOUT;
        // A replica that fails (it may be going away) is avoided for a
        // second try on another, within the same deadline.
        let mut avoid: Vec<String> = Vec::new();
        let (output, slot) = loop {
            let slot = registry
                .acquire(SlotRequest {
                    prefer: None,
                    skill: &skill_id,
                    avoid: &avoid,
                    run: "planning",
                    no_replica_wait: SLOT_WAIT,
                    until: deadline,
                    stop: &stop,
                    on_queued: &|_| {},
                })
                .await
                .map_err(|_| {
                    MeshError::new(
                        ErrorReason::NoAgentForSkill,
                        format!("no replica of {skill_id} is free to describe the data"),
                    )
                })?;
            match self.describe(&slot, &skill_id, deadline, &stop).await {
                Ok(output) => break (output, slot),
                Err(f) if f.retryable && avoid.len() < FETCH_TRIES - 1 => {
                    warn!(skill = %skill_id, replica = %slot.endpoint.address, error = %f.message, "describing the data failed; trying another replica");
                    avoid.push(slot.endpoint.address.clone());
                }
                Err(f) => {
                    return Err(MeshError::new(
                        ErrorReason::AgentUnavailable,
                        format!("{skill_id} could not describe the data: {}", f.message),
                    ));
                }
            }
        };
        let catalog = Catalog::from_output(&Value::Object(output.output))
            .map_err(|m| MeshError::new(ErrorReason::OutputInvalid, format!("{skill_id}: {m}")))?;
        Ok(Described {
            catalog,
            source: format!("{skill_id} on {}", slot.endpoint.address),
        })
    }

    /// One call of `skill_id` on `slot`'s replica for the catalog.
    async fn describe(
        &self,
        slot: &Slot,
        skill_id: &str,
        deadline: Instant,
        stop: &CancellationToken,
    ) -> Result<AttemptOutput, Failure> {
        let task_id = format!("catalog-{}", uuid::Uuid::new_v4());
        // Part of the trace of the run whose planning needed it.
        let span = info_span!(
            "catalog",
            otel.kind = "client",
            skill = %skill_id,
            replica = %slot.endpoint.address,
            task_id = %task_id,
            trace_id = Empty,
            span_id = Empty,
        );
        let (traceparent, tracestate) = context::fields(&context::join(&span, &context::current()));
        let request = ExecuteTaskRequest {
            task_id,
            run_id: "planning".into(),
            skill_id: skill_id.to_string(),
            attempt: 1,
            deadline: Some((std::time::SystemTime::now() + FETCH_TIMEOUT).into()),
            heartbeat_interval: self.heartbeat.try_into().ok(),
            trace: Some(TraceContext {
                traceparent,
                tracestate,
            }),
            ..ExecuteTaskRequest::default()
        };
        attempt::run(
            slot.endpoint.transport.clone(),
            request,
            AttemptSpec {
                observer: &Detached(stop.clone()),
                deadline,
                lease: self.lease,
                max_message_bytes: self.max_message_bytes,
                max_artifact_bytes: self.max_artifact_bytes,
            },
        )
        .instrument(span)
        .await
    }
}
