//! One step of a run: choose a replica, run an attempt, validate what came
//! back, and on a retryable failure back off (exponentially, with jitter)
//! and try again, preferring another replica (a reroute). Every attempt
//! carries the same idempotency key.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use agentmesh_proto::error::ErrorReason;
use agentmesh_proto::json::{to_struct, value_to_struct};
use agentmesh_proto::v1::{
    Artifact, ExecuteTaskRequest, Provenance, StepCompleted, StepFailed, StepRerouted,
    StepRetrying, StepStarted, TraceContext, part, run_event,
};
use agentmesh_runtime::JsonObject;
use agentmesh_runtime::faithfulness;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::attempt::{self, AttemptOutput, AttemptSpec, Failure};
use crate::engine::Engine;
use crate::plan::StepPlan;
use crate::registry::NoSlot;
use crate::store::RunRecord;

/// What a completed step hands to later steps and to the report.
pub struct StepResult {
    /// The validated output.
    pub output: Value,
    /// Its artifacts.
    pub artifacts: Vec<Artifact>,
    /// Who produced it.
    pub provenance: Provenance,
}

/// Run-wide values a step needs.
pub struct RunClock {
    /// End of the run.
    pub deadline: Instant,
    /// The same instant on the wall clock (sent to agents).
    pub deadline_wall: SystemTime,
    /// W3C traceparent of the run.
    pub traceparent: String,
}

impl RunClock {
    fn wall(&self, at: Instant) -> SystemTime {
        let before_end = self.deadline.saturating_duration_since(at);
        self.deadline_wall
            .checked_sub(before_end)
            .unwrap_or(self.deadline_wall)
    }
}

/// SHA-256 of the canonical (sorted-key) JSON of `input`, hex.
pub fn input_hash(input: &JsonObject) -> String {
    /// Feeds serialized JSON straight into the hash, without a buffer.
    struct Hashing(Sha256);
    impl std::io::Write for Hashing {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.update(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut hashing = Hashing(Sha256::new());
    // Writing into a hash cannot fail, and a JSON map always serializes.
    let _ = serde_json::to_writer(&mut hashing, input);
    let mut hex = String::with_capacity(64);
    agentmesh_runtime::telemetry::push_hex(&mut hex, &hashing.0.finalize());
    hex
}

/// Runs step `step` of `run` with `input` until it completes or fails for
/// good. Emits StepStarted/Retrying/Rerouted/Completed/Failed.
pub async fn run_step(
    engine: Arc<Engine>,
    run: Arc<RunRecord>,
    step: &StepPlan,
    input: JsonObject,
    artifacts: Vec<Artifact>,
    clock: &RunClock,
) -> Result<StepResult, Failure> {
    let cfg = &engine.cfg.execution;
    let id = step.spec.id.as_str();
    let skill = step.spec.skill.as_str();
    let input_hash = input_hash(&input);
    // The first attempt takes the converted input; a retry converts it
    // again. Retries are rare, and an input can be large (a whole dataset).
    let mut input_pb = Some(to_struct(&input));
    let input = Value::Object(input);
    let idempotency_key = [run.id.as_str(), id].join("/");
    let started = Instant::now();
    let mut earlier: Vec<String> = Vec::new();
    let mut last_reason = String::new();
    let mut attempt = 0;
    loop {
        attempt += 1;
        if run.stop.is_cancelled() {
            return Err(fail(&run, id, stopped(&run), attempt - 1));
        }
        let wait = Duration::from_millis(engine.cfg.routing.no_replica_wait_ms)
            .min(clock.deadline.saturating_duration_since(Instant::now()));
        let slot = match engine
            .registry
            .acquire(skill, &earlier, wait, &run.stop)
            .await
        {
            Ok(slot) => slot,
            Err(_) if run.stop.is_cancelled() => {
                return Err(fail(&run, id, stopped(&run), attempt - 1));
            }
            Err(why) => {
                let message = match why {
                    NoSlot::NoReplica => format!("no healthy agent offers skill {skill:?}"),
                    NoSlot::AllBusy => {
                        format!("every replica offering {skill:?} is at its max concurrency")
                    }
                };
                let f = Failure::new(ErrorReason::NoAgentForSkill, message);
                return Err(fail(&run, id, f, attempt - 1));
            }
        };
        let endpoint = slot.endpoint.address.clone();
        if let Some(prev) = earlier.last()
            && *prev != endpoint
        {
            run.append(run_event::Event::StepRerouted(StepRerouted {
                step_id: id.to_string(),
                from_endpoint: prev.clone(),
                to_endpoint: endpoint.clone(),
                reason: last_reason.clone(),
            }));
        }
        let task_id = [idempotency_key.as_str(), &attempt.to_string()].join("/");
        let attempt_deadline = (Instant::now() + step.deadline).min(clock.deadline);
        run.append(run_event::Event::StepStarted(StepStarted {
            step_id: id.to_string(),
            skill: skill.to_string(),
            agent: slot.card.card.name.clone(),
            endpoint: endpoint.clone(),
            attempt,
            task_id: task_id.clone(),
        }));
        let request = ExecuteTaskRequest {
            task_id,
            run_id: run.id.clone(),
            skill_id: skill.to_string(),
            input: Some(input_pb.take().unwrap_or_else(|| value_to_struct(&input))),
            input_artifacts: artifacts.clone(),
            idempotency_key: idempotency_key.clone(),
            attempt,
            deadline: Some(clock.wall(attempt_deadline).into()),
            heartbeat_interval: Duration::from_millis(cfg.heartbeat_ms).try_into().ok(),
            trace: Some(TraceContext {
                traceparent: clock.traceparent.clone(),
                tracestate: String::new(),
            }),
        };
        let result = attempt::run(
            slot.endpoint.channel.clone(),
            request,
            AttemptSpec {
                run: &run,
                step_id: id,
                deadline: attempt_deadline,
                lease: cfg.heartbeat_lease(),
                max_message_bytes: engine.cfg.server.max_message_bytes,
                max_artifact_bytes: cfg.max_artifact_bytes,
                progress_cap: cfg.max_progress_events,
            },
        )
        .await
        .and_then(|out| validate_output(step, &input, out));
        match result {
            Ok(out) => {
                engine.registry.record_outcome(&slot.endpoint, true);
                let provenance = Provenance {
                    step_id: id.to_string(),
                    agent: slot.card.card.name.clone(),
                    endpoint,
                    skill: skill.to_string(),
                    agent_version: slot.card.card.version.clone(),
                    attempts: attempt,
                    duration: started.elapsed().try_into().ok(),
                    input_hash,
                    earlier_endpoints: earlier,
                };
                drop(slot);
                let output = out.output_pb.unwrap_or_else(|| to_struct(&out.output));
                run.append(run_event::Event::StepCompleted(StepCompleted {
                    step_id: id.to_string(),
                    output: Some(output),
                    provenance: Some(provenance.clone()),
                }));
                return Ok(StepResult {
                    output: Value::Object(out.output),
                    artifacts: out.artifacts,
                    provenance,
                });
            }
            Err(f) => {
                if f.endpoint_fault {
                    engine.registry.record_outcome(&slot.endpoint, false);
                }
                drop(slot);
                earlier.push(endpoint);
                if run.stop.is_cancelled() {
                    return Err(fail(&run, id, stopped(&run), attempt));
                }
                if !f.retryable || attempt >= step.max_attempts {
                    return Err(fail(&run, id, f, attempt));
                }
                let delay = backoff(
                    attempt,
                    Duration::from_millis(cfg.backoff_base_ms),
                    Duration::from_millis(cfg.backoff_max_ms),
                )
                .max(f.retry_after.unwrap_or_default());
                run.append(run_event::Event::StepRetrying(StepRetrying {
                    step_id: id.to_string(),
                    failed_attempt: attempt,
                    reason: f.reason.name().to_string(),
                    message: f.message.clone(),
                    delay: delay.try_into().ok(),
                }));
                last_reason = f.reason.name().to_string();
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = run.stop.cancelled() => {
                        return Err(fail(&run, id, stopped(&run), attempt));
                    }
                }
            }
        }
    }
}

/// Exponential backoff with jitter: `base * 2^(attempt-1)`, capped, then
/// scaled by a random factor in [0.5, 1).
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    exp.min(max).mul_f64(0.5 + fastrand::f64() * 0.5)
}

fn stopped(run: &RunRecord) -> Failure {
    let cause = run.stop_cause();
    Failure::new(
        cause.map_or(ErrorReason::Canceled, |c| c.reason),
        cause.map_or_else(|| "the run was stopped".to_string(), |c| c.message.clone()),
    )
}

fn fail(run: &RunRecord, id: &str, f: Failure, attempts: u32) -> Failure {
    run.append(run_event::Event::StepFailed(StepFailed {
        step_id: id.to_string(),
        reason: f.reason.name().to_string(),
        message: f.message.clone(),
        attempts,
    }));
    f
}

/// The skill's output schema and the plan's expectations; a violation is a
/// failed attempt (OUTPUT_INVALID, retryable elsewhere).
fn validate_output(
    step: &StepPlan,
    input: &Value,
    out: AttemptOutput,
) -> Result<AttemptOutput, Failure> {
    let invalid = |message: String| Failure::new(ErrorReason::OutputInvalid, message);
    let value = Value::Object(out.output);
    step.skill
        .schemas
        .check_output_value(&value)
        .map_err(|e| invalid(e.message))?;
    let Some(expect) = &step.spec.expect else {
        let Value::Object(output) = value else {
            return Err(invalid("output is not an object".into()));
        };
        return Ok(AttemptOutput {
            output,
            output_pb: out.output_pb,
            artifacts: out.artifacts,
        });
    };
    for pointer in &expect.non_empty {
        let ok = value
            .pointer(pointer)
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        if !ok {
            return Err(invalid(format!(
                "expected a non-empty array at {pointer} of the output"
            )));
        }
    }
    let svgs = out.artifacts.iter().filter(|a| is_svg(a)).count();
    if svgs < expect.min_svg_artifacts as usize {
        return Err(invalid(format!(
            "expected at least {} valid SVG artifacts, got {svgs}",
            expect.min_svg_artifacts
        )));
    }
    if !expect.faithful_text.is_empty() {
        let text = value
            .pointer(&expect.faithful_text)
            .and_then(Value::as_str)
            .ok_or_else(|| {
                invalid(format!(
                    "expected text at {} of the output",
                    expect.faithful_text
                ))
            })?;
        let report = faithfulness::check(text, input, &faithfulness::labels(input));
        if !report.passed() {
            let shown: Vec<&str> = report
                .untraceable
                .iter()
                .map(|f| f.shown.as_str())
                .collect();
            return Err(invalid(format!(
                "the text at {} is not faithful to the step's input: {} not found in it",
                expect.faithful_text,
                shown.join(", ")
            )));
        }
    }
    let Value::Object(output) = value else {
        return Err(invalid("output is not an object".into()));
    };
    Ok(AttemptOutput {
        output,
        output_pb: out.output_pb,
        artifacts: out.artifacts,
    })
}

/// An `image/svg+xml` artifact whose bytes parse as XML with an `<svg>` root.
pub fn is_svg(artifact: &Artifact) -> bool {
    artifact.parts.iter().any(|p| {
        let Some(part::Content::Raw(bytes)) = &p.content else {
            return false;
        };
        p.media_type == "image/svg+xml"
            && std::str::from_utf8(bytes).is_ok_and(|text| {
                roxmltree::Document::parse(text)
                    .is_ok_and(|doc| doc.root_element().tag_name().name() == "svg")
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let base = Duration::from_millis(100);
        let max = Duration::from_millis(1_000);
        for _ in 0..100 {
            let first = backoff(1, base, max);
            assert!(first >= Duration::from_millis(50) && first < base);
            let third = backoff(3, base, max);
            assert!(third >= Duration::from_millis(200) && third < Duration::from_millis(400));
            assert!(backoff(30, base, max) < max);
        }
    }

    #[test]
    fn input_hash_is_sha256_of_the_canonical_json() {
        let a: JsonObject = serde_json::from_str(r#"{"b":2,"a":1}"#).unwrap();
        // `printf '{"a":1,"b":2}' | sha256sum`
        assert_eq!(
            input_hash(&a),
            "43258cff783fe7036d8a43033f830adfc60ec037382473548ac742b888292777"
        );
    }

    #[test]
    fn input_hash_ignores_key_order() {
        let a: JsonObject = serde_json::from_str(r#"{"a":1,"b":[1,2]}"#).unwrap();
        let b: JsonObject = serde_json::from_str(r#"{"b":[1,2],"a":1}"#).unwrap();
        assert_eq!(input_hash(&a), input_hash(&b));
        assert_eq!(input_hash(&a).len(), 64);
    }
}
