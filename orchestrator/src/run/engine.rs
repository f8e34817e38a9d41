//! The delegation engine: accepts runs, drives each plan's DAG, finishes
//! runs (with a report, when its hooks make one).
//!
//! A step starts the moment its last dependency completes (no supersteps),
//! each step in its own task. The run deadline and `CancelRun` stop every
//! in-flight step through the run's stop switch; each attempt then sends
//! `CancelTask` to its agent.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use agentmesh_proto::error::{ErrorReason, MeshError};
use agentmesh_proto::v1::{
    Artifact, FanInPolicy, Intent, PlanSpec, Planning, RunPlanned, RunSpec, RunState, part,
    run_event,
};
use agentmesh_runtime::JsonObject;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use opentelemetry::trace::SpanContext;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{Instrument, info, warn};

use crate::config::OrchestratorConfig;
use crate::events;
use crate::routing::Registry;
use crate::run::failure::Failure;
use crate::run::hooks::{FinishedRun, RunHooks};
use crate::run::outcome::Outcome;
use crate::run::plan::{self, Plan};
use crate::run::resume::{Prior, StepHistory};
use crate::run::step::{self, RunClock, StepEnv};
use crate::run::trace::Traced;
use crate::run::waiting;
use crate::store::{RunRecord, RunStore, scoped_key};

/// A step in flight: its index and what became of it.
type StepFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = (usize, Result<crate::run::StepResult, Failure>)> + Send>,
>;

/// How often a resumed run looks again for the skills of its plan.
const RESUME_POLL: Duration = Duration::from_millis(250);

/// Longest goal text accepted.
pub const MAX_GOAL_BYTES: usize = 8 * 1024;
/// Longest idempotency key accepted.
pub const MAX_KEY_BYTES: usize = 256;

/// A run as accepted: the stored record, and whether it is new (false when
/// an idempotency key matched an earlier run).
pub struct Accepted {
    /// The run.
    pub run: Arc<RunRecord>,
    /// Whether this request created it.
    pub created: bool,
}

/// A checked request, ready to run.
pub struct Prepared {
    fingerprint: String,
    plan: Arc<Plan>,
    intent: Option<Intent>,
    planning: Planning,
    token_budget: Option<u32>,
    fan_in: FanInPolicy,
    deadline: Duration,
    goal: String,
    key: String,
}

/// The engine shared by the gRPC services.
pub struct Engine {
    /// Where runs are kept.
    pub store: Arc<dyn RunStore>,
    env: Arc<StepEnv>,
    active: AtomicUsize,
    draining: AtomicBool,
    idle: Notify,
}

fn bad_request(field: &str, message: impl Into<String>) -> MeshError {
    MeshError::new(ErrorReason::InvalidInput, message).with_meta("field", field)
}

impl Engine {
    /// A new engine routing through `registry`, keeping runs in `store`,
    /// with `hooks` for what the core does not know.
    pub fn new(
        registry: Arc<Registry>,
        cfg: Arc<OrchestratorConfig>,
        store: Arc<dyn RunStore>,
        hooks: Arc<dyn RunHooks>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            env: Arc::new(StepEnv {
                registry,
                cfg,
                hooks,
            }),
            active: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            idle: Notify::new(),
        })
    }

    /// Endpoints and routing.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.env.registry
    }

    /// Configuration.
    pub fn cfg(&self) -> &OrchestratorConfig {
        &self.env.cfg
    }

    /// Checks the limits of a run request: goal and key sizes, fan-in,
    /// deadline. A front-end calls it before it reads the goal.
    pub fn check(&self, spec: &RunSpec) -> Result<(FanInPolicy, Duration), MeshError> {
        if spec.goal.len() > MAX_GOAL_BYTES {
            return Err(bad_request(
                "spec.goal",
                format!(
                    "the goal is {} bytes; at most {MAX_GOAL_BYTES} are accepted",
                    spec.goal.len()
                ),
            ));
        }
        if spec.idempotency_key.len() > MAX_KEY_BYTES {
            return Err(bad_request(
                "spec.idempotency_key",
                format!("the idempotency key is longer than {MAX_KEY_BYTES} bytes"),
            ));
        }
        let fan_in = match FanInPolicy::try_from(spec.fan_in) {
            Ok(FanInPolicy::Unspecified) => FanInPolicy::AllRequired,
            Ok(p) => p,
            Err(_) => {
                return Err(bad_request(
                    "spec.fan_in",
                    format!("fan_in {} is not a FanInPolicy", spec.fan_in),
                ));
            }
        };
        let exec = &self.env.cfg.execution;
        let deadline = match &spec.deadline {
            None => exec.run_deadline,
            Some(d) => match Duration::try_from(*d) {
                Ok(d) if !d.is_zero() && d <= exec.max_run_deadline => d,
                _ => {
                    return Err(bad_request(
                        "spec.deadline",
                        format!(
                            "the deadline must be positive and at most {} ms",
                            exec.max_run_deadline.as_millis()
                        ),
                    ));
                }
            },
        };
        Ok((fan_in, deadline))
    }

    /// The fingerprint of a request as the client sent it (SHA-256 of its
    /// encoding, hex): what a repeat under the same idempotency key must
    /// match.
    pub fn fingerprint(spec: &RunSpec) -> String {
        use agentmesh_proto::prost::Message;
        use sha2::{Digest, Sha256};
        let mut hex = String::with_capacity(64);
        agentmesh_runtime::telemetry::push_hex(&mut hex, &Sha256::digest(spec.encode_to_vec()));
        hex
    }

    /// The run an earlier request with the same idempotency key made, if
    /// any: looked up before anything else, so that a repeat is answered
    /// even while planning, draining or admission would refuse a new run.
    /// The same key with a different request is refused.
    pub async fn repeat(
        &self,
        owner: &str,
        key: &str,
        fingerprint: &str,
    ) -> Result<Option<Arc<RunRecord>>, MeshError> {
        if key.is_empty() {
            return Ok(None);
        }
        let Some(run) = self.store.by_key(&scoped_key(owner, key)).await? else {
            return Ok(None);
        };
        same_request(&run, fingerprint)?;
        Ok(Some(run))
    }

    /// Checks a run request and validates its plan (the client's, or the
    /// one a front-end made, which then passes what it understood as
    /// `intent`). `fingerprint` is [`Engine::fingerprint`] of the request
    /// as the client sent it.
    pub fn prepare(
        &self,
        mut spec: RunSpec,
        intent: Option<Intent>,
        planning: Option<Planning>,
        fingerprint: String,
    ) -> Result<Prepared, MeshError> {
        let (fan_in, deadline) = self.check(&spec)?;
        let plan_spec = spec
            .plan
            .take()
            .filter(|p| !p.steps.is_empty())
            .ok_or_else(|| bad_request("spec", "send a goal or a plan"))?;
        let plan = plan::validate(plan_spec, &self.env.registry, &self.env.cfg.execution)?;
        let token_budget = spec.parameters.as_ref().and_then(|p| p.token_budget);
        let planning_tokens = planning.as_ref().map_or(0, |p| p.tokens);
        if let Some(budget) = token_budget
            && planning_tokens > budget
        {
            return Err(MeshError::new(
                ErrorReason::TokenBudgetExceeded,
                format!(
                    "planning used {planning_tokens} tokens; the run's token budget is {budget} (parameters.token_budget)"
                ),
            )
            .with_meta("limit", "parameters.token_budget"));
        }
        let goal = if spec.goal.trim().is_empty() {
            format!("explicit plan of {} steps", plan.steps.len())
        } else {
            spec.goal.trim().to_string()
        };
        Ok(Prepared {
            fingerprint,
            plan: Arc::new(plan),
            intent,
            planning: planning.unwrap_or_else(|| Planning {
                planner: "client".into(),
                ..Planning::default()
            }),
            token_budget,
            fan_in,
            deadline,
            goal,
            key: spec.idempotency_key,
        })
    }

    /// The plan event for `prepared`, as `Plan` returns it.
    pub fn describe(&self, prepared: &Prepared) -> RunPlanned {
        RunPlanned {
            goal: prepared.goal.clone(),
            intent: prepared.intent.clone(),
            steps: prepared.plan.describe(&self.env.registry),
            fan_in: prepared.fan_in.into(),
            deadline: Some((SystemTime::now() + prepared.deadline).into()),
            request_fingerprint: prepared.fingerprint.clone(),
            planning: Some(prepared.planning.clone()),
            token_budget: prepared.token_budget,
        }
    }

    /// Accepts a prepared run of `owner` and starts it within `trace` (or
    /// returns the run its idempotency key names among `owner`'s runs).
    pub async fn start(
        self: &Arc<Self>,
        prepared: Prepared,
        owner: Arc<str>,
        trace: Traced,
    ) -> Result<Accepted, MeshError> {
        if self.draining.load(Ordering::Acquire) {
            return Err(MeshError::new(
                ErrorReason::AgentUnavailable,
                "the orchestrator is shutting down; try another replica",
            ));
        }
        let exec = &self.env.cfg.execution;
        let full = prepared
            .plan
            .steps
            .iter()
            .find(|s| !s.is_gate() && self.env.registry.queue_full(&s.spec.skill));
        if let Some(step) = full {
            return Err(MeshError::new(
                ErrorReason::ResourceExhausted,
                format!(
                    "{} steps already wait for skill {:?} (routing.max_queued_steps); try again later",
                    self.env.cfg.routing.max_queued_steps, step.spec.skill
                ),
            )
            .with_meta("limit", "routing.max_queued_steps")
            .with_retry_after(exec.admission_retry_after));
        }
        let max = exec.max_active_runs;
        if self.active.fetch_add(1, Ordering::AcqRel) >= max {
            self.release();
            return Err(MeshError::new(
                ErrorReason::ResourceExhausted,
                format!(
                    "{max} runs are already executing (execution.max_active_runs); try again later"
                ),
            )
            .with_meta("limit", "execution.max_active_runs")
            .with_retry_after(exec.admission_retry_after));
        }
        let key = scoped_key(&owner, &prepared.key);
        let fresh = self.store.new_run(prepared.goal.clone(), key, owner);
        fresh.set_fingerprint(prepared.fingerprint.clone());
        fresh.set_token_budget(prepared.token_budget, prepared.planning.tokens);
        // The plan goes in with the run, so that a stored run always has
        // one to resume from.
        let mut planned = self.describe(&prepared);
        let deadline_wall = SystemTime::now() + prepared.deadline;
        planned.deadline = Some(deadline_wall.into());
        fresh.append(run_event::Event::Planned(planned));
        let fresh = Arc::new(fresh);
        let run = match self.store.insert(Arc::clone(&fresh)).await {
            Ok(run) => run,
            Err(e) => {
                self.release();
                return Err(e);
            }
        };
        if !Arc::ptr_eq(&run, &fresh) {
            // A request with the same key got in first.
            self.release();
            same_request(&run, &prepared.fingerprint)?;
            return Ok(Accepted {
                run,
                created: false,
            });
        }
        trace.run_id(&run.id);
        let span = trace.span.clone();
        let clock = RunClock {
            deadline: Instant::now() + prepared.deadline,
            deadline_wall,
            trace,
            pauses: !exec.deadline_runs_while_waiting,
        };
        info!(run_id = %run.id, steps = prepared.plan.steps.len(), "run accepted");
        let source = if prepared.intent.is_some() {
            "goal"
        } else {
            "plan"
        };
        crate::metrics::metrics()
            .runs_started
            .get_or_create(&crate::metrics::Source { source })
            .inc();
        let prior = Prior::fresh(prepared.plan.steps.len());
        tokio::spawn(
            Arc::clone(self)
                .drive(Arc::clone(&run), prepared, clock, prior)
                .instrument(span),
        );
        Ok(Accepted { run, created: true })
    }

    /// Takes up the runs the store hands over unfinished (a durable store:
    /// those an orchestrator that stopped left, read back at start, and on
    /// a shared store those taken over from replicas that lost their
    /// leases), each in its own task: see [`Engine::resume`]. `instance`
    /// names this orchestrator in their RunResumed events.
    pub fn resume_unfinished(self: &Arc<Self>, instance: &Arc<str>) {
        let Some(mut runs) = self.store.unfinished() else {
            return;
        };
        let engine = Arc::clone(self);
        let instance = Arc::clone(instance);
        tokio::spawn(async move {
            while let Some(run) = runs.recv().await {
                let span = Traced::run(&SpanContext::empty_context(), &run.owner);
                span.run_id(&run.id);
                let outer = span.span.clone();
                tokio::spawn(
                    Arc::clone(&engine)
                        .resume(run, Arc::clone(&instance), span)
                        .instrument(outer),
                );
            }
        });
    }

    /// Resumes `run` from its log: once every skill of its plan is known
    /// again (discovery needs a moment after a start), its completed steps
    /// keep their results and the rest run, attempts numbered on, with the
    /// same idempotency keys. A run whose skills stay unknown until its
    /// deadline ends INTERRUPTED, saying why; one whose deadline passed
    /// while no orchestrator drove it ends DEADLINE_EXCEEDED.
    async fn resume(self: Arc<Self>, run: Arc<RunRecord>, instance: Arc<str>, trace: Traced) {
        let Some(planned) = run.planned() else {
            self.end_unresumable(
                &run,
                ErrorReason::Interrupted,
                "the run's log holds no plan to resume from; submit the run again",
            );
            return;
        };
        let deadline_wall = planned
            .deadline
            .and_then(|t| SystemTime::try_from(t).ok())
            .unwrap_or_else(SystemTime::now);
        // Time spent waiting for people does not count (unless configured
        // to), and a step may wait now: the deadline is later by as much.
        let pauses = !self.env.cfg.execution.deadline_runs_while_waiting;
        let effective = |run: &RunRecord| deadline_wall + step::waited(run, pauses);
        let spec = PlanSpec {
            steps: planned
                .steps
                .iter()
                .filter_map(|s| s.step.clone())
                .collect(),
        };
        let plan = loop {
            if run.is_suspended() {
                // Left to another orchestrator (this one lost its store
                // lease while waiting): nothing to end here.
                return;
            }
            if run.stop.is_cancelled() {
                let cause = run
                    .stop_cause()
                    .map_or_else(|| "canceled".to_string(), |c| c.message.clone());
                self.end_unresumable(&run, ErrorReason::Canceled, &cause);
                return;
            }
            if self.draining.load(Ordering::Acquire) {
                // Left unfinished in the store: the next start resumes it.
                return;
            }
            let remaining = effective(&run)
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            if remaining.is_zero() {
                self.end_unresumable(
                    &run,
                    ErrorReason::DeadlineExceeded,
                    "the run's deadline passed while no orchestrator was driving it",
                );
                return;
            }
            match plan::validate(spec.clone(), &self.env.registry, &self.env.cfg.execution) {
                Ok(plan) => break plan,
                Err(e) if e.reason == ErrorReason::UnknownSkill => {
                    tokio::select! {
                        () = tokio::time::sleep(RESUME_POLL.min(remaining)) => {}
                        () = run.stop.cancelled() => {}
                    }
                    if remaining <= RESUME_POLL {
                        self.end_unresumable(
                            &run,
                            ErrorReason::Interrupted,
                            &format!(
                                "the run could not be resumed before its deadline: {}",
                                e.message
                            ),
                        );
                        return;
                    }
                }
                Err(e) => {
                    self.end_unresumable(
                        &run,
                        ErrorReason::Interrupted,
                        &format!("the run's plan can no longer run here: {}", e.message),
                    );
                    return;
                }
            }
        };
        let remaining = effective(&run)
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let fan_in = FanInPolicy::try_from(planned.fan_in)
            .ok()
            .filter(|f| *f != FanInPolicy::Unspecified)
            .unwrap_or(FanInPolicy::AllRequired);
        let prepared = Prepared {
            fingerprint: planned.request_fingerprint.clone(),
            plan: Arc::new(plan),
            intent: planned.intent.clone(),
            planning: planned.planning.clone().unwrap_or_default(),
            token_budget: planned.token_budget,
            fan_in,
            deadline: remaining,
            goal: planned.goal.clone(),
            key: String::new(),
        };
        let prior = Prior::read(&prepared.plan, &run.log.snapshot_after(0));
        run.set_token_budget(prepared.token_budget, prepared.planning.tokens);
        let completed = prior.completed(&prepared.plan);
        let in_flight = prior.in_flight(&prepared.plan);
        info!(
            run_id = %run.id,
            completed = completed.len(),
            in_flight = in_flight.len(),
            "run resumed"
        );
        run.append(events::run_resumed(&instance, completed, in_flight));
        self.active.fetch_add(1, Ordering::AcqRel);
        let clock = RunClock {
            deadline: step::instant_at(deadline_wall),
            deadline_wall,
            trace,
            pauses,
        };
        self.drive(run, prepared, clock, prior).await;
    }

    /// Ends a run that cannot be resumed.
    fn end_unresumable(&self, run: &RunRecord, reason: ErrorReason, message: &str) {
        warn!(run_id = %run.id, reason = reason.name(), message, "run not resumed");
        let state = if reason == ErrorReason::Canceled {
            RunState::Canceled
        } else {
            RunState::Failed
        };
        count_finished(run, state, reason.name());
        run.finish(events::run_finished(
            state,
            reason.name(),
            message.to_string(),
            None,
        ));
        self.store.finished(run);
    }

    fn release(&self) {
        if self.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    async fn drive(
        self: Arc<Self>,
        run: Arc<RunRecord>,
        prepared: Prepared,
        clock: RunClock,
        prior: Prior,
    ) {
        let _driving = Driving {
            engine: Arc::clone(&self),
            run: Arc::clone(&run),
        };
        let clock = Arc::new(clock);
        let dag = self.execute(
            Arc::clone(&run),
            Arc::clone(&prepared.plan),
            prepared.fan_in,
            Arc::clone(&clock),
            prior,
        );
        tokio::pin!(dag);
        let outcomes = loop {
            tokio::select! {
                outcomes = &mut dag => break outcomes,
                // The end moves later while steps wait for people: look
                // again when it comes.
                () = tokio::time::sleep_until(clock.end(&run)) => {
                    if Instant::now() < clock.end(&run) {
                        continue;
                    }
                    run.stop(MeshError::new(
                        ErrorReason::DeadlineExceeded,
                        format!("the run deadline of {} ms was exceeded", prepared.deadline.as_millis()),
                    ));
                    break dag.await;
                }
            }
        };
        if run.is_suspended() {
            info!(run_id = %run.id, "run suspended: the next orchestrator on this store to drive it resumes it");
            return;
        }
        self.finish(&run, &prepared, outcomes);
    }

    /// Runs the DAG: starts every step whose dependencies have completed,
    /// as soon as they have. `prior` holds what an earlier orchestrator
    /// got done (nothing, for a new run): completed steps are not run
    /// again, and attempts carry on from where they were.
    async fn execute(
        &self,
        run: Arc<RunRecord>,
        plan: Arc<Plan>,
        fan_in: FanInPolicy,
        clock: Arc<RunClock>,
        prior: Prior,
    ) -> Vec<Outcome> {
        let n = plan.steps.len();
        let Prior {
            mut outcomes,
            mut history,
        } = prior;
        let mut waiting: Vec<usize> = plan
            .steps
            .iter()
            .map(|s| {
                s.deps
                    .iter()
                    .filter(|&&d| !matches!(outcomes[d], Outcome::Done(_)))
                    .count()
            })
            .collect();
        // Steps are polled by this one task (no spawn per step): each wakes
        // only itself, and a slow step never holds up a ready one.
        let mut running = FuturesUnordered::new();
        let launch = |i: usize,
                      outcomes: &mut Vec<Outcome>,
                      history: &mut Vec<StepHistory>,
                      running: &mut FuturesUnordered<_>| {
            if plan.steps[i].is_gate() {
                let subject: JsonObject = plan.steps[i]
                    .deps
                    .iter()
                    .filter_map(|&d| match &outcomes[d] {
                        Outcome::Done(done) => {
                            Some((plan.steps[d].spec.id.clone(), done.output.clone()))
                        }
                        _ => None,
                    })
                    .collect();
                let run = Arc::clone(&run);
                let plan = Arc::clone(&plan);
                let timeout = self.env.cfg.execution.answer_timeout;
                running.push(Box::pin(async move {
                    let result = waiting::gate(run, &plan.steps[i], subject, timeout).await;
                    (i, result)
                }) as StepFuture);
                outcomes[i] = Outcome::Running;
                return None;
            }
            match build_input(&plan, i, outcomes) {
                Ok((input, artifacts)) => {
                    let env = Arc::clone(&self.env);
                    let run = Arc::clone(&run);
                    let plan = Arc::clone(&plan);
                    let clock = Arc::clone(&clock);
                    let history = std::mem::take(&mut history[i]);
                    running.push(Box::pin(async move {
                        let result = step::run_step(
                            &env,
                            run,
                            &plan.steps[i],
                            step::StepInput {
                                input,
                                artifacts,
                                history,
                            },
                            &clock,
                        )
                        .await;
                        (i, result)
                    }) as StepFuture);
                    outcomes[i] = Outcome::Running;
                    None
                }
                Err(f) => Some(f),
            }
        };
        // Steps that had failed for good before the run was resumed.
        for i in 0..n {
            if matches!(outcomes[i], Outcome::Failed(_))
                && let Outcome::Failed(f) = std::mem::replace(&mut outcomes[i], Outcome::NotRun)
            {
                self.step_failed(&run, &plan, fan_in, i, f, &mut outcomes, false);
            }
        }
        let mut failed_now: Vec<(usize, Failure)> = Vec::new();
        let roots: Vec<usize> = (0..n)
            .filter(|&i| waiting[i] == 0 && matches!(outcomes[i], Outcome::NotRun))
            .collect();
        for i in roots {
            if run.stop.is_cancelled() {
                break;
            }
            if let Some(f) = launch(i, &mut outcomes, &mut history, &mut running) {
                failed_now.push((i, f));
            }
        }
        loop {
            for (i, f) in failed_now.drain(..) {
                self.step_failed(&run, &plan, fan_in, i, f, &mut outcomes, true);
            }
            let Some((i, result)) = running.next().await else {
                break;
            };
            match result {
                Ok(done) => {
                    outcomes[i] = Outcome::Done(Box::new(done));
                    for &d in &plan.steps[i].dependents {
                        waiting[d] -= 1;
                        if waiting[d] == 0
                            && matches!(outcomes[d], Outcome::NotRun)
                            && !run.stop.is_cancelled()
                            && let Some(f) = launch(d, &mut outcomes, &mut history, &mut running)
                        {
                            failed_now.push((d, f));
                        }
                    }
                }
                Err(f) => failed_now.push((i, f)),
            }
        }
        outcomes
    }

    /// A step failed for good: all-required stops the run; best-effort
    /// marks everything downstream as not run. `announce`: the failure is
    /// new (not read back from the log of a resumed run).
    #[allow(clippy::too_many_arguments)]
    fn step_failed(
        &self,
        run: &RunRecord,
        plan: &Plan,
        fan_in: FanInPolicy,
        i: usize,
        f: Failure,
        outcomes: &mut [Outcome],
        announce: bool,
    ) {
        let id = plan.steps[i].spec.id.clone();
        if announce && !matches!(outcomes[i], Outcome::Running) {
            // Failed before it started (input could not be built).
            run.append(events::step_failed(&id, f.reason, &f.message, 0));
        }
        warn!(step = %id, reason = f.reason.name(), message = %f.message, "step failed");
        if fan_in == FanInPolicy::AllRequired && !run.stop.is_cancelled() {
            run.stop(
                MeshError::new(f.reason, format!("step {id} failed: {}", f.message))
                    .with_meta("step", id.as_str()),
            );
        }
        let why = format!("not run: step {id} failed ({})", f.reason.name());
        outcomes[i] = Outcome::Failed(f);
        let mut stack: Vec<usize> = plan.steps[i].dependents.clone();
        while let Some(d) = stack.pop() {
            if matches!(outcomes[d], Outcome::NotRun) {
                outcomes[d] = Outcome::Skipped(why.clone());
                stack.extend(plan.steps[d].dependents.iter().copied());
            }
        }
    }

    fn finish(&self, run: &RunRecord, prepared: &Prepared, mut outcomes: Vec<Outcome>) {
        let plan = &prepared.plan;
        let missing = outcomes
            .iter()
            .filter(|o| !matches!(o, Outcome::Done(_)))
            .count();
        let (state, reason, message) = match run.stop_cause() {
            Some(c) if c.reason == ErrorReason::Canceled => (
                RunState::Canceled,
                c.reason.name().to_string(),
                c.message.clone(),
            ),
            Some(c) if c.reason == ErrorReason::Rejected => (
                RunState::Rejected,
                c.reason.name().to_string(),
                c.message.clone(),
            ),
            Some(c) => (
                RunState::Failed,
                c.reason.name().to_string(),
                c.message.clone(),
            ),
            None if missing == 0 => (RunState::Completed, String::new(), String::new()),
            None if missing == outcomes.len() => (
                RunState::Failed,
                first_reason(&outcomes),
                "no step completed".to_string(),
            ),
            None => (
                RunState::Partial,
                first_reason(&outcomes),
                format!("{missing} of {} steps did not complete", outcomes.len()),
            ),
        };
        let report = self.env.hooks.integrate(FinishedRun {
            goal: &prepared.goal,
            intent: prepared.intent.as_ref(),
            plan,
            outcomes: &mut outcomes,
            stop: run.stop_cause(),
        });
        let report = report.map(|built| {
            for artifact in &built.artifacts {
                self.stream_artifact(run, artifact);
            }
            built.report
        });
        info!(run_id = %run.id, state = state.as_str_name(), "run finished");
        Traced::finished(&tracing::Span::current(), state.as_str_name(), &reason);
        count_finished(run, state, &reason);
        run.finish(events::run_finished(state, &reason, message, report));
    }

    /// Streams an artifact's bytes to clients as ReportChunk events.
    fn stream_artifact(&self, run: &RunRecord, artifact: &Artifact) {
        let chunk = self.env.cfg.execution.report_chunk_bytes;
        for p in &artifact.parts {
            let Some(part::Content::Raw(bytes)) = &p.content else {
                continue;
            };
            let mut pieces = bytes.chunks(chunk).peekable();
            if pieces.peek().is_none() {
                run.append(events::report_chunk(artifact, p, &[], true));
            }
            while let Some(piece) = pieces.next() {
                run.append(events::report_chunk(
                    artifact,
                    p,
                    piece,
                    pieces.peek().is_none(),
                ));
            }
        }
    }

    /// Stops `run` with CANCELED.
    pub fn cancel(&self, run: &RunRecord, reason: &str) {
        run.stop(events::canceled_by_client(reason));
    }
}

/// Refuses a request whose idempotency key names a run made from another
/// request. A run stored before fingerprints were kept matches any.
fn same_request(run: &RunRecord, fingerprint: &str) -> Result<(), MeshError> {
    match run.fingerprint() {
        Some(earlier) if earlier != fingerprint => Err(MeshError::new(
            ErrorReason::InvalidInput,
            format!(
                "idempotency key {:?} names run {} made from a different request; use a new key for a new request",
                run.idempotency_key, run.id
            ),
        )
        .with_code(tonic::Code::AlreadyExists)
        .with_meta("field", "spec.idempotency_key")
        .with_meta("run_id", run.id.as_str())),
        _ => Ok(()),
    }
}

fn first_reason(outcomes: &[Outcome]) -> String {
    outcomes
        .iter()
        .find_map(|o| match o {
            Outcome::Failed(f) => Some(f.reason.name().to_string()),
            _ => None,
        })
        .unwrap_or_default()
}

/// Counts a run's end in the metrics.
fn count_finished(run: &RunRecord, state: RunState, reason: &str) {
    let m = crate::metrics::metrics();
    let state = state
        .as_str_name()
        .trim_start_matches("RUN_STATE_")
        .to_ascii_lowercase();
    m.runs_finished
        .get_or_create(&crate::metrics::RunEnd {
            state: state.clone(),
            reason: reason.to_ascii_lowercase(),
        })
        .inc();
    let took = run.created.elapsed().unwrap_or_default();
    m.run_duration
        .get_or_create(&crate::metrics::State { state })
        .observe(took.as_secs_f64());
}

/// Held by a run's task for as long as it drives the run. When it goes
/// (the run finished, or its task ended early: a panic, or the runtime
/// shutting down), the run's admission slot is given back and the store may
/// retire older runs; a run left unfinished is finished as failed, so that
/// nobody following it waits forever.
struct Driving {
    engine: Arc<Engine>,
    run: Arc<RunRecord>,
}

impl Drop for Driving {
    fn drop(&mut self) {
        if self.run.is_suspended() {
            // Left open in the store for the next orchestrator.
            self.engine.release();
            return;
        }
        if !self.run.log.is_closed() {
            let message = "internal error: the orchestrator stopped driving this run";
            tracing::error!(run_id = %self.run.id, "{message}");
            self.run
                .stop(MeshError::new(ErrorReason::Unspecified, message));
            count_finished(&self.run, RunState::Failed, ErrorReason::Unspecified.name());
            self.run
                .finish(events::run_failed(ErrorReason::Unspecified, message));
        }
        self.engine.release();
        self.engine.store.finished(&self.run);
    }
}

/// The input of step `i` from its literals, its refs and its artifact
/// sources, checked against the skill's input schema.
fn build_input(
    plan: &Plan,
    i: usize,
    outcomes: &[Outcome],
) -> Result<(JsonObject, Vec<Artifact>), Failure> {
    let step = &plan.steps[i];
    let mut input = step.input.clone();
    for r in &step.refs {
        let Outcome::Done(done) = &outcomes[r.from] else {
            return Err(Failure::new(
                ErrorReason::PlanInvalid,
                format!("{} has no output", plan.steps[r.from].spec.id),
            ));
        };
        let value = done.output.pointer(&r.pointer).ok_or_else(|| {
            Failure::new(
                ErrorReason::PlanInvalid,
                format!(
                    "the output of step {} has nothing at {:?} (ref for field {})",
                    plan.steps[r.from].spec.id, r.pointer, r.field
                ),
            )
        })?;
        input.insert(r.field.clone(), value.clone());
    }
    // Literal input was checked when the plan was validated; check again
    // only once referenced values are filled in.
    if !step.refs.is_empty()
        && let Some(skill) = &step.skill
    {
        skill
            .schemas
            .check_input(&input)
            .map_err(|e| Failure::new(ErrorReason::InvalidInput, e.message))?;
    }
    let mut artifacts = Vec::new();
    for &from in &step.artifacts_from {
        if let Outcome::Done(done) = &outcomes[from] {
            artifacts.extend(done.artifacts.iter().cloned());
        }
    }
    Ok((input, artifacts))
}

impl agentmesh_runtime::Drain for Engine {
    fn begin_drain(&self) {
        self.draining.store(true, Ordering::Release);
    }

    async fn drained(&self) {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.active.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }

    fn in_flight(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// At the end of the shutdown grace: runs still executing are
    /// canceled, or, with a durable store, suspended for the next
    /// orchestrator on it to resume.
    fn cancel_all(&self) {
        let durable = self.store.durable();
        for run in self.store.local() {
            if run.log.is_closed() {
                continue;
            }
            if durable {
                run.suspend(MeshError::new(
                    ErrorReason::Interrupted,
                    "the orchestrator shut down; the next one on this store resumes the run",
                ));
            } else {
                run.stop(MeshError::new(
                    ErrorReason::Canceled,
                    "the orchestrator shut down before the run finished",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::hooks::NoHooks;
    use crate::store::{MemoryStore, Retention};
    use agentmesh_proto::v1::RunFinished;

    fn engine() -> Arc<Engine> {
        let cfg = Arc::new(OrchestratorConfig::default());
        Engine::new(
            Registry::detached(cfg.routing.clone(), cfg.discovery.clone()),
            Arc::clone(&cfg),
            Arc::new(MemoryStore::new(Retention::runs(cfg.store.retained_runs))),
            Arc::new(NoHooks),
        )
    }

    /// A run admitted as `start` admits one, and its task's guard.
    fn admitted(engine: &Arc<Engine>) -> (Arc<RunRecord>, Driving) {
        let run = Arc::new(RunRecord::new("g".into(), String::new()));
        engine.active.fetch_add(1, Ordering::AcqRel);
        let driving = Driving {
            engine: Arc::clone(engine),
            run: Arc::clone(&run),
        };
        (run, driving)
    }

    #[test]
    fn a_run_whose_task_ends_early_is_failed_and_gives_its_slot_back() {
        let engine = engine();
        let (run, driving) = admitted(&engine);
        drop(driving);
        let (finished, _) = run.finished().expect("the run is finished");
        assert_eq!(finished.state(), RunState::Failed);
        assert_eq!(finished.reason, "UNSPECIFIED");
        assert!(run.stop.is_cancelled(), "its steps are told to stop");
        assert_eq!(engine.active.load(Ordering::Acquire), 0);
    }

    #[test]
    fn a_finished_run_is_left_as_it_is() {
        let engine = engine();
        let (run, driving) = admitted(&engine);
        run.finish(RunFinished {
            state: RunState::Completed.into(),
            ..RunFinished::default()
        });
        drop(driving);
        assert_eq!(run.state(), RunState::Completed);
        assert_eq!(run.log.len(), 1);
        assert_eq!(engine.active.load(Ordering::Acquire), 0);
    }
}
