//! The database schema and its migrations.
//!
//! A casesync database is recognised by its `PRAGMA application_id` ([`SQLITE_APPLICATION_ID`])
//! and versioned by `PRAGMA user_version` ([`SCHEMA_VERSION`]). Opening runs every migration from
//! the stored version up to this build's, in one `BEGIN IMMEDIATE` transaction, so two processes
//! opening a fresh data dir at once create the schema exactly once.

use std::path::Path;

use rusqlite::{Connection, ErrorCode, TransactionBehavior};

use super::OpenError;

/// `PRAGMA application_id` of a casesync database: "CSYN".
pub const SQLITE_APPLICATION_ID: i32 = 0x4353_594E;

/// `PRAGMA user_version` this build writes and understands.
pub const SCHEMA_VERSION: i64 = 4;

/// `MIGRATIONS[i]` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [V1, V2, V3, V4];

/// Version 1. Timestamps are fixed-width RFC 3339 UTC text (`2024-03-04T17:00:00.000000000Z`),
/// so they order and compare as text. JSON columns hold the core's serde forms.
const V1: &str = r#"
CREATE TABLE connections (
    id               TEXT PRIMARY KEY NOT NULL,
    channel          TEXT NOT NULL,
    client_id        TEXT,                      -- the Connected App's consumer key; NULL: the default app
    login_url        TEXT NOT NULL,
    instance_url     TEXT NOT NULL,
    api_version      TEXT NOT NULL,             -- "59.0"
    scope            TEXT NOT NULL,             -- "all" or sorted queue ids, comma-separated
    backfill         TEXT NOT NULL,             -- "7d" | "30d" | "90d" | "6m"
    state            TEXT NOT NULL,             -- "active" | "disconnected" | "needs_reauth"
    state_reason     TEXT,
    cursor_modstamp  TEXT NOT NULL,
    cursor_case_id   TEXT,                      -- NULL: before every Case at cursor_modstamp
    created_at       TEXT NOT NULL,
    last_lookback_at TEXT,
    last_run         TEXT,                      -- JSON SyncReport
    failures         TEXT NOT NULL DEFAULT '[]',-- JSON [CaseFailure]
    lease_holder     TEXT,
    lease_until      TEXT
) STRICT;

-- Every recorded run, oldest first; the newest also sits in connections.last_run.
CREATE TABLE sync_runs (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    connection_id    TEXT NOT NULL,
    outcome          TEXT NOT NULL,
    started_at       TEXT NOT NULL,
    finished_at      TEXT NOT NULL,
    failures         INTEGER NOT NULL,          -- how many Cases were still failing
    report           TEXT NOT NULL              -- JSON SyncReport
) STRICT;
CREATE INDEX sync_runs_by_connection ON sync_runs (connection_id, seq);

-- One row per (connection, Case). body comes last so the supersede check, which reads only
-- system_modstamp and content_hash, never touches the body's overflow pages.
CREATE TABLE data_points (
    connection_id    TEXT NOT NULL,
    case_id          TEXT NOT NULL,
    system_modstamp  TEXT NOT NULL,
    content_hash     TEXT NOT NULL,             -- DataPoint::content_hash of body
    revision         INTEGER NOT NULL,          -- 1 when created, +1 on every rewrite
    written_at       TEXT NOT NULL,
    body             TEXT NOT NULL,             -- the DataPoint as JSON (the export format)
    PRIMARY KEY (connection_id, case_id)
) STRICT;

-- OAuth flows awaiting their callback (single use).
CREATE TABLE auth_states (
    state            TEXT PRIMARY KEY NOT NULL,
    expires_at       TEXT NOT NULL,
    body             TEXT NOT NULL              -- JSON PendingAuthorization
) STRICT;
"#;

/// Version 2: a channel's data points in the order they last changed (the read API's order,
/// `export --channel`). `written_at` was already the change time; it is now stamped from
/// `change_clock`, so it only grows, and the order is (`written_at`, `id`). Existing rows get
/// their id, channel and escaped length from their JSON body here, once.
const V2: &str = r#"
ALTER TABLE data_points ADD COLUMN id TEXT NOT NULL DEFAULT '';
ALTER TABLE data_points ADD COLUMN channel TEXT NOT NULL DEFAULT '';
ALTER TABLE data_points ADD COLUMN escaped_len INTEGER NOT NULL DEFAULT 0;
UPDATE data_points SET
    id = json_extract(body, '$.id'),
    channel = json_extract(body, '$.channel'),
    escaped_len = length(CAST(body AS BLOB))
        + (length(body) - length(replace(body, '"', '')))
        + (length(body) - length(replace(body, '', '')));
CREATE INDEX data_points_by_change ON data_points (channel, written_at, id);
CREATE UNIQUE INDEX data_points_by_id ON data_points (id);
CREATE INDEX data_points_by_modstamp ON data_points (channel, system_modstamp);

-- The last change stamp handed out: stamps only grow, even when the clock steps back.
CREATE TABLE change_clock (
    only             INTEGER PRIMARY KEY CHECK (only = 1),
    last             TEXT NOT NULL
) STRICT;
INSERT INTO change_clock (only, last)
    SELECT 1, coalesce(max(written_at), '0000-01-01T00:00:00.000000000Z') FROM data_points;
"#;

/// Version 3: the org each connection's token belongs to (what routes change events; filled
/// in by the next sync for the connections made before), and the plan of a backfill read as
/// parallel slices (JSON `BackfillPlan`, NULL when none).
const V3: &str = r#"
ALTER TABLE connections ADD COLUMN org_id TEXT;
ALTER TABLE connections ADD COLUMN backfill_plan TEXT;
"#;

/// Version 4: a data point's JSON is stored LZ4-compressed in `body_lz4` (`body` left empty):
/// about a fifth of the bytes through SQLite, its WAL and the checkpoint, for less CPU than
/// those bytes cost. Rows written before keep their JSON in `body` (and `body_lz4` NULL) until
/// they are next rewritten; readers take whichever is set.
const V4: &str = r#"
ALTER TABLE data_points ADD COLUMN body_lz4 BLOB;
"#;

fn sqlite_error(path: &Path, source: rusqlite::Error) -> OpenError {
    let code = source.sqlite_error_code();
    match code {
        Some(ErrorCode::NotADatabase) => OpenError::NotADatabase {
            path: path.to_owned(),
        },
        Some(ErrorCode::ReadOnly) => OpenError::ReadOnly {
            path: path.to_owned(),
        },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => OpenError::Busy {
            path: path.to_owned(),
            source,
        },
        _ => OpenError::Sqlite {
            path: path.to_owned(),
            source,
        },
    }
}

pub(super) fn map_open_error(path: &Path) -> impl Fn(rusqlite::Error) -> OpenError + '_ {
    move |e| sqlite_error(path, e)
}

/// Creates the schema in an empty database, migrates an older one, and refuses anything else.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), OpenError> {
    let err = map_open_error(path);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&err)?;
    let app_id: i32 = tx
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(&err)?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(&err)?;
    let objects: i64 = tx
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .map_err(&err)?;

    if app_id == 0 && version == 0 && objects > 0 {
        return Err(OpenError::Foreign {
            path: path.to_owned(),
            application_id: app_id,
        });
    }
    if app_id != 0 && app_id != SQLITE_APPLICATION_ID {
        return Err(OpenError::Foreign {
            path: path.to_owned(),
            application_id: app_id,
        });
    }
    if version > SCHEMA_VERSION {
        return Err(OpenError::NewerSchema {
            path: path.to_owned(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version < 0 {
        return Err(OpenError::Foreign {
            path: path.to_owned(),
            application_id: app_id,
        });
    }
    if version == SCHEMA_VERSION {
        return Ok(()); // dropping tx rolls back the (empty) transaction
    }
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql).map_err(&err)?;
        tracing::info!(path = %path.display(), from, to = from + 1, "migrated the casesync database");
    }
    tx.execute_batch(&format!(
        "PRAGMA application_id = {SQLITE_APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};"
    ))
    .map_err(&err)?;
    tx.commit().map_err(&err)
}
