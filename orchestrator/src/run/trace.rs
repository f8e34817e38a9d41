//! The spans of a run: the run, each step, each attempt. Each is joined to
//! its parent's W3C context (the client's for the run), and an attempt's
//! context is what the agent continues. Retries, reroutes and lease losses
//! are events logged within these spans (span events in the trace).

use agentmesh_runtime::telemetry::context;
use opentelemetry::trace::SpanContext;
use tracing::field::Empty;
use tracing::{Span, info_span};

/// A span and its context on the wire.
#[derive(Clone)]
pub struct Traced {
    /// The span (entered while its work runs).
    pub span: Span,
    /// Its W3C context, passed to children and to agents.
    pub context: SpanContext,
}

impl Traced {
    fn join(span: Span, parent: &SpanContext) -> Self {
        let context = context::join(&span, parent);
        Self { span, context }
    }

    /// A request's run: a child of the client's trace when the request
    /// carried one (invalid `parent`: a new trace). The run id is recorded
    /// once the run exists ([`Traced::run_id`]).
    pub fn run(parent: &SpanContext, owner: &str) -> Self {
        let span = info_span!(
            parent: None,
            "run",
            otel.kind = "server",
            run_id = Empty,
            owner = %owner,
            state = Empty,
            reason = Empty,
            otel.status_code = Empty,
            trace_id = Empty,
            span_id = Empty,
        );
        Self::join(span, parent)
    }

    /// Records the run's id on its span.
    pub fn run_id(&self, id: &str) {
        self.span.record("run_id", id);
    }

    /// Step `step_id` (skill `skill`) of the run `parent`.
    pub fn step(run: &Self, step_id: &str, skill: &str) -> Self {
        let span = info_span!(
            parent: &run.span,
            "step",
            step_id = %step_id,
            skill = %skill,
            outcome = Empty,
            otel.status_code = Empty,
            trace_id = Empty,
            span_id = Empty,
        );
        Self::join(span, &run.context)
    }

    /// One attempt of a step on one replica.
    pub fn attempt(step: &Self, attempt: Attempt<'_>) -> Self {
        let span = info_span!(
            parent: &step.span,
            "attempt",
            otel.kind = "client",
            step_id = %attempt.step_id,
            skill = %attempt.skill,
            agent = %attempt.agent,
            replica = %attempt.replica,
            attempt = attempt.number,
            task_id = %attempt.task_id,
            outcome = Empty,
            otel.status_code = Empty,
            trace_id = Empty,
            span_id = Empty,
        );
        Self::join(span, &step.context)
    }

    /// How the span's work ended: `completed`, or a reason in lower case
    /// (an error in the trace).
    pub fn outcome(&self, outcome: &str) {
        self.span.record("outcome", outcome);
        if outcome != "completed" {
            self.span.record("otel.status_code", "ERROR");
        }
    }

    /// How the run ended.
    pub fn finished(span: &Span, state: &str, reason: &str) {
        span.record("state", state);
        if !reason.is_empty() {
            span.record("reason", reason);
            span.record("otel.status_code", "ERROR");
        }
    }
}

/// What names an attempt.
pub struct Attempt<'a> {
    /// The step.
    pub step_id: &'a str,
    /// Its skill.
    pub skill: &'a str,
    /// The agent's name.
    pub agent: &'a str,
    /// The replica's address.
    pub replica: &'a str,
    /// 1 for the first attempt.
    pub number: u32,
    /// The task id sent to the agent.
    pub task_id: &'a str,
}
