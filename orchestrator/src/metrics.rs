//! What the orchestrator exports to Prometheus (docs/OPERATIONS.md lists
//! every family). Counters and histograms are counted where things happen;
//! gauges of live state (runs and tasks in flight, queues, the registry and
//! each endpoint's health) are read just before each scrape
//! ([`watch`]). Labels are bounded: skills, agent names, endpoints,
//! states and reasons; never a run, step or task id.

use std::sync::{Arc, LazyLock};

use agentmesh_runtime::metrics::Exporter;
use agentmesh_runtime::server::Drain;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry as Families;

use crate::routing::Registry;
use crate::run::Engine;

/// `source`: how a run's plan came (`goal` or `plan`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Source {
    /// `goal` or `plan`.
    pub source: &'static str,
}

/// How a run ended.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunEnd {
    /// `completed`, `partial`, `failed`, `canceled`.
    pub state: String,
    /// The failure's reason (`""` when it completed).
    pub reason: String,
}

/// A run's final state.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct State {
    /// `completed`, `partial`, `failed`, `canceled`.
    pub state: String,
}

/// A step or an attempt: its skill, the agent (card name) that served it,
/// and how it ended (`completed` or the reason, in lower case).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Work {
    /// The skill.
    pub skill: String,
    /// The agent's card name (`""` when none was reached).
    pub agent: String,
    /// `completed`, or the failure's reason in lower case.
    pub outcome: String,
}

/// A skill.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Skill {
    /// The skill.
    pub skill: String,
}

/// A retry: the skill, and the reason of the attempt that failed.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Retry {
    /// The skill.
    pub skill: String,
    /// The failed attempt's reason, in lower case.
    pub reason: String,
}

/// An endpoint and the agent behind it.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Endpoint {
    /// `host:port`.
    pub endpoint: String,
    /// The card's name (`""` before a card was read).
    pub agent: String,
}

/// The planner that planned a goal, and how.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Planner {
    /// The planning mode (`rules`, `llm`, `llm_then_rules`,
    /// `rules_then_llm`).
    pub planner: &'static str,
    /// `planned` or `refused`.
    pub outcome: &'static str,
}

/// Who spent language-model tokens.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Tokens {
    /// `planner` or `agents`.
    pub source: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn seconds_short() -> Histogram {
    // 1 ms to about 33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

fn seconds_long() -> Histogram {
    // 10 ms to about 5.5 min.
    Histogram::new(exponential_buckets(0.01, 2.0, 16))
}

fn seconds_tiny() -> Histogram {
    // 50 µs to about 3.3 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

/// Every orchestrator family.
#[derive(Debug)]
pub struct Metrics {
    /// `agentmesh_runs_started_total{source}`.
    pub runs_started: Family<Source, Counter>,
    /// `agentmesh_runs_finished_total{state, reason}`.
    pub runs_finished: Family<RunEnd, Counter>,
    /// `agentmesh_run_duration_seconds{state}`.
    pub run_duration: Histograms<State>,
    /// `agentmesh_step_duration_seconds{skill, agent, outcome}`.
    pub step_duration: Histograms<Work>,
    /// `agentmesh_attempts_total{skill, agent, outcome}`.
    pub attempts: Family<Work, Counter>,
    /// `agentmesh_attempt_duration_seconds{skill, agent, outcome}`.
    pub attempt_duration: Histograms<Work>,
    /// `agentmesh_retries_total{skill, reason}`.
    pub retries: Family<Retry, Counter>,
    /// `agentmesh_reroutes_total{skill}`.
    pub reroutes: Family<Skill, Counter>,
    /// `agentmesh_lease_losses_total{skill}`.
    pub lease_losses: Family<Skill, Counter>,
    /// `agentmesh_ejections_total{endpoint, agent}`.
    pub ejections: Family<Endpoint, Counter>,
    /// `agentmesh_queue_wait_seconds{skill}`.
    pub queue_wait: Histograms<Skill>,
    /// `agentmesh_store_commit_seconds`.
    pub store_commit: Histogram,
    /// `agentmesh_store_adopted_runs_total`.
    pub store_adopted: Counter,
    /// `agentmesh_store_step_downs_total`.
    pub store_step_downs: Counter,
    /// `agentmesh_store_fenced_writes_total`.
    pub store_fenced_writes: Counter,
    /// `agentmesh_planner_duration_seconds{planner, outcome}`.
    pub planner_duration: Histograms<Planner>,
    /// `agentmesh_llm_tokens_total{source}`.
    pub llm_tokens: Family<Tokens, Counter>,
    /// `agentmesh_runs_in_flight`.
    pub runs_in_flight: Gauge,
    /// `agentmesh_tasks_in_flight`.
    pub tasks_in_flight: Gauge,
    /// `agentmesh_queue_length{skill}`.
    pub queue_length: Family<Skill, Gauge>,
    /// `agentmesh_registry_endpoints`.
    pub registry_endpoints: Gauge,
    /// `agentmesh_endpoint_up{endpoint, agent}`.
    pub endpoint_up: Family<Endpoint, Gauge>,
}

/// The process's orchestrator metrics (counted whether or not they are
/// exported).
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
        runs_started: Family::default(),
        runs_finished: Family::default(),
        run_duration: Family::new_with_constructor(seconds_long),
        step_duration: Family::new_with_constructor(seconds_long),
        attempts: Family::default(),
        attempt_duration: Family::new_with_constructor(seconds_short),
        retries: Family::default(),
        reroutes: Family::default(),
        lease_losses: Family::default(),
        ejections: Family::default(),
        queue_wait: Family::new_with_constructor(seconds_short),
        store_commit: seconds_tiny(),
        store_adopted: Counter::default(),
        store_step_downs: Counter::default(),
        store_fenced_writes: Counter::default(),
        planner_duration: Family::new_with_constructor(seconds_short),
        llm_tokens: Family::default(),
        runs_in_flight: Gauge::default(),
        tasks_in_flight: Gauge::default(),
        queue_length: Family::default(),
        registry_endpoints: Gauge::default(),
        endpoint_up: Family::default(),
    });
    &METRICS
}

/// A reason as a label value: its wire name in lower case.
pub fn reason_label(reason: agentmesh_proto::error::ErrorReason) -> String {
    reason.name().to_ascii_lowercase()
}

/// Registers every family.
pub fn register(r: &mut Families) {
    let m = metrics();
    r.register(
        "agentmesh_runs_started",
        "Runs accepted, by how their plan came",
        m.runs_started.clone(),
    );
    r.register(
        "agentmesh_runs_finished",
        "Runs that ended, by state and reason",
        m.runs_finished.clone(),
    );
    r.register(
        "agentmesh_run_duration_seconds",
        "Time from a run's acceptance to its end, by final state",
        m.run_duration.clone(),
    );
    r.register("agentmesh_step_duration_seconds", "Time from a step's first attempt to its end, retries and backoff included, by skill, the agent of its last attempt, and outcome", m.step_duration.clone());
    r.register(
        "agentmesh_attempts",
        "Attempts made, by skill, agent and outcome",
        m.attempts.clone(),
    );
    r.register(
        "agentmesh_attempt_duration_seconds",
        "Time of one attempt on an agent, by skill, agent and outcome",
        m.attempt_duration.clone(),
    );
    r.register(
        "agentmesh_retries",
        "Attempts retried after a failure, by skill and the failure's reason",
        m.retries.clone(),
    );
    r.register(
        "agentmesh_reroutes",
        "Retries sent to another replica than the attempt before, by skill",
        m.reroutes.clone(),
    );
    r.register(
        "agentmesh_lease_losses",
        "Attempts abandoned because the agent sent nothing for a heartbeat lease, by skill",
        m.lease_losses.clone(),
    );
    r.register(
        "agentmesh_ejections",
        "Endpoints ejected after repeated failures",
        m.ejections.clone(),
    );
    r.register(
        "agentmesh_queue_wait_seconds",
        "Time a step waited in its skill's queue for a free replica",
        m.queue_wait.clone(),
    );
    r.register(
        "agentmesh_store_commit_seconds",
        "Time of one commit of a batch of run events (SQLite or PostgreSQL)",
        m.store_commit.clone(),
    );
    r.register(
        "agentmesh_store_adopted_runs",
        "Runs this replica took over from replicas whose store lease expired (PostgreSQL)",
        m.store_adopted.clone(),
    );
    r.register(
        "agentmesh_store_step_downs",
        "Times this replica lost its store lease and gave its runs up (PostgreSQL)",
        m.store_step_downs.clone(),
    );
    r.register(
        "agentmesh_store_fenced_writes",
        "Batches of run events the database refused: the writer's lease or epoch was no longer current (PostgreSQL)",
        m.store_fenced_writes.clone(),
    );
    r.register(
        "agentmesh_planner_duration_seconds",
        "Time to plan a goal, by planner and outcome",
        m.planner_duration.clone(),
    );
    r.register(
        "agentmesh_llm_tokens",
        "Language-model tokens used, by the planner or reported by agents",
        m.llm_tokens.clone(),
    );
    r.register(
        "agentmesh_runs_in_flight",
        "Runs executing now",
        m.runs_in_flight.clone(),
    );
    r.register(
        "agentmesh_tasks_in_flight",
        "Attempts running on agents now",
        m.tasks_in_flight.clone(),
    );
    r.register(
        "agentmesh_queue_length",
        "Steps waiting for a free replica, by skill",
        m.queue_length.clone(),
    );
    r.register(
        "agentmesh_registry_endpoints",
        "Agent endpoints known, whatever their health",
        m.registry_endpoints.clone(),
    );
    r.register(
        "agentmesh_endpoint_up",
        "1 when an endpoint is SERVING and has a card, else 0",
        m.endpoint_up.clone(),
    );
}

/// Sets the live gauges from `registry` and `engine` before every scrape.
pub fn watch(exporter: &mut Exporter, registry: Arc<Registry>, engine: Arc<Engine>) {
    exporter.on_scrape(move || {
        let m = metrics();
        m.runs_in_flight
            .set(i64::try_from(engine.in_flight()).unwrap_or(i64::MAX));
        let endpoints = registry.snapshot();
        m.registry_endpoints
            .set(i64::try_from(endpoints.len()).unwrap_or(i64::MAX));
        m.endpoint_up.clear();
        let mut tasks = 0i64;
        for ep in &endpoints {
            tasks += i64::from(ep.in_flight);
            let serving =
                ep.health() == agentmesh_proto::v1::EndpointHealth::Serving && ep.card.is_some();
            let agent = ep.card.as_ref().map(|c| c.name.clone()).unwrap_or_default();
            m.endpoint_up
                .get_or_create(&Endpoint {
                    endpoint: ep.address.clone(),
                    agent,
                })
                .set(i64::from(serving));
        }
        m.tasks_in_flight.set(tasks);
        m.queue_length.clear();
        for (skill, waiting) in registry.queue_lengths() {
            m.queue_length
                .get_or_create(&Skill { skill })
                .set(i64::try_from(waiting).unwrap_or(i64::MAX));
        }
    });
}
