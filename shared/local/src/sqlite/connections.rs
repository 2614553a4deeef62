//! Connections and their cursors in the `connections` table: [`ConnectionReader`],
//! [`ConnectionWriter`], [`StateWriter`] and [`CursorStore`] of [`SqliteStore`], with the
//! semantics every store follows (the store contract tests hold each adapter to them). Leases
//! live on the same rows (`leases.rs`), run records too, with their history (`runs.rs`).

use async_trait::async_trait;
use casesync_core::domain::{
    ApiVersion, BackfillPlan, BackfillWindow, CaseFailure, CaseId, ChannelName, Connection,
    ConnectionId, ConnectionState, Cursor, InstanceUrl, LoginUrl, OrgId, QueueScope, SyncReport,
};
use casesync_core::ports::*;

use rusqlite::{Connection as Db, ErrorCode, OptionalExtension, Row, TransactionBehavior, params};

use super::codec::{CorruptRow, RowDecoder, json, timestamp};
use super::{SqliteStore, sql_error};

const CONNECTION_COLUMNS: &str = "id, channel, login_url, instance_url, api_version, scope, \
     backfill, state, state_reason, cursor_modstamp, cursor_case_id, created_at, \
     last_lookback_at, last_run, failures, client_id, org_id, backfill_plan";

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
    org_id: Option<String>,
    backfill_plan: Option<String>,
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
            org_id: r.get(16)?,
            backfill_plan: r.get(17)?,
        })
    }

    fn decode(self) -> Result<Connection, CorruptRow> {
        let d = RowDecoder {
            table: "connections",
            key: &self.id,
        };
        let login_url = d.parse("login_url", &self.login_url, LoginUrl::parse)?;
        Ok(Connection {
            id: d.parse("id", &self.id, ConnectionId::parse)?,
            channel: d.parse("channel", &self.channel, ChannelName::parse)?,
            client_id: self.client_id.clone(),
            instance_url: d.parse("instance_url", &self.instance_url, |raw| {
                InstanceUrl::issued_by(raw, &login_url)
            })?,
            login_url,
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
            // Schema 2 indexed every stored point when the database was opened.
            points_indexed: true,
            org_id: self
                .org_id
                .as_deref()
                .map(|raw| d.parse("org_id", raw, OrgId::parse))
                .transpose()?,
            backfill_plan: self
                .backfill_plan
                .as_deref()
                .map(|raw| d.json::<BackfillPlan>("backfill_plan", raw))
                .transpose()?,
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

pub(super) fn not_found(id: &ConnectionId) -> StoreError {
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
        let plan = c
            .backfill_plan
            .as_ref()
            .map(|p| json("backfill_plan", p))
            .transpose()?;
        self.write(move |db, _| {
            let result = db.execute(
                &format!(
                    "INSERT INTO connections ({CONNECTION_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"
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
                    c.org_id.as_ref().map(OrgId::as_str),
                    plan,
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
                 cursor_case_id = ?5, last_lookback_at = NULL, backfill_plan = NULL WHERE id = ?1",
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

    async fn complete_setup(
        &self,
        id: &ConnectionId,
        channel: &ChannelName,
        scope: &QueueScope,
        backfill: BackfillWindow,
        cursor: &Cursor,
    ) -> StoreResult<()> {
        let id = id.clone();
        let channel = channel.as_str().to_owned();
        let scope = scope.to_string();
        let cursor = cursor.clone();
        self.write(move |db, _| {
            let err = || sql_error(format!("completing the setup of connection {id}"));
            let tx = db
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err())?;
            let n = tx
                .execute(
                    "UPDATE connections SET channel = ?2, scope = ?3, backfill = ?4, \
                     cursor_modstamp = ?5, cursor_case_id = ?6, last_lookback_at = NULL, \
                     backfill_plan = NULL, state = ?7, state_reason = NULL \
                     WHERE id = ?1 AND state = ?8",
                    params![
                        id.as_str(),
                        channel,
                        scope,
                        backfill.as_str(),
                        timestamp(cursor.system_modstamp),
                        cursor.case_id.as_ref().map(CaseId::as_str),
                        ConnectionState::Active.as_str(),
                        ConnectionState::Pending.as_str(),
                    ],
                )
                .map_err(err())?;
            if n == 0 {
                let exists = tx
                    .query_row(
                        "SELECT 1 FROM connections WHERE id = ?1",
                        [id.as_str()],
                        |_| Ok(()),
                    )
                    .optional()
                    .map_err(err())?
                    .is_some();
                return Err(if exists {
                    StoreError::Conflict(format!("connection {id} is not pending"))
                } else {
                    not_found(&id)
                });
            }
            tx.commit().map_err(err())
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
impl StateWriter for SqliteStore {
    /// SQLite puts every point in the change order when the database is opened (schema 2):
    /// nothing to record.
    async fn mark_points_indexed(&self, id: &ConnectionId) -> StoreResult<()> {
        match self.get_connection(id).await? {
            Some(_) => Ok(()),
            None => Err(not_found(id)),
        }
    }

    async fn set_org_id(&self, id: &ConnectionId, org: &OrgId) -> StoreResult<()> {
        let id = id.clone();
        let org = org.clone();
        self.write(move |db, _| {
            update_connection(
                db,
                &id,
                "recording the org id",
                "UPDATE connections SET org_id = ?2 WHERE id = ?1",
                params![id.as_str(), org.as_str()],
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

    async fn commit_plan(
        &self,
        id: &ConnectionId,
        expected: &Cursor,
        next: &Cursor,
        expected_version: u64,
        plan: Option<&BackfillPlan>,
    ) -> StoreResult<()> {
        let id = id.clone();
        let expected = expected.clone();
        let next = next.clone();
        let plan_json = plan.map(|p| json("backfill_plan", p)).transpose()?;
        self.write(move |db, _| {
            let err = || sql_error(format!("committing the backfill plan of connection {id}"));
            let tx = db
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err())?;
            let stored: Option<(String, Option<String>, Option<String>)> = tx
                .prepare_cached(
                    "SELECT cursor_modstamp, cursor_case_id, backfill_plan FROM connections \
                     WHERE id = ?1",
                )
                .and_then(|mut s| {
                    s.query_row([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                        .optional()
                })
                .map_err(err())?;
            let (modstamp, case_id, stored_plan) = stored.ok_or_else(|| not_found(&id))?;
            let d = RowDecoder {
                table: "connections",
                key: id.as_str(),
            };
            let stored = decode_cursor(&d, &modstamp, case_id.as_deref())?;
            let version = stored_plan
                .as_deref()
                .map(|raw| d.json::<BackfillPlan>("backfill_plan", raw))
                .transpose()?
                .map_or(0, |p| p.version);
            if stored != expected || next < expected || version != expected_version {
                return Err(StoreError::Conflict(format!(
                    "cursor of {id} is {stored} (plan version {version}), expected {expected} \
                     (version {expected_version})"
                )));
            }
            tx.prepare_cached(
                "UPDATE connections SET cursor_modstamp = ?2, cursor_case_id = ?3, \
                 backfill_plan = ?4 WHERE id = ?1",
            )
            .and_then(|mut s| {
                s.execute(params![
                    id.as_str(),
                    timestamp(next.system_modstamp),
                    next.case_id.as_ref().map(CaseId::as_str),
                    plan_json,
                ])
            })
            .map_err(err())?;
            tx.commit().map_err(err())
        })
        .await
    }
}
