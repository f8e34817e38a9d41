//! Sales sources behind one trait. Every source is queried with SQL built
//! from a fixed whitelist of dimensions and bound parameters: no SQL text
//! ever comes from a request. CSV files are loaded into an in-memory SQLite
//! database at start, so aggregation is pushed down there too.

use parking_lot::Mutex;
use std::path::{Path, PathBuf};

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OpenFlags, params_from_iter};
use serde::Serialize;
use time::Date;

use crate::generator;
use crate::grouping::{Grouped, Grouping, Line};

/// Why a source failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// SQLite failed.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A CSV file could not be read.
    #[error("csv {path}: {source}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: csv::Error,
    },
    /// A CSV file lacks a column.
    #[error("csv {path}: missing column {column}")]
    CsvColumn {
        /// The file.
        path: PathBuf,
        /// The column.
        column: String,
    },
    /// A CSV value is not of its column's type.
    #[error("csv {path}, line {line}: {column} {value:?} is not {expected}")]
    CsvValue {
        /// The file.
        path: PathBuf,
        /// The line (1 is the header).
        line: u64,
        /// The column.
        column: &'static str,
        /// The value as written.
        value: String,
        /// What the column holds.
        expected: &'static str,
    },
    /// A file or folder is unusable.
    #[error("{0}")]
    Io(String),
    /// The source has no rows.
    #[error("the source has no sales rows")]
    Empty,
}

/// A dimension rows can be grouped or filtered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// Calendar month, `YYYY-MM`.
    Month,
    /// ISO-like week, `YYYY-Www` (weeks start Monday).
    Week,
    /// Sales region.
    Region,
    /// Country.
    Country,
    /// Product line.
    ProductLine,
    /// Product.
    Product,
    /// Sales channel.
    Channel,
}

impl Dimension {
    /// Every dimension.
    pub const ALL: [Self; 7] = [
        Self::Month,
        Self::Week,
        Self::Region,
        Self::Country,
        Self::ProductLine,
        Self::Product,
        Self::Channel,
    ];

    /// The name used in requests and output columns.
    pub fn name(self) -> &'static str {
        match self {
            Self::Month => "month",
            Self::Week => "week",
            Self::Region => "region",
            Self::Country => "country",
            Self::ProductLine => "product_line",
            Self::Product => "product",
            Self::Channel => "channel",
        }
    }

    /// Parses a request name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    /// The SQL expression; a fixed string, never from a request.
    fn sql(self) -> &'static str {
        match self {
            Self::Month => "substr(order_date, 1, 7)",
            Self::Week => "strftime('%Y-W%W', order_date)",
            Self::Region => "region",
            Self::Country => "country",
            Self::ProductLine => "product_line",
            Self::Product => "product",
            Self::Channel => "channel",
        }
    }

    /// Whether values can be filtered on (categorical dimensions).
    pub fn filterable(self) -> bool {
        !matches!(self, Self::Month | Self::Week)
    }
}

/// An aggregation request.
#[derive(Debug, Clone)]
pub struct Query {
    /// First day.
    pub start: Date,
    /// Last day, inclusive.
    pub end: Date,
    /// Only rows whose dimension has one of the values.
    pub filters: Vec<(Dimension, Vec<String>)>,
    /// Group by these, in order.
    pub group_by: Vec<Dimension>,
}

/// Measures of one group.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Measures {
    /// Net revenue after discounts.
    pub revenue: f64,
    /// Cost of goods.
    pub cost: f64,
    /// Units sold.
    pub units: i64,
    /// Distinct orders.
    pub orders: i64,
    /// Order lines.
    pub lines: i64,
}

/// One aggregated row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Dimension values, in `group_by` order.
    pub keys: Vec<String>,
    /// The measures.
    pub measures: Measures,
}

/// What a source holds.
#[derive(Debug, Clone, Serialize)]
pub struct Description {
    /// Order lines.
    pub row_count: i64,
    /// First order date.
    pub first_date: String,
    /// Last order date.
    pub last_date: String,
    /// Distinct values of the categorical dimensions.
    pub regions: Vec<String>,
    /// Distinct countries.
    pub countries: Vec<String>,
    /// Distinct product lines.
    pub product_lines: Vec<String>,
    /// Distinct products.
    pub products: Vec<String>,
    /// Distinct channels.
    pub channels: Vec<String>,
}

impl Description {
    /// Known values of a categorical dimension.
    pub fn values(&self, dim: Dimension) -> &[String] {
        match dim {
            Dimension::Region => &self.regions,
            Dimension::Country => &self.countries,
            Dimension::ProductLine => &self.product_lines,
            Dimension::Product => &self.products,
            Dimension::Channel => &self.channels,
            Dimension::Month | Dimension::Week => &[],
        }
    }
}

/// A source of sales order lines.
pub trait SalesSource: Send + Sync {
    /// Tables, ranges and distinct values.
    fn describe(&self) -> Result<Description, SourceError>;
    /// Aggregates order lines: rows sorted by their keys, and the totals.
    fn aggregate(&self, query: &Query) -> Result<Grouped, SourceError>;
}

/// Page cache of one connection, KiB (SQLite's default, said outright).
const CACHE_KIB: i64 = 2_000;

/// Bounds what one connection holds in memory: its page cache, and the
/// temporary B-trees of GROUP BY and DISTINCT, which the bundled SQLite
/// keeps in memory by default (`SQLITE_TEMP_STORE=2`): about 20 MB per
/// Q2 query, so 16 tasks at once held some 400 MiB. In files they are
/// cached within the page cache and spill to the temp folder (`TMPDIR`).
fn bound_memory(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.pragma_update(None, "temp_store", "FILE")?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
    Ok(())
}

/// Idle read-only connections kept per file source. Tasks beyond this open
/// their own connection and close it after the query.
const MAX_IDLE_CONNECTIONS: usize = 8;

enum Db {
    /// A SQLite file, read through a small pool of read-only connections
    /// (queries run in parallel; a pooled connection keeps its prepared
    /// statements and page cache).
    File {
        path: PathBuf,
        idle: Mutex<Vec<Connection>>,
    },
    /// An in-memory database loaded from CSV.
    Memory(Mutex<Connection>),
}

/// A SQLite-backed source: a SQLite file or CSV files loaded into memory.
pub struct SqliteSource {
    db: Db,
}

impl SqliteSource {
    /// A SQLite file with a `sales` table.
    pub fn open(path: &Path) -> Result<Self, SourceError> {
        if !path.is_file() {
            return Err(SourceError::Io(format!("{} is not a file", path.display())));
        }
        let source = Self {
            db: Db::File {
                path: path.to_path_buf(),
                idle: Mutex::new(Vec::new()),
            },
        };
        source
            .with_conn(|c| c.query_row("SELECT count(*) FROM sales", [], |r| r.get::<_, i64>(0)))?;
        Ok(source)
    }

    /// The embedded database at `path`, generated first if it does not exist.
    pub fn embedded(path: &Path, scale: f64, seed: u64) -> Result<Self, SourceError> {
        if !path.is_file() {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| SourceError::Io(format!("create {}: {e}", dir.display())))?;
            }
            let rows = generator::generate(path, scale, seed)?;
            tracing::info!(path = %path.display(), rows, "generated the embedded sales database");
        }
        Self::open(path)
    }

    /// A CSV file, or every `*.csv` in a folder, with the `sales` columns as
    /// headers.
    pub fn csv(path: &Path) -> Result<Self, SourceError> {
        let files = if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| SourceError::Io(format!("read {}: {e}", path.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("csv")))
                .collect();
            files.sort();
            files
        } else {
            vec![path.to_path_buf()]
        };
        if files.is_empty() {
            return Err(SourceError::Io(format!(
                "no .csv files in {}",
                path.display()
            )));
        }
        let mut conn = Connection::open_in_memory()?;
        bound_memory(&conn)?;
        conn.execute_batch(generator::SCHEMA)?;
        for file in &files {
            load_csv(&mut conn, file)?;
        }
        conn.execute_batch(generator::INDEX)?;
        Ok(Self {
            db: Db::Memory(Mutex::new(conn)),
        })
    }

    fn with_conn<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error>,
    ) -> Result<T, SourceError> {
        match &self.db {
            Db::File { path, idle } => {
                let pooled = idle.lock().pop();
                let conn = match pooled {
                    Some(conn) => conn,
                    None => {
                        let conn = Connection::open_with_flags(
                            path,
                            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                        )?;
                        bound_memory(&conn)?;
                        conn
                    }
                };
                let result = f(&conn);
                let mut idle = idle.lock();
                if idle.len() < MAX_IDLE_CONNECTIONS {
                    idle.push(conn);
                }
                Ok(result?)
            }
            Db::Memory(conn) => {
                let conn = conn.lock();
                Ok(f(&conn)?)
            }
        }
    }
}

const CSV_COLUMNS: [&str; 12] = [
    "order_id",
    "order_date",
    "region",
    "country",
    "product_line",
    "product",
    "channel",
    "units",
    "unit_price",
    "discount",
    "revenue",
    "cost",
];

/// What a CSV column holds, for the error that refuses a value.
fn expected(column: &str) -> &'static str {
    match column {
        "order_id" | "units" => "a whole number",
        "unit_price" | "discount" | "revenue" | "cost" => "a number",
        "order_date" => "a date (YYYY-MM-DD)",
        _ => "text",
    }
}

/// A CSV value as its column's type: `None` when it is not one. (SQLite
/// would store "n/a" in a REAL column as text, and sum it as 0.)
fn typed(column: &str, raw: &str) -> Option<rusqlite::types::Value> {
    use rusqlite::types::Value;
    match column {
        "order_id" | "units" => raw.parse::<i64>().ok().map(Value::Integer),
        "unit_price" | "discount" | "revenue" | "cost" => raw
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .map(Value::Real),
        "order_date" => {
            let fmt = time::macros::format_description!("[year]-[month]-[day]");
            time::Date::parse(raw, fmt)
                .ok()
                .map(|_| Value::Text(raw.to_string()))
        }
        _ => Some(Value::Text(raw.to_string())),
    }
}

fn load_csv(conn: &mut Connection, file: &Path) -> Result<(), SourceError> {
    let csv_err = |source| SourceError::Csv {
        path: file.to_path_buf(),
        source,
    };
    let mut reader = csv::Reader::from_path(file).map_err(csv_err)?;
    let headers = reader.headers().map_err(csv_err)?.clone();
    let mut index = Vec::with_capacity(CSV_COLUMNS.len());
    for column in CSV_COLUMNS {
        let i = headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(column))
            .ok_or_else(|| SourceError::CsvColumn {
                path: file.to_path_buf(),
                column: column.to_string(),
            })?;
        index.push(i);
    }
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare(
            "INSERT INTO sales VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?;
        for record in reader.records() {
            let record = record.map_err(csv_err)?;
            let line = record.position().map_or(0, csv::Position::line);
            let mut values = Vec::with_capacity(CSV_COLUMNS.len());
            for (&i, column) in index.iter().zip(CSV_COLUMNS) {
                let raw = record.get(i).unwrap_or("").trim();
                let value = typed(column, raw).ok_or_else(|| SourceError::CsvValue {
                    path: file.to_path_buf(),
                    line,
                    column,
                    value: raw.to_string(),
                    expected: expected(column),
                })?;
                values.push(value);
            }
            insert.execute(params_from_iter(values))?;
        }
    }
    tx.commit()?;
    Ok(())
}

impl SalesSource for SqliteSource {
    fn describe(&self) -> Result<Description, SourceError> {
        self.with_conn(|c| {
            let (row_count, first, last): (i64, Option<String>, Option<String>) = c.query_row(
                "SELECT count(*), min(order_date), max(order_date) FROM sales",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            let distinct = |col: &str| -> Result<Vec<String>, rusqlite::Error> {
                // `col` is one of the fixed names below, never request text.
                let mut stmt =
                    c.prepare(&format!("SELECT DISTINCT {col} FROM sales ORDER BY 1"))?;
                stmt.query_map([], |r| r.get(0))?.collect()
            };
            Ok(Description {
                row_count,
                first_date: first.unwrap_or_default(),
                last_date: last.unwrap_or_default(),
                regions: distinct("region")?,
                countries: distinct("country")?,
                product_lines: distinct("product_line")?,
                products: distinct("product")?,
                channels: distinct("channel")?,
            })
        })
        .and_then(|d| {
            if d.row_count == 0 {
                Err(SourceError::Empty)
            } else {
                Ok(d)
            }
        })
    }

    fn aggregate(&self, query: &Query) -> Result<Grouped, SourceError> {
        // The period's lines by the date index; grouped and summed in
        // `Grouping` (see there why not in SQL).
        let mut sql = String::from("SELECT ");
        for dim in &query.group_by {
            sql.push_str(dim.sql());
            sql.push_str(", ");
        }
        sql.push_str(
            "order_id, units, revenue, cost FROM sales WHERE order_date BETWEEN ?1 AND ?2",
        );
        let mut params: Vec<SqlValue> = vec![
            SqlValue::Text(query.start.to_string()),
            SqlValue::Text(query.end.to_string()),
        ];
        for (dim, values) in &query.filters {
            if values.is_empty() {
                continue;
            }
            sql.push_str(" AND ");
            sql.push_str(dim.sql());
            sql.push_str(" IN (");
            for (i, value) in values.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                params.push(SqlValue::Text(value.clone()));
                sql.push_str(&format!("?{}", params.len()));
            }
            sql.push(')');
        }
        let n = query.group_by.len();
        self.with_conn(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let mut lines = stmt.query(params_from_iter(params.iter()))?;
            let mut grouping = Grouping::new(n);
            while let Some(r) = lines.next()? {
                let line = Line {
                    order_id: r.get(n)?,
                    units: r.get(n + 1)?,
                    revenue: r.get(n + 2)?,
                    cost: r.get(n + 3)?,
                };
                let mut keys = [""; Dimension::ALL.len()];
                for (i, key) in keys.iter_mut().enumerate().take(n) {
                    // A dimension's expression is NULL only for a malformed
                    // date: it groups as "". Text that is not UTF-8, or a
                    // number, is an error, not a key.
                    *key = r.get_ref(i)?.as_str_or_null()?.unwrap_or("");
                }
                grouping.add(keys.into_iter().take(n), &line);
            }
            Ok(grouping.finish())
        })
    }
}
