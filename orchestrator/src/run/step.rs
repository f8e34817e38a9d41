//! One step of a run: choose a replica, run an attempt, validate what came
//! back, and on a retryable failure back off (exponentially, with jitter)
//! and try again, preferring another replica (a reroute). Every attempt
//! carries the same idempotency key.

use std::sync::Arc;
use std::time::SystemTime;

use agentmesh_proto::error::ErrorReason;
use agentmesh_proto::json::{to_struct, value_to_struct};
use agentmesh_proto::v1::{
    Artifact, ExecuteTaskRequest, InputRequest, Provenance, TaskEvent, TraceContext,
};
use agentmesh_runtime::JsonObject;
use agentmesh_runtime::backoff::Backoff;
use agentmesh_runtime::telemetry::context;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, info};

use crate::config::OrchestratorConfig;
use crate::events;
use crate::metrics::{Retry, Skill, Work, reason_label};
use crate::routing::{NoSlot, Registry, SlotRequest};
use crate::run::attempt::{self, AttemptSpec, Observer};
use crate::run::failure::Failure;
use crate::run::hooks::RunHooks;
use crate::run::outcome::StepResult;
use crate::run::output;
use crate::run::plan::StepPlan;
use crate::run::resume::StepHistory;
use crate::run::trace::{Attempt, Traced};
use crate::run::waiting;
use crate::store::RunRecord;

/// What every step of every run works with.
pub struct StepEnv {
    /// Endpoints and replica choice.
    pub registry: Arc<Registry>,
    /// Configuration.
    pub cfg: Arc<OrchestratorConfig>,
    /// The user's hooks (checks of written text).
    pub hooks: Arc<dyn RunHooks>,
}

/// An attempt of a run's step: its events go into the run's log (progress
/// up to the run's cap), and the run's stop switch stops it.
struct StepObserver<'a> {
    run: &'a RunRecord,
    step_id: &'a str,
    attempt: u32,
    progress_cap: u64,
    agent: &'a str,
    answer_timeout: std::time::Duration,
}

impl Observer for StepObserver<'_> {
    fn forward(&self, event: TaskEvent) {
        self.run.append_progress(
            events::step_event(self.step_id, self.attempt, event),
            self.progress_cap,
        );
    }

    fn stop(&self) -> &CancellationToken {
        &self.run.stop
    }

    fn stopped(&self) -> Failure {
        Failure::stopped(self.run.stop_cause())
    }

    fn tokens(&self, used: u32) -> Result<(), Failure> {
        crate::metrics::metrics()
            .llm_tokens
            .get_or_create(&crate::metrics::Tokens { source: "agents" })
            .inc_by(u64::from(used));
        self.run.spend_tokens(used).map(|_| ()).map_err(|(total, budget)| {
            Failure::new(
                ErrorReason::TokenBudgetExceeded,
                format!(
                    "the run's token budget of {budget} is spent: {total} tokens used (parameters.token_budget)"
                ),
            )
        })
    }

    fn ask(&self, request: &InputRequest) -> Result<waiting::Asked, Failure> {
        Ok(waiting::ask(
            self.run,
            self.step_id,
            self.attempt,
            self.agent,
            request,
            self.answer_timeout,
        ))
    }

    fn answer(&self, input_id: String, until: SystemTime) -> attempt::Answer<'_> {
        Box::pin(async move {
            waiting::answer(self.run, self.step_id, &input_id, until)
                .await
                .map(|(answer, _)| answer)
        })
    }
}

/// Run-wide values a step needs.
pub struct RunClock {
    /// End of the run.
    pub deadline: Instant,
    /// The same instant on the wall clock (sent to agents).
    pub deadline_wall: SystemTime,
    /// The run's span and trace context.
    pub trace: Traced,
    /// Whether the deadline pauses while a step waits for a person.
    pub pauses: bool,
}

/// How much later a run's deadline is for its steps' waits for people:
/// the time they waited when the deadline `pauses`, else nothing.
pub fn waited(run: &RunRecord, pauses: bool) -> std::time::Duration {
    if pauses {
        run.waits.paused(SystemTime::now())
    } else {
        std::time::Duration::ZERO
    }
}

/// The monotonic instant of wall-clock time `wall` (in the past, too).
pub fn instant_at(wall: SystemTime) -> Instant {
    let now = Instant::now();
    match wall.duration_since(SystemTime::now()) {
        Ok(ahead) => now + ahead,
        Err(behind) => now.checked_sub(behind.duration()).unwrap_or(now),
    }
}

impl RunClock {
    /// When the run ends: the deadline, later by the time its steps have
    /// waited for people (unless the deadline runs on while they wait).
    pub fn end(&self, run: &RunRecord) -> Instant {
        self.deadline + waited(run, self.pauses)
    }

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

/// What a step starts with.
pub struct StepInput {
    /// Its input, refs filled in.
    pub input: JsonObject,
    /// Artifacts of the steps it takes them from.
    pub artifacts: Vec<Artifact>,
    /// Its attempts so far (none, unless the run was resumed).
    pub history: StepHistory,
}

/// Runs step `step` of `run` until it completes or fails for good, within
/// its own span. Emits StepStarted/Retrying/Rerouted/Completed/Failed.
pub async fn run_step(
    env: &StepEnv,
    run: Arc<RunRecord>,
    step: &StepPlan,
    given: StepInput,
    clock: &RunClock,
) -> Result<StepResult, Failure> {
    let trace = Traced::step(&clock.trace, &step.spec.id, &step.spec.skill);
    let result = attempts(env, run, step, given, clock, &trace)
        .instrument(trace.span.clone())
        .await;
    trace.outcome(&match &result {
        Ok(_) => "completed".to_string(),
        Err(f) => reason_label(f.reason),
    });
    result
}

/// The attempts of a step, until one succeeds or the step fails for good.
async fn attempts(
    env: &StepEnv,
    run: Arc<RunRecord>,
    step: &StepPlan,
    given: StepInput,
    clock: &RunClock,
    step_trace: &Traced,
) -> Result<StepResult, Failure> {
    let StepInput {
        input,
        artifacts,
        history,
    } = given;
    let cfg = &env.cfg.execution;
    let backoff = Backoff {
        base: cfg.backoff_base,
        max: cfg.backoff_max,
    };
    let id = step.spec.id.as_str();
    let fail = |f: Failure, attempts: u32| {
        run.append(events::step_failed(id, f.reason, &f.message, attempts));
        f
    };
    let stopped = || Failure::stopped(run.stop_cause());
    let skill = step.spec.skill.as_str();
    let input_hash = input_hash(&input);
    // The first attempt takes the converted input; a retry converts it
    // again. Retries are rare, and an input can be large (a whole dataset).
    let mut input_pb = Some(to_struct(&input));
    let input = Value::Object(input);
    // One key for every attempt, so that an agent still holding the task
    // (or its result) answers from it; a new one once an output it returned
    // was refused here, or the agent would replay the same refused result.
    let mut idempotency_key = history
        .key
        .unwrap_or_else(|| [run.id.as_str(), id].join("/"));
    let mut earlier: Vec<String> = history.earlier;
    // Only the first attempt sent again prefers the replica it ran on.
    let mut prefer = history.latest;
    let mut last_reason = String::new();
    // A resumed step carries on numbering its attempts; the one that was
    // in flight when the run stopped does not count against its budget.
    let mut attempt = history.attempts;
    let max_attempts = step.max_attempts + u32::from(history.attempts > 0);
    let step_started = Instant::now();
    let mut last_agent = String::new();
    let step_done = |agent: &str, outcome: String| {
        crate::metrics::metrics()
            .step_duration
            .get_or_create(&Work {
                skill: skill.to_string(),
                agent: agent.to_string(),
                outcome,
            })
            .observe(step_started.elapsed().as_secs_f64());
    };
    let fail = |f: Failure, attempts: u32, agent: &str| {
        step_done(agent, reason_label(f.reason));
        fail(f, attempts)
    };
    loop {
        attempt += 1;
        if run.stop.is_cancelled() {
            return Err(fail(stopped(), attempt - 1, &last_agent));
        }
        let on_queued = |waiting: u32| {
            run.append(events::step_queued(id, skill, waiting, attempt));
        };
        let request = SlotRequest {
            skill,
            avoid: &earlier,
            prefer: prefer.as_deref(),
            run: &run.id,
            no_replica_wait: env.cfg.routing.no_replica_wait,
            until: clock.end(&run),
            stop: &run.stop,
            on_queued: &on_queued,
        };
        let acquired = env.registry.acquire(request).await;
        prefer = None;
        let slot = match acquired {
            Ok(slot) => slot,
            Err(_) if run.stop.is_cancelled() => {
                return Err(fail(stopped(), attempt - 1, &last_agent));
            }
            Err(why) => {
                let f = match why {
                    NoSlot::NoReplica => Failure::new(
                        ErrorReason::NoAgentForSkill,
                        format!("no healthy agent offers skill {skill:?}"),
                    ),
                    NoSlot::AllBusy => Failure::new(
                        ErrorReason::DeadlineExceeded,
                        format!(
                            "every replica offering {skill:?} stayed busy until the run's deadline"
                        ),
                    ),
                    NoSlot::QueueFull => Failure::new(
                        ErrorReason::ResourceExhausted,
                        format!(
                            "{} steps already wait for skill {skill:?} (routing.max_queued_steps)",
                            env.cfg.routing.max_queued_steps
                        ),
                    ),
                };
                return Err(fail(f, attempt - 1, &last_agent));
            }
        };
        let endpoint = slot.endpoint.address.clone();
        if let Some(prev) = earlier.last()
            && *prev != endpoint
        {
            info!(from = %prev, to = %endpoint, reason = %last_reason, "step rerouted to another replica");
            run.append(events::step_rerouted(id, prev, &endpoint, &last_reason));
            crate::metrics::metrics()
                .reroutes
                .get_or_create(&Skill {
                    skill: skill.to_string(),
                })
                .inc();
        }
        last_agent.clone_from(&slot.card.card.name);
        let task_id = [idempotency_key.as_str(), &attempt.to_string()].join("/");
        let attempt_deadline = (Instant::now() + step.deadline).min(clock.end(&run));
        run.append(events::step_started(
            id,
            skill,
            &slot.card.card.name,
            &endpoint,
            attempt,
            &task_id,
        ));
        let attempt_trace = Traced::attempt(
            step_trace,
            Attempt {
                step_id: id,
                skill,
                agent: &last_agent,
                replica: &endpoint,
                number: attempt,
                task_id: &task_id,
            },
        );
        let (traceparent, tracestate) = context::fields(&attempt_trace.context);
        let request = ExecuteTaskRequest {
            task_id,
            run_id: run.id.clone(),
            skill_id: skill.to_string(),
            input: Some(input_pb.take().unwrap_or_else(|| value_to_struct(&input))),
            input_artifacts: artifacts.clone(),
            idempotency_key: idempotency_key.clone(),
            attempt,
            deadline: Some(clock.wall(attempt_deadline).into()),
            heartbeat_interval: cfg.heartbeat.try_into().ok(),
            trace: Some(TraceContext {
                traceparent,
                tracestate,
            }),
            answers: run.waits.answers(id),
        };
        let attempt_started = Instant::now();
        let result = attempt::run(
            slot.endpoint.transport.clone(),
            request,
            AttemptSpec {
                observer: &StepObserver {
                    run: &run,
                    step_id: id,
                    attempt,
                    progress_cap: cfg.max_progress_events,
                    agent: &last_agent,
                    answer_timeout: cfg.answer_timeout,
                },
                deadline: attempt_deadline,
                lease: cfg.heartbeat_lease(),
                max_message_bytes: env.cfg.server.max_message_bytes,
                max_artifact_bytes: cfg.max_artifact_bytes,
            },
        )
        .instrument(attempt_trace.span.clone())
        .await
        .and_then(|out| {
            output::validate(step, &input, out, env.hooks.as_ref()).map_err(|mut f| {
                // This output was refused, not the replica: it is healthy
                // enough to answer, and is not ejected for it.
                f.endpoint_fault = false;
                f.redo = true;
                f
            })
        });
        let attempt_labels = Work {
            skill: skill.to_string(),
            agent: last_agent.clone(),
            outcome: match &result {
                Ok(_) => "completed".to_string(),
                Err(f) => reason_label(f.reason),
            },
        };
        attempt_trace.outcome(&attempt_labels.outcome);
        let m = crate::metrics::metrics();
        m.attempts.get_or_create(&attempt_labels).inc();
        m.attempt_duration
            .get_or_create(&attempt_labels)
            .observe(attempt_started.elapsed().as_secs_f64());
        match result {
            Ok(out) => {
                env.registry.record_outcome(&slot.endpoint, true);
                step_done(&last_agent, "completed".to_string());
                let provenance = Provenance {
                    step_id: id.to_string(),
                    agent: slot.card.card.name.clone(),
                    endpoint,
                    skill: skill.to_string(),
                    agent_version: slot.card.card.version.clone(),
                    attempts: attempt,
                    // The successful attempt's, as the protocol says:
                    // neither earlier attempts nor backoff.
                    duration: attempt_started.elapsed().try_into().ok(),
                    input_hash,
                    earlier_endpoints: earlier,
                };
                drop(slot);
                let output = out.output_pb.unwrap_or_else(|| to_struct(&out.output));
                run.append(events::step_completed(
                    id,
                    output,
                    provenance.clone(),
                    out.artifacts.clone(),
                ));
                return Ok(StepResult {
                    output: Value::Object(out.output),
                    artifacts: out.artifacts,
                    provenance,
                });
            }
            Err(f) => {
                if f.redo {
                    idempotency_key = format!("{}/{id}/after-{attempt}", run.id);
                }
                if f.endpoint_fault {
                    env.registry.record_outcome(&slot.endpoint, false);
                }
                drop(slot);
                earlier.push(endpoint);
                if run.stop.is_cancelled() {
                    return Err(fail(stopped(), attempt, &last_agent));
                }
                if !f.retryable || attempt >= max_attempts {
                    return Err(fail(f, attempt, &last_agent));
                }
                let delay = backoff
                    .delay(attempt)
                    .max(f.retry_after.unwrap_or_default());
                info!(
                    attempt,
                    reason = f.reason.name(),
                    error = %f.message,
                    delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "step failed; retrying"
                );
                run.append(events::step_retrying(
                    id, attempt, f.reason, &f.message, delay,
                ));
                m.retries
                    .get_or_create(&Retry {
                        skill: skill.to_string(),
                        reason: reason_label(f.reason),
                    })
                    .inc();
                last_reason = f.reason.name().to_string();
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = run.stop.cancelled() => {
                        return Err(fail(stopped(), attempt, &last_agent));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
