//! A channel's data points in the order they last changed: [`ChangeFeed`] of [`SqliteStore`],
//! on the `data_points_by_change` index (`channel`, `written_at`, `id`).
//!
//! Every write transaction takes the database's write lock and stamps its points from
//! `change_clock`, which only grows; a reader sees a transaction whole or not at all. So the
//! stamps of committed points only grow in commit order and a write is visible the moment it
//! commits: the visibility lag is zero.

use async_trait::async_trait;
use casesync_core::domain::{CaseId, ChannelName, ConnectionId};
use casesync_core::ports::*;
use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{OptionalExtension, params};

use super::codec::{RowDecoder, body_json, timestamp};
use super::{SqliteStore, sql_error};

/// A row of the change order: id, written_at, connection, Case, escaped length.
type Row = (String, String, String, String, i64);
/// `body` and `body_lz4` (see `body_json`).
type Body = (String, Option<Vec<u8>>);

fn entry(row: &Row) -> StoreResult<ChangeEntry> {
    let (id, written_at, connection, case, escaped_len) = row;
    let key = format!("{connection}/{case}");
    let d = RowDecoder {
        table: "data_points",
        key: &key,
    };
    Ok(ChangeEntry {
        position: ChangePosition {
            changed_at: d.timestamp("written_at", written_at)?,
            id: id.clone(),
        },
        connection_id: d.parse("connection_id", connection, ConnectionId::parse)?,
        case_id: d.parse("case_id", case, CaseId::parse)?,
        escaped_len: u64::try_from(*escaped_len)
            .map_err(|_| d.corrupt("escaped_len", "negative"))?,
    })
}

#[async_trait]
impl ChangeFeed for SqliteStore {
    fn visibility_lag(&self) -> TimeDelta {
        TimeDelta::zero()
    }

    /// The entries only: their bodies are read by `bodies`, for the ones a page keeps.
    async fn changes(&self, q: &ChangeQuery) -> StoreResult<Vec<ChangedPoint>> {
        if q.limit == 0 {
            return Ok(Vec::new());
        }
        let channel = q.channel.as_str().to_owned();
        let connection = q.connection.as_ref().map(|c| c.as_str().to_owned());
        // (written_at, id) > (after): rows after the position; '' sorts before every stamp.
        let (after_at, after_id) = match &q.after {
            Some(p) => (timestamp(p.changed_at), p.id.clone()),
            None => (String::new(), String::new()),
        };
        let since = q.since.map(timestamp).unwrap_or_default();
        let until = timestamp(q.until);
        let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
        let sql = if q.descending {
            // Newest first: before the position; '~' sorts after every stamp.
            "SELECT id, written_at, connection_id, case_id, escaped_len FROM data_points \
             WHERE channel = ?1 AND (written_at, id) < (?2, ?3) AND written_at >= ?4 \
             AND written_at < ?5 AND (?6 IS NULL OR connection_id = ?6) \
             ORDER BY written_at DESC, id DESC LIMIT ?7"
        } else {
            "SELECT id, written_at, connection_id, case_id, escaped_len FROM data_points \
             WHERE channel = ?1 AND (written_at, id) > (?2, ?3) AND written_at >= ?4 \
             AND written_at < ?5 AND (?6 IS NULL OR connection_id = ?6) \
             ORDER BY written_at, id LIMIT ?7"
        };
        let (after_at, after_id) = match (&q.after, q.descending) {
            (Some(_), _) | (None, false) => (after_at, after_id),
            (None, true) => ("~".to_owned(), String::new()),
        };
        self.read(move |db| {
            let rows: Vec<Row> = db
                .prepare_cached(sql)
                .and_then(|mut s| {
                    s.query_map(
                        params![channel, after_at, after_id, since, until, connection, limit],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                    )?
                    .collect()
                })
                .map_err(sql_error(format!(
                    "reading the changes of channel {channel}"
                )))?;
            rows.iter()
                .map(|row| {
                    Ok(ChangedPoint {
                        entry: entry(row)?,
                        json: None,
                    })
                })
                .collect()
        })
        .await
    }

    async fn bodies(&self, entries: &[ChangeEntry]) -> StoreResult<Vec<StoredJson>> {
        let keys: Vec<(String, String)> = entries
            .iter()
            .map(|e| {
                (
                    e.connection_id.as_str().to_owned(),
                    e.case_id.as_str().to_owned(),
                )
            })
            .collect();
        self.read(move |db| {
            let mut select = db
                .prepare_cached(
                    "SELECT id, written_at, connection_id, case_id, escaped_len, body, body_lz4 \
                     FROM data_points WHERE connection_id = ?1 AND case_id = ?2",
                )
                .map_err(sql_error("reading data points"))?;
            let mut out = Vec::with_capacity(keys.len());
            for (connection, case) in &keys {
                let row: Option<(Row, Body)> = select
                    .query_row([connection, case], |r| {
                        Ok((
                            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?),
                            (r.get(5)?, r.get(6)?),
                        ))
                    })
                    .optional()
                    .map_err(sql_error(format!("reading data point {connection}/{case}")))?;
                if let Some((row, (body, packed))) = row {
                    out.push(StoredJson {
                        json: body_json(|| format!("{connection}/{case}"), body, packed)?,
                        entry: entry(&row)?,
                    });
                }
            }
            Ok(out)
        })
        .await
    }

    async fn modstamps(
        &self,
        channel: &ChannelName,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<DateTime<Utc>>> {
        let channel = channel.as_str().to_owned();
        let since = timestamp(since);
        self.read(move |db| {
            let rows: Vec<String> = db
                .prepare_cached(
                    "SELECT system_modstamp FROM data_points WHERE channel = ?1 \
                     AND system_modstamp >= ?2",
                )
                .and_then(|mut s| {
                    s.query_map(params![channel, since], |r| r.get(0))?
                        .collect()
                })
                .map_err(sql_error(format!(
                    "reading the modstamps of channel {channel}"
                )))?;
            let d = RowDecoder {
                table: "data_points",
                key: &channel,
            };
            rows.iter()
                .map(|t| Ok(d.timestamp("system_modstamp", t)?))
                .collect()
        })
        .await
    }

    async fn by_id(&self, id: &str) -> StoreResult<Option<StoredJson>> {
        let id = id.to_owned();
        self.read(move |db| {
            let row: Option<(Row, Body)> = db
                .prepare_cached(
                    "SELECT id, written_at, connection_id, case_id, escaped_len, body, body_lz4 \
                     FROM data_points WHERE id = ?1",
                )
                .and_then(|mut s| {
                    s.query_row([&id], |r| {
                        Ok((
                            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?),
                            (r.get(5)?, r.get(6)?),
                        ))
                    })
                    .optional()
                })
                .map_err(sql_error(format!("reading data point {id}")))?;
            row.map(|(row, (body, packed))| {
                Ok(StoredJson {
                    json: body_json(|| id.clone(), body, packed)?,
                    entry: entry(&row)?,
                })
            })
            .transpose()
        })
        .await
    }
}
