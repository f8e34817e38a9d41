//! What an agent exports: its tasks by skill and outcome, and how long
//! they took.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A task's skill and how it ended: `completed`, or the failure's reason
/// in lower case (`canceled`, `deadline_exceeded`, `agent_failed`, ...).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    /// The skill (one of the agent's card).
    pub skill: String,
    /// How it ended.
    pub outcome: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Task durations: 5 ms to about 80 s.
pub fn task_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// The agent runtime's task metrics.
#[derive(Debug)]
pub struct TaskMetrics {
    /// `agentmesh_agent_tasks_total{skill, outcome}`.
    pub finished: Family<TaskLabels, Counter>,
    /// `agentmesh_agent_task_duration_seconds{skill, outcome}`.
    pub duration: Histograms<TaskLabels>,
    /// `agentmesh_agent_tasks_in_flight`.
    pub in_flight: Gauge,
}

/// The process's task metrics (counted whether or not they are exported).
pub fn tasks() -> &'static TaskMetrics {
    static TASKS: LazyLock<TaskMetrics> = LazyLock::new(|| TaskMetrics {
        finished: Family::default(),
        duration: Family::new_with_constructor(task_buckets),
        in_flight: Gauge::default(),
    });
    &TASKS
}

/// Registers the task families.
pub fn register(registry: &mut Registry) {
    let m = tasks();
    registry.register(
        "agentmesh_agent_tasks",
        "Tasks this agent finished, by skill and outcome",
        m.finished.clone(),
    );
    registry.register(
        "agentmesh_agent_task_duration_seconds",
        "Time from a task's start to its end, by skill and outcome",
        m.duration.clone(),
    );
    registry.register(
        "agentmesh_agent_tasks_in_flight",
        "Tasks this agent is running now",
        m.in_flight.clone(),
    );
}
