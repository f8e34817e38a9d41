//! The data agent: extracts and prepares sales data.
//!
//! Skills:
//! * `sales.describe`: what the source holds (columns, date range, values).
//! * `sales.extract`: an aggregated dataset for a period, with filters,
//!   group-by dimensions and comparison periods, plus a CSV artifact.

pub mod config;
pub mod generator;
pub mod grouping;
pub mod server;
pub use agentmesh_sales::period;
pub mod skills;
pub mod source;

use std::sync::Arc;

use agentmesh_proto::v1::AgentCard;
use agentmesh_runtime::{Agent, Task, TaskContext, TaskError, TaskOutput};

pub use config::{DataAgentConfig, DataConfig, SourceKind};
use source::{Description, SalesSource};

/// The data agent.
pub struct DataAgent {
    source: Arc<dyn SalesSource>,
    /// One permit per query allowed to run at once.
    queries: Arc<tokio::sync::Semaphore>,
    described: Arc<Description>,
    complete_through: time::Date,
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The source failed.
    #[error(transparent)]
    Source(#[from] source::SourceError),
    /// The configuration is unusable.
    #[error("{0}")]
    Config(String),
}

impl DataAgent {
    /// Opens (and on first start generates) the configured source.
    pub fn open(cfg: &DataConfig) -> Result<Self, StartError> {
        Self::with_queries(Arc::from(cfg.open_source()?), cfg.max_parallel_queries)
    }

    /// An agent over any source, running the default number of queries at
    /// once.
    pub fn from_source(source: Arc<dyn SalesSource>) -> Result<Self, StartError> {
        Self::with_queries(source, config::DEFAULT_PARALLEL_QUERIES)
    }

    /// An agent over `source` running at most `queries` queries at once.
    fn with_queries(source: Arc<dyn SalesSource>, queries: usize) -> Result<Self, StartError> {
        let described = source.describe()?;
        let last = time::Date::parse(
            &described.last_date,
            time::macros::format_description!("[year]-[month]-[day]"),
        )
        .map_err(|_| {
            StartError::Config(format!("bad last order date {:?}", described.last_date))
        })?;
        // Complete through the last day of the last whole month.
        let complete_through = if last.next_day().is_none_or(|d| d.day() == 1) {
            last
        } else {
            last.replace_day(1)
                .ok()
                .and_then(time::Date::previous_day)
                .unwrap_or(last)
        };
        Ok(Self {
            source,
            queries: Arc::new(tokio::sync::Semaphore::new(queries.max(1))),
            described: Arc::new(described),
            complete_through,
        })
    }
}

impl Agent for DataAgent {
    fn card(&self) -> AgentCard {
        AgentCard {
            name: "data".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Extracts and prepares sales data: describes the source and returns \
                          aggregated datasets for a period, with filters, group-bys and \
                          comparison periods. Aggregation runs in the database."
                .into(),
            skills: skills::card_skills(),
            ..AgentCard::default()
        }
    }

    async fn execute(&self, task: Task, ctx: TaskContext) -> Result<TaskOutput, TaskError> {
        match task.skill_id.as_str() {
            skills::DESCRIBE => Ok(skills::describe(&self.described, self.complete_through)),
            skills::EXTRACT => {
                let request = skills::ExtractRequest::parse(
                    &task.input,
                    &self.described,
                    self.complete_through,
                )?;
                ctx.progress(format!("querying {}", request.period.label()), 0.1)
                    .await;
                let source = Arc::clone(&self.source);
                let turn = Arc::clone(&self.queries)
                    .acquire_owned()
                    .await
                    .map_err(|_| TaskError::failed("the agent is stopping"))?;
                // The turn is the query's: a canceled task's query runs to
                // its end on its thread, and holds the turn until then.
                let extracted = tokio::task::spawn_blocking(move || {
                    let _turn = turn;
                    request.run(source.as_ref())
                })
                .await
                .map_err(|_| TaskError::failed("extraction stopped unexpectedly"))??;
                ctx.progress("dataset ready", 0.9).await;
                ctx.artifact(extracted.csv_artifact()).await;
                Ok(TaskOutput::new(extracted.output))
            }
            other => Err(TaskError::new(
                agentmesh_runtime::ErrorReason::UnknownSkill,
                format!("unknown skill {other}"),
            )),
        }
    }
}
