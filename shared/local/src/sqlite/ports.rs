//! The port implementations of [`SqliteStore`], with the same semantics as
//! `casesync_core::memory::MemoryStore`.

use std::sync::PoisonError;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use casesync_core::data_point::{DataPoint, Supersedes};
use casesync_core::domain::{
    ApiVersion, BackfillWindow, CaseFailure, CaseId, ChannelName, Connection, ConnectionId,
    ConnectionState, Cursor, InstanceUrl, LoginUrl, QueueScope,
};
use casesync_core::ports::*;
use casesync_core::sync::SyncReport;
use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{Connection as Db, ErrorCode, OptionalExtension, Row, TransactionBehavior, params};

use super::codec::{CorruptRow, RowDecoder, json_error_position, parse_timestamp, timestamp};
use super::{Lease, RunHistoryEntry, SqliteStore, run_blocking, sql_error};

const CONNECTION_COLUMNS: &str = "id, channel, login_url, instance_url, api_version, scope, \
     backfill, state, state_reason, cursor_modstamp, cursor_case_id, created_at, \
     last_lookback_at, last_run, failures, client_id";

/// A `connections` row as stored, before its columns are parsed.
struct ConnectionRow {
    id: String,
    channel: String,
    login_url: String,
    instance_url: String,
    api_version: String,
    scope: String,
    backfill: String,
    state: String,
    state_reason: Option<String>,
    cursor_modstamp: String,
    cursor_case_id: Option<String>,
    created_at: String,
    last_lookback_at: Option<String>,
    last_run: Option<String>,
    failures: String,
    client_id: Option<String>,
}

impl ConnectionRow {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: r.get(0)?,
            channel: r.get(1)?,
            login_url: r.get(2)?,
            instance_url: r.get(3)?,
            api_version: r.get(4)?,
            scope: r.get(5)?,
            backfill: r.get(6)?,
            state: r.get(7)?,
            state_reason: r.get(8)?,
            cursor_modstamp: r.get(9)?,
            cursor_case_id: r.get(10)?,
            created_at: r.get(11)?,
            last_lookback_at: r.get(12)?,
            last_run: r.get(13)?,
            failures: r.get(14)?,
            client_id: r.get(15)?,
        })
    }

    fn decode(self) -> Result<Connection, CorruptRow> {
        let d = RowDecoder {
            table: "connections",
            key: &self.id,
        };
        Ok(Connection {
            id: d.parse("id", &self.id, ConnectionId::parse)?,
            channel: d.parse("channel", &self.channel, ChannelName::parse)?,
            client_id: self.client_id.clone(),
            login_url: d.parse("login_url", &self.login_url, LoginUrl::parse)?,
            instance_url: d.parse("instance_url", &self.instance_url, InstanceUrl::parse)?,
            api_version: d.parse("api_version", &self.api_version, ApiVersion::parse)?,
            scope: d.parse("scope", &self.scope, QueueScope::parse)?,
            backfill: d.parse("backfill", &self.backfill, BackfillWindow::parse)?,
            state: ConnectionState::parse(&self.state)
                .ok_or_else(|| d.corrupt("state", format!("unknown state {:?}", self.state)))?,
            cursor: decode_cursor(&d, &self.cursor_modstamp, self.cursor_case_id.as_deref())?,
            created_at: d.timestamp("created_at", &self.created_at)?,
            state_reason: self.state_reason.clone(),
            last_lookback_at: d
                .opt_timestamp("last_lookback_at", self.last_lookback_at.as_deref())?,
            last_run: self
                .last_run
                .as_deref()
                .map(|raw| d.json::<SyncReport>("last_run", raw))
                .transpose()?,
            failures: d.json::<Vec<CaseFailure>>("failures", &self.failures)?,
        })
    }
}

fn decode_cursor(
    d: &RowDecoder<'_>,
    modstamp: &str,
    case_id: Option<&str>,
) -> Result<Cursor, CorruptRow> {
    Ok(Cursor {
        system_modstamp: d.timestamp("cursor_modstamp", modstamp)?,
        case_id: case_id
            .map(|c| d.parse("cursor_case_id", c, CaseId::parse))
            .transpose()?,
    })
}

fn json<T: serde::Serialize>(what: &'static str, value: &T) -> StoreResult<String> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Unexpected(anyhow::anyhow!("cannot serialise {what}: {e}")))
}

fn not_found(id: &ConnectionId) -> StoreError {
    StoreError::ConnectionNotFound(id.clone())
}

/// Runs one `UPDATE ... WHERE id = ?` on a connection; `ConnectionNotFound` if no row matched.
fn update_connection(
    db: &mut Db,
    id: &ConnectionId,
    what: &str,
    sql: &str,
    params: &[&dyn rusqlite::ToSql],
) -> StoreResult<()> {
    let err = || sql_error(format!("{what} of connection {id}"));
    let tx = db
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err())?;
    let changed = tx.execute(sql, params).map_err(err())?;
    if changed == 0 {
        return Err(not_found(id));
    }
    tx.commit().map_err(err())
}

#[async_trait]
impl ConnectionReader for SqliteStore {
    async fn get_connection(&self, id: &ConnectionId) -> StoreResult<Option<Connection>> {
        let id = id.clone();
        self.read(move |db| {
            let row = db
                .prepare_cached(&format!(
                    "SELECT {CONNECTION_COLUMNS} FROM connections WHERE id = ?1"
                ))
                .and_then(|mut s| {
                    s.query_row([id.as_str()], ConnectionRow::from_row)
                        .optional()
                })
                .map_err(sql_error(format!("reading connection {id}")))?;
            Ok(row.map(ConnectionRow::decode).transpose()?)
        })
        .await
    }

    async fn list_connections(&self) -> StoreResult<Vec<Connection>> {
        self.read(|db| {
            let rows = db
                .prepare_cached(&format!(
                    "SELECT {CONNECTION_COLUMNS} FROM connections ORDER BY id"
                ))
                .and_then(|mut s| {
                    s.query_map([], ConnectionRow::from_row)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(sql_error("listing connections"))?;
            Ok(rows
                .into_iter()
                .map(ConnectionRow::decode)
                .collect::<Result<_, _>>()?)
        })
        .await
    }
}

#[async_trait]
impl ConnectionWriter for SqliteStore {
    async fn insert_connection(&self, connection: &Connection) -> StoreResult<()> {
        let c = connection.clone();
        let last_run = c
            .last_run
            .as_ref()
            .map(|r| json("last_run", r))
            .transpose()?;
        let failures = json("failures", &c.failures)?;
        self.write(move |db, _| {
            let result = db.execute(
                &format!(
                    "INSERT INTO connections ({CONNECTION_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
                ),
                params![
                    c.id.as_str(),
                    c.channel.as_str(),
                    c.login_url.as_str(),
                    c.instance_url.as_str(),
                    c.api_version.to_string(),
                    c.scope.to_string(),
                    c.backfill.as_str(),
                    c.state.as_str(),
                    c.state_reason,
                    timestamp(c.cursor.system_modstamp),
                    c.cursor.case_id.as_ref().map(CaseId::as_str),
                    timestamp(c.created_at),
                    c.last_lookback_at.map(timestamp),
                    last_run,
                    failures,
                    c.client_id,
                ],
            );
            match result {
                Ok(_) => Ok(()),
                Err(e) if e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) => {
                    Err(StoreError::Conflict(format!("connection {} exists", c.id)))
                }
                Err(e) => Err(sql_error(format!("inserting connection {}", c.id))(e)),
            }
        })
        .await
    }

    async fn update_settings(
        &self,
        id: &ConnectionId,
        scope: &QueueScope,
        backfill: BackfillWindow,
        cursor: &Cursor,
    ) -> StoreResult<()> {
        let id = id.clone();
        let scope = scope.to_string();
        let cursor = cursor.clone();
        self.write(move |db, _| {
            update_connection(
                db,
                &id,
                "updating the settings",
                "UPDATE connections SET scope = ?2, backfill = ?3, cursor_modstamp = ?4, \
                 cursor_case_id = ?5, last_lookback_at = NULL WHERE id = ?1",
                params![
                    id.as_str(),
                    scope,
                    backfill.as_str(),
                    timestamp(cursor.system_modstamp),
                    cursor.case_id.as_ref().map(CaseId::as_str),
                ],
            )
        })
        .await
    }

    async fn set_state(
        &self,
        id: &ConnectionId,
        state: ConnectionState,
        reason: Option<&str>,
    ) -> StoreResult<()> {
        let id = id.clone();
        let reason = reason.map(str::to_owned);
        self.write(move |db, _| {
            update_connection(
                db,
                &id,
                "setting the state",
                "UPDATE connections SET state = ?2, state_reason = ?3 WHERE id = ?1",
                params![id.as_str(), state.as_str(), reason],
            )
        })
        .await
    }

    async fn reauthorized(&self, id: &ConnectionId, instance_url: &InstanceUrl) -> StoreResult<()> {
        let id = id.clone();
        let instance_url = instance_url.as_str().to_owned();
        self.write(move |db, _| {
            update_connection(
                db,
                &id,
                "recording the re-authorization",
                "UPDATE connections SET state = ?2, state_reason = NULL, instance_url = ?3 \
                 WHERE id = ?1",
                params![id.as_str(), ConnectionState::Active.as_str(), instance_url],
            )
        })
        .await
    }

    /// Removes the connection, its lease and its run history. Its data points stay until
    /// `delete_data_points`. Deleting a missing connection is not an error.
    async fn delete_connection(&self, id: &ConnectionId) -> StoreResult<()> {
        let id = id.clone();
        self.write(move |db, _| {
            let err = || sql_error(format!("deleting connection {id}"));
            let tx = db
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err())?;
            tx.execute("DELETE FROM connections WHERE id = ?1", [id.as_str()])
                .map_err(err())?;
            tx.execute(
                "DELETE FROM sync_runs WHERE connection_id = ?1",
                [id.as_str()],
            )
            .map_err(err())?;
            tx.commit().map_err(err())
        })
        .await
    }
}

#[async_trait]
impl CursorStore for SqliteStore {
    async fn commit_cursor(
        &self,
        id: &ConnectionId,
        expected: &Cursor,
        next: &Cursor,
    ) -> StoreResult<()> {
        let id = id.clone();
        let expected = expected.clone();
        let next = next.clone();
        self.write(move |db, _| {
            let err = || sql_error(format!("committing the cursor of connection {id}"));
            // IMMEDIATE: the write lock is held from the read to the write, so no other process
            // can move the cursor in between.
            let tx = db
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err())?;
            let stored: Option<(String, Option<String>)> = tx
                .prepare_cached(
                    "SELECT cursor_modstamp, cursor_case_id FROM connections WHERE id = ?1",
                )
                .and_then(|mut s| {
                    s.query_row([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()
                })
                .map_err(err())?;
            let (modstamp, case_id) = stored.ok_or_else(|| not_found(&id))?;
            let d = RowDecoder {
                table: "connections",
                key: id.as_str(),
            };
            let stored = decode_cursor(&d, &modstamp, case_id.as_deref())?;
            if stored != expected || next < expected {
                return Err(StoreError::Conflict(format!(
                    "cursor of {id} is {stored}, expected {expected}"
                )));
            }
            tx.prepare_cached(
                "UPDATE connections SET cursor_modstamp = ?2, cursor_case_id = ?3 WHERE id = ?1",
            )
            .and_then(|mut s| {
                s.execute(params![
                    id.as_str(),
                    timestamp(next.system_modstamp),
                    next.case_id.as_ref().map(CaseId::as_str),
                ])
            })
            .map_err(err())?;
            tx.commit().map_err(err())
        })
        .await
    }
}

#[async_trait]
impl RunRecorder for SqliteStore {
    /// Sets `last_run` and `failures` (and `last_lookback_at` when the run swept the lookback)
    /// and appends the run to the `sync_runs` history, in one transaction.
    async fn record_run(&self, id: &ConnectionId, run: &RunRecord) -> StoreResult<()> {
        let id = id.clone();
        let report = json("the run report", &run.report)?;
        let failures = json("the failures", &run.failures)?;
        let failure_count = run.failures.len() as i64;
        let swept = run.lookback_swept_at.map(timestamp);
        let outcome = run.report.outcome.as_str();
        let started = timestamp(run.report.started_at);
        let finished = timestamp(run.report.finished_at);
        self.write(move |db, _| {
            let err = || sql_error(format!("recording a run of connection {id}"));
            let tx = db
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err())?;
            let changed = tx
                .execute(
                    "UPDATE connections SET last_run = ?2, failures = ?3, \
                     last_lookback_at = COALESCE(?4, last_lookback_at) WHERE id = ?1",
                    params![id.as_str(), report, failures, swept],
                )
                .map_err(err())?;
            if changed == 0 {
                return Err(not_found(&id));
            }
            tx.execute(
                "INSERT INTO sync_runs (connection_id, outcome, started_at, finished_at, \
                 failures, report) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    id.as_str(),
                    outcome,
                    started,
                    finished,
                    failure_count,
                    report
                ],
            )
            .map_err(err())?;
            tx.commit().map_err(err())
        })
        .await
    }

    async fn save_failures(&self, id: &ConnectionId, failures: &[CaseFailure]) -> StoreResult<()> {
        let id = id.clone();
        let failures = json("the failures", &failures)?;
        self.write(move |db, _| {
            let changed = db
                .execute(
                    "UPDATE connections SET failures = ?2 WHERE id = ?1",
                    params![id.as_str(), failures],
                )
                .map_err(sql_error(format!("saving the failures of connection {id}")))?;
            if changed == 0 {
                return Err(not_found(&id));
            }
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl LeaseStore for SqliteStore {
    /// Takes the lease when nobody holds it, `holder` already does, or the holder's lease has
    /// expired (`until <= now`). Like `MemoryStore`, a connection that does not exist has no
    /// lease to contend for: `Ok(true)`.
    async fn try_acquire_lease(
        &self,
        id: &ConnectionId,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let id = id.clone();
        let holder = holder.to_owned();
        self.write(move |db, _| {
            let err = || sql_error(format!("taking the lease of connection {id}"));
            let tx = db
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err())?;
            // One conditional update: fixed-width timestamps compare as text.
            let taken = tx
                .execute(
                    "UPDATE connections SET lease_holder = ?2, lease_until = ?3 WHERE id = ?1 \
                     AND (lease_holder IS NULL OR lease_until IS NULL OR lease_holder = ?2 \
                          OR lease_until <= ?4)",
                    params![id.as_str(), holder, timestamp(until), timestamp(now)],
                )
                .map_err(err())?;
            let acquired = if taken == 1 {
                true
            } else {
                let exists = tx
                    .query_row(
                        "SELECT 1 FROM connections WHERE id = ?1",
                        [id.as_str()],
                        |_| Ok(()),
                    )
                    .optional()
                    .map_err(err())?
                    .is_some();
                !exists
            };
            tx.commit().map_err(err())?;
            Ok(acquired)
        })
        .await
    }

    async fn release_lease(&self, id: &ConnectionId, holder: &str) -> StoreResult<()> {
        let id = id.clone();
        let holder = holder.to_owned();
        self.write(move |db, _| {
            let err = || sql_error(format!("releasing the lease of connection {id}"));
            let tx = db
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err())?;
            tx.execute(
                "UPDATE connections SET lease_holder = NULL, lease_until = NULL \
                 WHERE id = ?1 AND lease_holder = ?2",
                params![id.as_str(), holder],
            )
            .map_err(err())?;
            tx.commit().map_err(err())
        })
        .await
    }
}

/// Points serialised between two yields to the runtime.
const ENCODE_CHUNK: usize = 8;

/// A data point ready for its row: serialised once; hashed from the same bytes.
struct EncodedPoint {
    connection_id: String,
    case_id: String,
    modstamp: DateTime<Utc>,
    /// Filled in by [`EncodedPoint::hash`] on the blocking pool.
    hash: String,
    body: String,
}

impl EncodedPoint {
    /// Serialises `p`: the only per-point work done on the caller's thread (it replaces a deep
    /// clone of the point, which `spawn_blocking` would otherwise need, and costs about as much).
    fn new(p: &DataPoint) -> StoreResult<Self> {
        Ok(Self {
            connection_id: p.connection_id.as_str().to_owned(),
            case_id: p.case_id.as_str().to_owned(),
            modstamp: p.system_modstamp,
            hash: String::new(),
            body: json("a data point", p)?,
        })
    }

    /// Exactly `DataPoint::content_hash` (the core's digest of the serde_json bytes), computed
    /// from the bytes we store instead of serialising a second time; a test holds them equal.
    fn hash(&mut self) {
        self.hash = casesync_core::data_point::digest(self.body.as_bytes());
    }
}

/// The core's decision, with the hash already computed.
pub(super) use casesync_core::data_point::decide;

fn upsert_encoded(db: &mut Db, points: &[EncodedPoint]) -> StoreResult<UpsertCounts> {
    let err = || sql_error(format!("upserting {} data points", points.len()));
    let written_at = timestamp(Utc::now());
    let mut counts = UpsertCounts::default();
    let tx = db
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err())?;
    {
        let mut select = tx
            .prepare_cached(
                "SELECT system_modstamp, content_hash FROM data_points \
                 WHERE connection_id = ?1 AND case_id = ?2",
            )
            .map_err(err())?;
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO data_points (connection_id, case_id, system_modstamp, content_hash, \
                 revision, written_at, body) VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6)",
            )
            .map_err(err())?;
        let mut update = tx
            .prepare_cached(
                "UPDATE data_points SET system_modstamp = ?3, content_hash = ?4, \
                 revision = revision + 1, written_at = ?5, body = ?6 \
                 WHERE connection_id = ?1 AND case_id = ?2",
            )
            .map_err(err())?;
        for p in points {
            // Read inside the transaction, so a later point of the same batch sees an earlier one.
            let stored: Option<(String, String)> = select
                .query_row([&p.connection_id, &p.case_id], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
                .map_err(err())?;
            let row = params![
                p.connection_id,
                p.case_id,
                timestamp(p.modstamp),
                p.hash,
                written_at,
                p.body
            ];
            match stored {
                None => {
                    insert.execute(row).map_err(err())?;
                    counts.created += 1;
                }
                Some((stored_modstamp, stored_hash)) => {
                    let stored_modstamp =
                        parse_timestamp(&stored_modstamp).ok_or_else(|| CorruptRow {
                            table: "data_points",
                            key: format!("{}/{}", p.connection_id, p.case_id),
                            column: "system_modstamp",
                            reason: "not an RFC 3339 timestamp".into(),
                        })?;
                    match decide(p.modstamp, &p.hash, stored_modstamp, &stored_hash) {
                        Supersedes::Update => {
                            update.execute(row).map_err(err())?;
                            counts.updated += 1;
                        }
                        Supersedes::Unchanged => counts.unchanged += 1,
                        Supersedes::Stale => counts.stale += 1,
                    }
                }
            }
        }
    }
    tx.commit().map_err(err())?;
    Ok(counts)
}

#[async_trait]
impl DataPointWriter for SqliteStore {
    /// One `BEGIN IMMEDIATE` transaction per call: the whole batch is durable, or none of it.
    async fn upsert_data_points(&self, points: &[DataPoint]) -> StoreResult<UpsertCounts> {
        if points.is_empty() {
            return Ok(UpsertCounts::default());
        }
        // Serialising is CPU work on the caller's thread (about 15 µs per 20 KB point, cheaper
        // than the deep clone `spawn_blocking` would need instead): yield between chunks so that
        // other tasks on this worker keep running.
        let mut encoded = Vec::with_capacity(points.len());
        for chunk in points.chunks(ENCODE_CHUNK) {
            for p in chunk {
                encoded.push(EncodedPoint::new(p)?);
            }
            if encoded.len() < points.len() {
                tokio::task::yield_now().await;
            }
        }
        let inner = self.inner.clone();
        run_blocking(move || {
            // Hash before taking the lock: other writers wait only for SQLite.
            encoded.iter_mut().for_each(EncodedPoint::hash);
            let counts = {
                let mut db = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
                upsert_encoded(&mut db, &encoded)?
            };
            inner
                .point_writes
                .fetch_add(counts.created + counts.updated, Ordering::Relaxed);
            Ok(counts)
        })
        .await
    }
}

fn decode_point(connection: &str, case: &str, body: &str) -> Result<DataPoint, CorruptRow> {
    serde_json::from_str(body).map_err(|e| CorruptRow {
        table: "data_points",
        key: format!("{connection}/{case}"),
        column: "body",
        reason: json_error_position(&e),
    })
}

#[async_trait]
impl DataPointReader for SqliteStore {
    async fn get_data_point(
        &self,
        connection: &ConnectionId,
        case: &CaseId,
    ) -> StoreResult<Option<DataPoint>> {
        let connection = connection.clone();
        let case = case.clone();
        self.read(move |db| {
            let body: Option<String> = db
                .prepare_cached(
                    "SELECT body FROM data_points WHERE connection_id = ?1 AND case_id = ?2",
                )
                .and_then(|mut s| {
                    s.query_row([connection.as_str(), case.as_str()], |r| r.get(0))
                        .optional()
                })
                .map_err(sql_error(format!("reading data point {connection}/{case}")))?;
            Ok(body
                .map(|b| decode_point(connection.as_str(), case.as_str(), &b))
                .transpose()?)
        })
        .await
    }

    async fn count_data_points(&self, connection: &ConnectionId) -> StoreResult<u64> {
        let connection = connection.clone();
        self.read(move |db| {
            let n: i64 = db
                .prepare_cached("SELECT count(*) FROM data_points WHERE connection_id = ?1")
                .and_then(|mut s| s.query_row([connection.as_str()], |r| r.get(0)))
                .map_err(sql_error(format!(
                    "counting the data points of connection {connection}"
                )))?;
            Ok(n.max(0) as u64)
        })
        .await
    }

    /// Ordered by Case id (SQLite's binary collation orders as `CaseId`'s `Ord` does).
    async fn list_data_points(
        &self,
        connection: &ConnectionId,
        after: Option<&CaseId>,
        limit: usize,
    ) -> StoreResult<Vec<DataPoint>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let connection = connection.clone();
        // No Case id sorts before the empty string.
        let after = after.map_or_else(String::new, |c| c.as_str().to_owned());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |db| {
            let rows: Vec<(String, String)> = db
                .prepare_cached(
                    "SELECT case_id, body FROM data_points WHERE connection_id = ?1 \
                     AND case_id > ?2 ORDER BY case_id LIMIT ?3",
                )
                .and_then(|mut s| {
                    s.query_map(params![connection.as_str(), after, limit], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?
                    .collect()
                })
                .map_err(sql_error(format!(
                    "listing the data points of connection {connection}"
                )))?;
            Ok(rows
                .iter()
                .map(|(case, body)| decode_point(connection.as_str(), case, body))
                .collect::<Result<_, _>>()?)
        })
        .await
    }
}

#[async_trait]
impl DataPointDeleter for SqliteStore {
    async fn delete_data_points(&self, connection: &ConnectionId) -> StoreResult<u64> {
        let connection = connection.clone();
        self.write(move |db, _| {
            let err = || {
                sql_error(format!(
                    "deleting the data points of connection {connection}"
                ))
            };
            let tx = db
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err())?;
            let n = tx
                .execute(
                    "DELETE FROM data_points WHERE connection_id = ?1",
                    [connection.as_str()],
                )
                .map_err(err())?;
            tx.commit().map_err(err())?;
            Ok(n as u64)
        })
        .await
    }
}

/// Pending flows this long past their expiry are removed when a new flow is stored.
const AUTH_STATE_RETENTION: TimeDelta = TimeDelta::days(1);

#[async_trait]
impl AuthStateStore for SqliteStore {
    /// Stores the flow (replacing one with the same state) and removes flows that expired more
    /// than a day before this one was created.
    async fn put_auth_state(&self, pending: &PendingAuthorization) -> StoreResult<()> {
        let state = pending.state.clone();
        let expires_at = timestamp(pending.expires_at);
        let prune_before = timestamp(pending.created_at - AUTH_STATE_RETENTION);
        let body = json("a pending authorization", pending)?;
        self.write(move |db, _| {
            let err = || sql_error("storing a pending authorization");
            let tx = db
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err())?;
            tx.execute(
                "DELETE FROM auth_states WHERE expires_at < ?1",
                [prune_before],
            )
            .map_err(err())?;
            tx.execute(
                "INSERT OR REPLACE INTO auth_states (state, expires_at, body) VALUES (?1, ?2, ?3)",
                params![state, expires_at, body],
            )
            .map_err(err())?;
            tx.commit().map_err(err())
        })
        .await
    }

    /// Deletes and returns the flow in one statement: of two concurrent takes, one gets `None`.
    async fn take_auth_state(&self, state: &str) -> StoreResult<Option<PendingAuthorization>> {
        let state = state.to_owned();
        self.write(move |db, _| {
            let err = || sql_error("taking a pending authorization");
            let tx = db
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err())?;
            let body: Option<String> = tx
                .query_row(
                    "DELETE FROM auth_states WHERE state = ?1 RETURNING body",
                    [&state],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err())?;
            let Some(body) = body else {
                return Ok(None);
            };
            // The key is the secret `state` itself: the error names neither it nor the body.
            let pending = serde_json::from_str(&body).map_err(|e| CorruptRow {
                table: "auth_states",
                key: "[REDACTED]".into(),
                column: "body",
                reason: json_error_position(&e),
            })?;
            tx.commit().map_err(err())?;
            Ok(Some(pending))
        })
        .await
    }
}

impl SqliteStore {
    /// The current lease of a connection, if someone took one (it may have expired).
    pub async fn lease(&self, id: &ConnectionId) -> StoreResult<Option<Lease>> {
        let id = id.clone();
        self.read(move |db| {
            let row: Option<(Option<String>, Option<String>)> = db
                .query_row(
                    "SELECT lease_holder, lease_until FROM connections WHERE id = ?1",
                    [id.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(sql_error(format!("reading the lease of connection {id}")))?;
            let d = RowDecoder {
                table: "connections",
                key: id.as_str(),
            };
            match row {
                Some((Some(holder), Some(until))) => Ok(Some(Lease {
                    holder,
                    until: d.timestamp("lease_until", &until)?,
                })),
                _ => Ok(None),
            }
        })
        .await
    }

    /// Like `list_data_points`, but each point as the JSON text stored for it (exactly what
    /// `serde_json` wrote for the `DataPoint`, i.e. the export format), without decoding it:
    /// for an export that writes the points out unchanged. Ordered by Case id.
    pub async fn list_data_point_json(
        &self,
        connection: &ConnectionId,
        after: Option<&CaseId>,
        limit: usize,
    ) -> StoreResult<Vec<(CaseId, String)>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let connection = connection.clone();
        // No Case id sorts before the empty string.
        let after = after.map_or_else(String::new, |c| c.as_str().to_owned());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |db| {
            let rows: Vec<(String, String)> = db
                .prepare_cached(
                    "SELECT case_id, body FROM data_points WHERE connection_id = ?1 \
                     AND case_id > ?2 ORDER BY case_id LIMIT ?3",
                )
                .and_then(|mut s| {
                    s.query_map(params![connection.as_str(), after, limit], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?
                    .collect()
                })
                .map_err(sql_error(format!(
                    "exporting the data points of connection {connection}"
                )))?;
            rows.into_iter()
                .map(|(case, body)| {
                    let key = format!("{connection}/{case}");
                    let d = RowDecoder {
                        table: "data_points",
                        key: &key,
                    };
                    Ok((d.parse("case_id", &case, CaseId::parse)?, body))
                })
                .collect()
        })
        .await
    }

    /// The last `limit` recorded runs of a connection, newest first.
    pub async fn list_runs(
        &self,
        id: &ConnectionId,
        limit: usize,
    ) -> StoreResult<Vec<RunHistoryEntry>> {
        let id = id.clone();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |db| {
            let rows: Vec<(i64, String, i64)> = db
                .prepare_cached(
                    "SELECT seq, report, failures FROM sync_runs WHERE connection_id = ?1 \
                     ORDER BY seq DESC LIMIT ?2",
                )
                .and_then(|mut s| {
                    s.query_map(params![id.as_str(), limit], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })?
                    .collect()
                })
                .map_err(sql_error(format!("listing the runs of connection {id}")))?;
            rows.into_iter()
                .map(|(seq, report, failures)| {
                    let key = format!("{id}#{seq}");
                    let d = RowDecoder {
                        table: "sync_runs",
                        key: &key,
                    };
                    Ok(RunHistoryEntry {
                        seq,
                        connection_id: id.clone(),
                        report: d.json("report", &report)?,
                        failures: u64::try_from(failures)
                            .map_err(|_| d.corrupt("failures", "negative"))?,
                    })
                })
                .collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use casesync_core::data_point::{ContentSource, Participant};
    use chrono::TimeZone;

    fn sample() -> DataPoint {
        let connection_id = ConnectionId::parse("conn_0123456789abcdef0123456789abcdef").unwrap();
        let case_id = CaseId::parse("500xx000003DHb0AAG").unwrap();
        DataPoint {
            id: DataPoint::id_for(&connection_id, &case_id),
            connection_id,
            channel: ChannelName::parse("support").unwrap(),
            case_id,
            case_number: "00001026".into(),
            subject: Some("Drucker brennt — «ünïcödé» \"quoted\" \\ back\nslash".into()),
            status: "Closed".into(),
            priority: None,
            origin: Some("Email".into()),
            case_type: None,
            created_date: Utc.with_ymd_and_hms(2024, 3, 1, 9, 15, 2).unwrap(),
            system_modstamp: Utc.timestamp_millis_opt(1_709_571_600_123).unwrap(),
            salesforce_link: "https://acme.my.salesforce.com/lightning/r/Case/x/view".into(),
            participant: Participant::default(),
            content_source: ContentSource::Description,
            conversation: vec![],
        }
    }

    #[test]
    fn the_stored_hash_is_the_core_content_hash() {
        let p = sample();
        let mut e = EncodedPoint::new(&p).unwrap();
        e.hash();
        assert_eq!(e.hash, p.content_hash());
        assert_eq!(serde_json::from_str::<DataPoint>(&e.body).unwrap(), p);
    }

    #[test]
    fn decide_is_data_point_supersedes() {
        let p = sample();
        let hash = p.content_hash();
        let t = p.system_modstamp;
        let second = TimeDelta::seconds(1);
        for stored_modstamp in [t - second, t, t + second] {
            for stored_hash in [hash.as_str(), "something else"] {
                assert_eq!(
                    decide(t, &hash, stored_modstamp, stored_hash),
                    p.supersedes(stored_modstamp, stored_hash),
                    "{stored_modstamp} {stored_hash}"
                );
            }
        }
    }
}
