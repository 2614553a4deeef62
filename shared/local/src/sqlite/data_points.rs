//! Data points in the `data_points` table: [`DataPointWriter`], [`DataPointReader`] and
//! [`DataPointDeleter`] of [`SqliteStore`], plus the export's raw-JSON listing.

use std::sync::PoisonError;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use casesync_core::data_point::{DataPoint, Supersedes, escaped_len};
use casesync_core::domain::{CaseId, ConnectionId};
use casesync_core::ports::*;
use chrono::{DateTime, Utc};
use rusqlite::{Connection as Db, OptionalExtension, TransactionBehavior, params};

use super::codec::{
    CorruptRow, RowDecoder, body_json, json, json_error_position, pack_body, parse_timestamp,
    timestamp,
};
use super::{SqliteStore, run_blocking, sql_error};

/// Points serialised between two yields to the runtime.
const ENCODE_CHUNK: usize = 8;

/// A data point ready for its row: serialised once, hashed and compressed from the same bytes,
/// and only the compressed bytes kept (a page's points are never all held as JSON at once).
struct EncodedPoint {
    id: String,
    connection_id: String,
    case_id: String,
    channel: String,
    modstamp: DateTime<Utc>,
    hash: String,
    escaped_len: i64,
    /// The JSON as stored (see `pack_body`).
    packed: Vec<u8>,
}

impl EncodedPoint {
    /// Serialises `p` on the caller's thread (which replaces a deep clone of the point that
    /// `spawn_blocking` would otherwise need, and costs about as much); the hash, exactly
    /// `DataPoint::content_hash` (the core's digest of the serde_json bytes), is computed from
    /// the bytes we store instead of serialising a second time (a test holds them equal).
    fn new(p: &DataPoint) -> StoreResult<Self> {
        let body = json("a data point", p)?;
        Ok(Self {
            id: p.id.clone(),
            connection_id: p.connection_id.as_str().to_owned(),
            case_id: p.case_id.as_str().to_owned(),
            channel: p.channel.as_str().to_owned(),
            modstamp: p.system_modstamp,
            hash: casesync_core::data_point::digest(body.as_bytes()),
            escaped_len: i64::try_from(escaped_len(body.as_bytes())).unwrap_or(i64::MAX),
            packed: pack_body(&body),
        })
    }
}

/// The core's decision, with the hash already computed.
pub(super) use casesync_core::data_point::decide;

/// The change stamp of a write transaction: now, or just after the last stamp if the clock is
/// behind it, so stamps only grow. Runs inside the write transaction, which serialises writers.
fn next_change_stamp(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<String> {
    let last: String = tx.query_row("SELECT last FROM change_clock WHERE only = 1", [], |r| {
        r.get(0)
    })?;
    let now = Utc::now();
    let stamp = match parse_timestamp(&last) {
        Some(last) if last >= now => last + chrono::TimeDelta::nanoseconds(1),
        _ => now,
    };
    let stamp = timestamp(stamp);
    tx.execute("UPDATE change_clock SET last = ?1 WHERE only = 1", [&stamp])?;
    Ok(stamp)
}

fn upsert_encoded(db: &mut Db, points: &[EncodedPoint]) -> StoreResult<UpsertCounts> {
    let err = || sql_error(format!("upserting {} data points", points.len()));
    let mut counts = UpsertCounts::default();
    let tx = db
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err())?;
    let written_at = next_change_stamp(&tx).map_err(err())?;
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
                 revision, written_at, body, body_lz4, id, channel, escaped_len) \
                 VALUES (?1, ?2, ?3, ?4, 1, ?5, '', ?6, ?7, ?8, ?9)",
            )
            .map_err(err())?;
        let mut update = tx
            .prepare_cached(
                "UPDATE data_points SET system_modstamp = ?3, content_hash = ?4, \
                 revision = revision + 1, written_at = ?5, body = '', body_lz4 = ?6, id = ?7, \
                 channel = ?8, escaped_len = ?9 WHERE connection_id = ?1 AND case_id = ?2",
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
                p.packed,
                p.id,
                p.channel,
                p.escaped_len
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
        // Encoding is CPU work on the caller's thread (about 40 µs per 24 KB point: JSON, digest,
        // LZ4; cheaper than the deep clone `spawn_blocking` would need instead): yield between
        // chunks so that other tasks on this worker keep running.
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
            let row: Option<(String, Option<Vec<u8>>)> = db
                .prepare_cached(
                    "SELECT body, body_lz4 FROM data_points \
                     WHERE connection_id = ?1 AND case_id = ?2",
                )
                .and_then(|mut s| {
                    s.query_row([connection.as_str(), case.as_str()], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()
                })
                .map_err(sql_error(format!("reading data point {connection}/{case}")))?;
            let Some((body, packed)) = row else {
                return Ok(None);
            };
            let json = body_json(|| format!("{connection}/{case}"), body, packed)?;
            Ok(Some(decode_point(
                connection.as_str(),
                case.as_str(),
                &json,
            )?))
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
        let rows = self.page_json(connection, after, limit, "listing").await?;
        Ok(rows
            .iter()
            .map(|(case, json)| decode_point(connection.as_str(), case, json))
            .collect::<Result<_, _>>()?)
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

impl SqliteStore {
    /// Like `list_data_points`, but each point as the JSON text stored for it (exactly what
    /// `serde_json` wrote for the `DataPoint`, i.e. the export format), without decoding it:
    /// for an export that writes the points out unchanged. Ordered by Case id.
    pub async fn list_data_point_json(
        &self,
        connection: &ConnectionId,
        after: Option<&CaseId>,
        limit: usize,
    ) -> StoreResult<Vec<(CaseId, String)>> {
        let rows = self
            .page_json(connection, after, limit, "exporting")
            .await?;
        Ok(rows
            .into_iter()
            .map(|(case, json)| {
                let key = format!("{connection}/{case}");
                let d = RowDecoder {
                    table: "data_points",
                    key: &key,
                };
                Ok((d.parse("case_id", &case, CaseId::parse)?, json))
            })
            .collect::<Result<_, CorruptRow>>()?)
    }

    /// One page of a connection's points after `after` in Case id order, each as its Case id
    /// and its JSON text (decompressed where it is stored compressed). `doing` words the
    /// error's context ("listing", "exporting").
    async fn page_json(
        &self,
        connection: &ConnectionId,
        after: Option<&CaseId>,
        limit: usize,
        doing: &'static str,
    ) -> StoreResult<Vec<(String, String)>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let connection = connection.clone();
        // No Case id sorts before the empty string.
        let after = after.map_or_else(String::new, |c| c.as_str().to_owned());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |db| {
            let rows: Vec<(String, String, Option<Vec<u8>>)> = db
                .prepare_cached(
                    "SELECT case_id, body, body_lz4 FROM data_points WHERE connection_id = ?1 \
                     AND case_id > ?2 ORDER BY case_id LIMIT ?3",
                )
                .and_then(|mut s| {
                    s.query_map(params![connection.as_str(), after, limit], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })?
                    .collect()
                })
                .map_err(sql_error(format!(
                    "{doing} the data points of connection {connection}"
                )))?;
            Ok(rows
                .into_iter()
                .map(|(case, body, packed)| {
                    let json = body_json(|| format!("{connection}/{case}"), body, packed)?;
                    Ok((case, json))
                })
                .collect::<Result<_, CorruptRow>>()?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use casesync_core::data_point::{ContentSource, Participant};
    use casesync_core::domain::ChannelName;
    use chrono::{TimeDelta, TimeZone};

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
        let e = EncodedPoint::new(&p).unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(e.hash, p.content_hash());
        assert_eq!(e.escaped_len as u64, escaped_len(json.as_bytes()));
        let stored = body_json(String::new, String::new(), Some(e.packed.clone())).unwrap();
        assert_eq!(
            stored, json,
            "the packed body unpacks to the JSON, byte for byte"
        );
        assert_eq!(serde_json::from_str::<DataPoint>(&stored).unwrap(), p);
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
