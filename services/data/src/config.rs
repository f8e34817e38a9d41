//! The data agent's configuration (`[data]` table).

use std::path::{Path, PathBuf};

use agentmesh_runtime::{ServerConfig, TelemetryConfig};
use serde::{Deserialize, Serialize};

use crate::StartError;
use crate::source::{SalesSource, SqliteSource};

/// Default port of the data agent.
pub const DEFAULT_PORT: u16 = 50051;

/// Everything the data agent binary reads.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DataAgentConfig {
    /// gRPC server settings.
    pub server: ServerConfig,
    /// Logging.
    pub telemetry: TelemetryConfig,
    /// The data source.
    pub data: DataConfig,
}

impl Default for DataAgentConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig::on_port(DEFAULT_PORT),
            telemetry: TelemetryConfig::default(),
            data: DataConfig::default(),
        }
    }
}

/// Kind of source.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// The embedded SQLite database, generated on first start.
    Embedded,
    /// Any SQLite file with a `sales` table.
    Sqlite,
    /// A CSV file or a folder of CSV files with the `sales` columns.
    Csv,
}

/// `[data]`: where sales data comes from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Every file the agent reads lives under this folder; paths outside it
    /// are refused.
    pub root: PathBuf,
    /// Kind of source.
    pub source: SourceKind,
    /// Path of the source, relative to `root` (for `embedded`: where the
    /// generated database is kept).
    pub path: PathBuf,
    /// Size of the generated history (1.0 ≈ 260,000 order lines).
    pub scale: f64,
    /// Seed of the generator.
    pub seed: u64,
    /// Extract queries run at once; more tasks wait their turn. Each holds
    /// a query's working memory (SQLite's sorter and temporary B-trees, a
    /// blocking thread and its allocator arena) while it runs.
    pub max_parallel_queries: usize,
}

/// Default of [`DataConfig::max_parallel_queries`]: the queries are
/// CPU-bound, so a few per core keep the cores busy.
pub const DEFAULT_PARALLEL_QUERIES: usize = 4;

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            root: PathBuf::from("data"),
            source: SourceKind::Embedded,
            path: PathBuf::from("sales.db"),
            scale: 1.0,
            seed: 42,
            max_parallel_queries: DEFAULT_PARALLEL_QUERIES,
        }
    }
}

impl DataConfig {
    /// The source's path, checked to lie inside `root`.
    pub fn resolved_path(&self) -> Result<PathBuf, StartError> {
        std::fs::create_dir_all(&self.root)
            .map_err(|e| StartError::Config(format!("data root {}: {e}", self.root.display())))?;
        let root = self
            .root
            .canonicalize()
            .map_err(|e| StartError::Config(format!("data root {}: {e}", self.root.display())))?;
        let joined = root.join(&self.path);
        // The file itself may not exist yet (embedded): check its folder.
        let (dir, name) = match (joined.parent(), joined.file_name()) {
            (Some(dir), Some(name)) => (dir.to_path_buf(), name.to_os_string()),
            _ => return Err(outside(&self.path, &root)),
        };
        let dir = dir
            .canonicalize()
            .map_err(|e| StartError::Config(format!("source folder {}: {e}", dir.display())))?;
        let full = dir.join(name);
        let full = full.canonicalize().unwrap_or(full);
        if !full.starts_with(&root) {
            return Err(outside(&self.path, &root));
        }
        Ok(full)
    }

    /// Opens the configured source.
    pub fn open_source(&self) -> Result<Box<dyn SalesSource>, StartError> {
        if !(self.scale > 0.0 && self.scale <= 100.0) {
            return Err(StartError::Config(format!(
                "data.scale must be in (0, 100], got {}",
                self.scale
            )));
        }
        let path = self.resolved_path()?;
        Ok(match self.source {
            SourceKind::Embedded => Box::new(SqliteSource::embedded(&path, self.scale, self.seed)?),
            SourceKind::Sqlite => Box::new(SqliteSource::open(&path)?),
            SourceKind::Csv => Box::new(SqliteSource::csv(&path)?),
        })
    }
}

fn outside(path: &Path, root: &Path) -> StartError {
    StartError::Config(format!(
        "source path {} is outside the data root {}; refusing to read it",
        path.display(),
        root.display()
    ))
}
