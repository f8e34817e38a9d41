//! The database layout, as versioned migrations (refinery's history table
//! `agentmesh_migrations`). Every replica runs them at start, one at a time
//! (an advisory lock), so a new version upgrades the database once and an
//! older replica refuses a layout newer than it knows.

use refinery::{Migration, Runner};

/// Version 1: runs, their events, and the replicas' leases.
///
/// A run's `epoch` names the lease of the replica driving it (the fencing
/// token every write checks); `finished` is set with its final event.
/// Events record the epoch that wrote them.
const V1: &str = "
CREATE SEQUENCE agentmesh_epochs;
CREATE TABLE agentmesh_leases (
    epoch    BIGINT PRIMARY KEY,
    instance TEXT NOT NULL,
    expires  TIMESTAMPTZ NOT NULL
);
CREATE TABLE agentmesh_runs (
    row             BIGSERIAL PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    goal            TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    owner           TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    created         TIMESTAMPTZ NOT NULL,
    state           INTEGER NOT NULL DEFAULT 0,
    finished        TIMESTAMPTZ,
    last_seq        BIGINT NOT NULL DEFAULT 0,
    epoch           BIGINT NOT NULL,
    instance        TEXT NOT NULL,
    cancel          TEXT
);
CREATE UNIQUE INDEX agentmesh_runs_key ON agentmesh_runs (idempotency_key)
    WHERE idempotency_key <> '';
CREATE INDEX agentmesh_runs_unfinished ON agentmesh_runs (epoch) WHERE finished IS NULL;
CREATE INDEX agentmesh_runs_owner ON agentmesh_runs (owner, row);
CREATE TABLE agentmesh_events (
    run   BIGINT NOT NULL REFERENCES agentmesh_runs (row) ON DELETE CASCADE,
    seq   BIGINT NOT NULL,
    epoch BIGINT NOT NULL,
    event BYTEA NOT NULL,
    PRIMARY KEY (run, seq)
);
";

/// Version 2: retention by bytes (each run's encoded size) and the runs
/// retention deleted, remembered so that asking for one says why.
const V2: &str = "
ALTER TABLE agentmesh_runs ADD COLUMN bytes BIGINT NOT NULL DEFAULT 0;
CREATE TABLE agentmesh_retired (
    id         TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    limit_name TEXT NOT NULL,
    at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX agentmesh_retired_at ON agentmesh_retired (at);
";

/// The layouts in order: (refinery name, SQL).
const VERSIONS: [(&str, &str); 2] = [("V1__runs_events_leases", V1), ("V2__retention", V2)];

/// The layout version this orchestrator writes.
pub const CURRENT: i32 = VERSIONS.len() as i32;

/// The history table refinery keeps.
pub const HISTORY: &str = "agentmesh_migrations";

/// A key for `pg_advisory_lock` that serialises migrations across
/// replicas ("agentmsh" in ASCII).
pub const MIGRATION_LOCK: i64 = 0x6167_656e_746d_7368;

/// The migrations up to `version` (all of them for [`CURRENT`]).
pub fn runner(version: i32) -> Result<Runner, refinery::Error> {
    let migrations = VERSIONS
        .iter()
        .take(usize::try_from(version).unwrap_or(0))
        .map(|(name, sql)| Migration::unapplied(name, sql))
        .collect::<Result<Vec<_>, _>>()?;
    // Each migration in its own transaction; an applied migration this
    // orchestrator does not know (a newer layout) or one changed since it
    // was applied stops the start.
    let mut runner = Runner::new(&migrations)
        .set_abort_divergent(true)
        .set_abort_missing(true);
    runner.set_migration_table_name(HISTORY);
    Ok(runner)
}
