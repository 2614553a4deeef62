//! Data points in DynamoDB: one head item per (connection, Case), its body compressed inline or
//! in part items (see the crate docs for the layout and why).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{DeleteRequest, PutRequest, Select, WriteRequest};
use chrono::{DateTime, TimeDelta, Utc};

use casesync_core::data_point::{self, DataPoint, EncodedDataPoint, Supersedes};
use casesync_core::domain::{CaseId, ConnectionId};
use casesync_core::ports::{
    Clock, DataPointDeleter, DataPointReader, DataPointWriter, StoreResult, SystemClock,
    UpsertCounts,
};

use crate::batch::{Batcher, Projection};
use crate::body::{self, INLINE_LIMIT, PART_SIZE};
use crate::error::{corrupt, store_error};
use crate::item::{Attrs, Expr, Item, b, n, s};
use crate::metrics::Metrics;
use crate::time;
use crate::tuning::Tuning;

// Attribute names.
pub(crate) const CONNECTION_ID: &str = "connection_id";
pub(crate) const CASE_ID: &str = "case_id";
pub(crate) const ID: &str = "id";
pub(crate) const SYSTEM_MODSTAMP: &str = "system_modstamp";
pub(crate) const CONTENT_HASH: &str = "content_hash";
pub(crate) const BODY: &str = "body";
pub(crate) const PARTS: &str = "parts";
pub(crate) const PART_SET: &str = "part_set";
pub(crate) const PART_OF: &str = "part_of";
pub(crate) const CHANNEL: &str = "channel";
pub(crate) const CASE_NUMBER: &str = "case_number";
/// `<change stamp, fixed-width µs>#<data point id>`: the sort key of [`CHANGE_INDEX`].
pub(crate) const CHANGED: &str = "changed";
pub(crate) const ESCAPED_LEN: &str = "escaped_len";

/// The index of a channel's data points by last change: partition key `channel`, sort key
/// `changed`, projecting the table's keys and the body (`body`, or `parts` and `part_set`) with
/// `escaped_len`, so that a page is read with `Query` alone.
pub const CHANGE_INDEX: &str = "by_change";
/// The index of data points by id: partition key `id`, projecting `channel` and
/// `system_modstamp` (small entries, scanned for the console's chart).
pub const ID_INDEX: &str = "by_id";

/// How long after its change stamp a write can still become visible in [`CHANGE_INDEX`]: a
/// write attempt is stamped right before it is sent and the functions' DynamoDB client gives up
/// on an operation after 20 s (`Wiring`), clocks of Lambda hosts agree to well under a second
/// (Amazon Time Sync), and a global secondary index follows its table within a second under
/// normal conditions. A minute covers them with room to spare.
pub const CHANGE_VISIBILITY_LAG: TimeDelta = TimeDelta::seconds(60);

/// The `data_points` table: [`DataPointWriter`], [`DataPointReader`], [`DataPointDeleter`], and
/// the change feed ([`casesync_core::ports::ChangeFeed`], in `changes.rs`).
#[derive(Clone)]
pub struct DynamoDataPointStore {
    pub(crate) batch: Batcher,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) visibility_lag: TimeDelta,
}

impl std::fmt::Debug for DynamoDataPointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoDataPointStore")
            .field("table", &self.batch.table)
            .field("tuning", &self.batch.tuning)
            .finish()
    }
}

type Key = (String, String);

/// What a head says about the stored version.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredHead {
    modstamp: DateTime<Utc>,
    hash: String,
    pub(crate) parts: Option<PartSet>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartSet {
    pub(crate) id: String,
    pub(crate) count: usize,
}

/// All versions of one Case given to one upsert, in the order given.
struct Group<'a> {
    key: Key,
    /// Each version with its encoding (JSON and digest), computed once.
    points: Vec<(&'a DataPoint, EncodedDataPoint)>,
}

/// A head write planned for one Case.
struct Planned<'a> {
    point: &'a DataPoint,
    /// The head as read: its parts, if any, are deleted once the new head is written.
    expected: Option<StoredHead>,
    head: Item,
}

impl DynamoDataPointStore {
    /// `table` is the `data_points` table's name (see [`crate::TableNames`]).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            batch: Batcher {
                client,
                table: table.into(),
                metrics: Arc::new(Metrics::new()),
                tuning: Tuning::default(),
            },
            clock: Arc::new(SystemClock),
            visibility_lag: CHANGE_VISIBILITY_LAG,
        }
    }

    /// Stamps changes with `clock` (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Readers of the change feed stay `lag` behind now (tests against moto, whose index is
    /// updated with the write, use less than [`CHANGE_VISIBILITY_LAG`]).
    pub fn with_visibility_lag(mut self, lag: TimeDelta) -> Self {
        self.visibility_lag = lag;
        self
    }

    /// Counts this store's calls into `metrics` (shared with other adapters, if you like).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.batch.metrics = metrics;
        self
    }

    pub fn with_tuning(mut self, tuning: Tuning) -> Self {
        self.batch.tuning = tuning;
        self
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.batch.metrics
    }

    pub fn table(&self) -> &str {
        &self.batch.table
    }

    pub(crate) fn client(&self) -> &Client {
        &self.batch.client
    }

    pub(crate) fn key_item(connection: &str, case: &str) -> Item {
        Item::from([
            (CONNECTION_ID.to_owned(), s(connection)),
            (CASE_ID.to_owned(), s(case)),
        ])
    }

    /// The stored heads of `keys` (strongly consistent), without their bodies.
    async fn read_heads(&self, keys: &[&Key]) -> StoreResult<HashMap<Key, StoredHead>> {
        let mut expr = Expr::new();
        let projection = [
            CONNECTION_ID,
            CASE_ID,
            SYSTEM_MODSTAMP,
            CONTENT_HASH,
            PARTS,
            PART_SET,
        ]
        .map(|a| expr.name(a))
        .join(", ");
        let projection = Projection {
            expression: Some(projection),
            names: expr.names(),
        };
        let items = self
            .batch
            .get(
                keys.iter().map(|(c, k)| Self::key_item(c, k)).collect(),
                &projection,
            )
            .await?;
        items
            .iter()
            .map(|item| {
                let a = Attrs::new(item, "data point head");
                let key = (a.s(CONNECTION_ID)?.to_owned(), a.s(CASE_ID)?.to_owned());
                Ok((key, parse_head(item)?))
            })
            .collect()
    }

    /// Encodes the winning version of a group: the head item and, for a large body, its parts.
    fn plan<'a>(
        point: &'a DataPoint,
        encoded: &EncodedDataPoint,
        expected: Option<StoredHead>,
    ) -> StoreResult<(Planned<'a>, Vec<Item>)> {
        let body = body::compress(&encoded.json)?;
        let mut head = Item::from([
            (CONNECTION_ID.to_owned(), s(point.connection_id.as_str())),
            (CASE_ID.to_owned(), s(point.case_id.as_str())),
            (ID.to_owned(), s(&point.id)),
            (CHANNEL.to_owned(), s(point.channel.as_str())),
            (CASE_NUMBER.to_owned(), s(&point.case_number)),
            (
                SYSTEM_MODSTAMP.to_owned(),
                s(time::fixed_ms(&point.system_modstamp)?),
            ),
            (CONTENT_HASH.to_owned(), s(&encoded.hash)),
            (
                ESCAPED_LEN.to_owned(),
                n(data_point::escaped_len(&encoded.json)),
            ),
            // Stamped when the write is sent (see `stamp_change`).
            (CHANGED.to_owned(), s("")),
        ]);
        let mut part_items = Vec::new();
        if body.len() <= INLINE_LIMIT {
            head.insert(BODY.to_owned(), b(body));
        } else {
            let set = body::new_part_set();
            let chunks = body.chunks(PART_SIZE);
            let count = chunks.len();
            for (i, chunk) in chunks.enumerate() {
                part_items.push(Item::from([
                    (CONNECTION_ID.to_owned(), s(point.connection_id.as_str())),
                    (
                        CASE_ID.to_owned(),
                        s(body::part_key(point.case_id.as_str(), &set, i)),
                    ),
                    (PART_OF.to_owned(), s(point.case_id.as_str())),
                    (BODY.to_owned(), b(chunk.to_vec())),
                ]));
            }
            head.insert(PARTS.to_owned(), n(count));
            head.insert(PART_SET.to_owned(), s(&set));
        }
        Ok((
            Planned {
                point,
                expected,
                head,
            },
            part_items,
        ))
    }

    /// The items a first write of `points` puts (heads, and parts for large bodies), built and
    /// dropped without a request: the CPU a write costs before the SDK and the network (the
    /// benchmark's DynamoDB figure). Returns how many items that is.
    pub fn encode_items(points: &[DataPoint]) -> StoreResult<usize> {
        let mut items = 0;
        for point in points {
            let encoded = point.encode();
            let (_head, parts) = Self::plan(point, &encoded, None)?;
            items += 1 + parts.len();
        }
        Ok(items)
    }

    fn part_deletes(connection: &str, case: &str, set: &PartSet) -> Vec<WriteRequest> {
        (0..set.count)
            .map(|i| {
                let key = Self::key_item(connection, &body::part_key(case, &set.id, i));
                WriteRequest::builder()
                    .delete_request(
                        DeleteRequest::builder()
                            .set_key(Some(key))
                            .build()
                            .expect("a delete request with a key always builds"),
                    )
                    .build()
            })
            .collect()
    }

    /// Turns head items into data points, fetching and reassembling split bodies.
    async fn decode(&self, heads: Vec<Item>) -> StoreResult<Vec<DataPoint>> {
        let bodies = self.bodies_of(&heads).await?;
        heads
            .iter()
            .zip(bodies)
            .map(|(item, json)| {
                let a = Attrs::new(item, "data point head");
                let what = format!("data point {}/{}", a.s(CONNECTION_ID)?, a.s(CASE_ID)?);
                serde_json::from_slice(&json)
                    .map_err(|e| corrupt(&what, format_args!("body is not a data point: {e}")))
            })
            .collect()
    }

    /// The stored contract JSON of each head, in order: inline bodies decompressed, split ones
    /// fetched (one `BatchGetItem` for all their parts) and reassembled.
    pub(crate) async fn bodies_of(&self, heads: &[Item]) -> StoreResult<Vec<Vec<u8>>> {
        let mut part_keys = Vec::new();
        for item in heads {
            let head = parse_head(item)?;
            if let Some(set) = &head.parts {
                let a = Attrs::new(item, "data point head");
                let (c, k) = (a.s(CONNECTION_ID)?, a.s(CASE_ID)?);
                part_keys.extend(
                    (0..set.count).map(|i| Self::key_item(c, &body::part_key(k, &set.id, i))),
                );
            }
        }
        let mut parts: HashMap<(String, String), Vec<u8>> = HashMap::new();
        if !part_keys.is_empty() {
            for item in self.batch.get(part_keys, &Projection::default()).await? {
                let a = Attrs::new(&item, "data point part");
                let key = (a.s(CONNECTION_ID)?.to_owned(), a.s(CASE_ID)?.to_owned());
                parts.insert(key, a.b(BODY)?.to_vec());
            }
        }
        heads
            .iter()
            .map(|item| {
                let a = Attrs::new(item, "data point head");
                let (c, k) = (a.s(CONNECTION_ID)?, a.s(CASE_ID)?);
                let what = format!("data point {c}/{k}");
                let head = parse_head(item)?;
                match &head.parts {
                    None => body::decompress_json(&what, Attrs::new(item, &what).b(BODY)?),
                    Some(set) => {
                        let mut bytes = Vec::with_capacity(set.count * PART_SIZE);
                        for i in 0..set.count {
                            let key = (c.to_owned(), body::part_key(k, &set.id, i));
                            let part = parts.get(&key).ok_or_else(|| {
                                corrupt(&what, format_args!("part {i} of {} is missing", set.count))
                            })?;
                            bytes.extend_from_slice(part);
                        }
                        body::decompress_json(&what, &bytes)
                    }
                }
            })
            .collect()
    }

    /// Sets a head's change stamp to now: `<now, fixed-width µs>#<id>`. Called right before
    /// each attempt to write it.
    pub(crate) fn stamp_change(&self, item: &mut Item) -> StoreResult<()> {
        if !item.contains_key(CHANGED) {
            return Ok(());
        }
        let id = Attrs::new(item, "data point head").s(ID)?.to_owned();
        let stamp = time::fixed_us(&self.clock.now())?;
        item.insert(CHANGED.to_owned(), s(format!("{stamp}#{id}")));
        Ok(())
    }

    /// Pages through a connection's items with `Query`.
    async fn query_page(
        &self,
        connection: &ConnectionId,
        after: Option<&str>,
        start: Option<Item>,
        configure: impl FnOnce(
            aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
            &mut Expr,
        )
            -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> StoreResult<aws_sdk_dynamodb::operation::query::QueryOutput> {
        let mut expr = Expr::new();
        let mut key_condition = format!(
            "{} = {}",
            expr.name(CONNECTION_ID),
            expr.value("connection", s(connection.as_str()))
        );
        if let Some(after) = after {
            key_condition.push_str(&format!(
                " AND {} > {}",
                expr.name(CASE_ID),
                expr.value("after", s(after))
            ));
        }
        let builder = self
            .client()
            .query()
            .table_name(self.table())
            .key_condition_expression(key_condition)
            .consistent_read(true)
            .set_exclusive_start_key(start);
        let builder = configure(builder, &mut expr);
        builder
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .send()
            .await
            .map_err(|e| {
                store_error(
                    e,
                    format_args!("query data points of {connection} in {}", self.table()),
                )
            })
    }
}

pub(crate) fn parse_head(item: &Item) -> StoreResult<StoredHead> {
    let a = Attrs::new(item, "data point head");
    Ok(StoredHead {
        modstamp: time::parse("data point head", a.s(SYSTEM_MODSTAMP)?)?,
        hash: a.s(CONTENT_HASH)?.to_owned(),
        parts: part_set(item)?,
    })
}

/// Where a head's body is: `None` inline, else its part set.
pub(crate) fn part_set(item: &Item) -> StoreResult<Option<PartSet>> {
    let a = Attrs::new(item, "data point head");
    match (a.opt_s(PART_SET)?, a.opt_n(PARTS)?) {
        (Some(id), Some(count)) => Ok(Some(PartSet {
            id: id.to_owned(),
            count: usize::try_from(count)
                .map_err(|_| corrupt("data point head", "part count out of range"))?,
        })),
        (None, None) => Ok(None),
        _ => Err(corrupt("data point head", "parts without a part set")),
    }
}

/// Applies a group's versions in order to what is stored, as the in-memory store would one
/// after the other. Returns the counts and the version to write, if any.
fn decide<'a, 'b>(
    points: &'b [(&'a DataPoint, EncodedDataPoint)],
    stored: Option<&StoredHead>,
) -> (UpsertCounts, Option<(&'a DataPoint, &'b EncodedDataPoint)>) {
    let mut counts = UpsertCounts::default();
    let mut current = stored.map(|h| (h.modstamp, h.hash.clone()));
    let mut winner = None;
    for (p, encoded) in points {
        match &current {
            None => counts.created += 1,
            Some((modstamp, hash)) => {
                match data_point::decide(p.system_modstamp, &encoded.hash, *modstamp, hash) {
                    Supersedes::Update => counts.updated += 1,
                    Supersedes::Unchanged => {
                        counts.unchanged += 1;
                        continue;
                    }
                    Supersedes::Stale => {
                        counts.stale += 1;
                        continue;
                    }
                }
            }
        }
        current = Some((p.system_modstamp, encoded.hash.clone()));
        winner = Some((*p, encoded));
    }
    (counts, winner)
}

#[async_trait]
impl DataPointWriter for DynamoDataPointStore {
    /// 1. `BatchGetItem` (100 keys a call) reads the stored heads' modstamp and content hash.
    /// 2. [`DataPoint::supersedes`] decides each point; unchanged and stale ones are not written.
    /// 3. Body parts of large points are written with `BatchWriteItem` (25 a call), before any
    ///    head refers to them, so a crash never leaves a head pointing at missing parts.
    /// 4. Heads are written with `BatchWriteItem` (25 a call, calls in parallel, unprocessed
    ///    items retried with backoff).
    /// 5. Parts of superseded heads are deleted (best effort: a failure leaves unreferenced
    ///    parts, which reads ignore and `delete_data_points` removes).
    ///
    /// `BatchWriteItem` takes no condition, so this store does not arbitrate between two
    /// writers of one connection at once: the sync lease does (`LeaseStore`), which outlives
    /// every run's time budget and the Lambda timeout, so two live workers never write one
    /// connection's data points concurrently. Within one writer, step 2 guarantees that an
    /// older version never replaces a newer one.
    async fn upsert_data_points(&self, points: &[DataPoint]) -> StoreResult<UpsertCounts> {
        let mut groups: Vec<Group<'_>> = Vec::new();
        let mut index: HashMap<Key, usize> = HashMap::new();
        for p in points {
            let key = (
                p.connection_id.as_str().to_owned(),
                p.case_id.as_str().to_owned(),
            );
            let i = *index.entry(key.clone()).or_insert_with(|| {
                groups.push(Group {
                    key,
                    points: Vec::new(),
                });
                groups.len() - 1
            });
            groups[i].points.push((p, p.encode()));
        }

        let keys: Vec<&Key> = groups.iter().map(|g| &g.key).collect();
        let stored = self.read_heads(&keys).await?;
        let mut counts = UpsertCounts::default();
        let mut planned = Vec::new();
        let mut part_puts = Vec::new();
        for group in &groups {
            let head = stored.get(&group.key);
            let (group_counts, winner) = decide(&group.points, head);
            counts += group_counts;
            if let Some((point, encoded)) = winner {
                let (p, parts) = Self::plan(point, encoded, head.cloned())?;
                planned.push(p);
                part_puts.extend(parts.into_iter().map(put_request));
            }
        }
        if planned.is_empty() {
            return Ok(counts);
        }

        self.batch.write(part_puts).await?;
        let head_puts = planned
            .iter()
            .map(|p| put_request(p.head.clone()))
            .collect();
        let stamp = |item: &mut Item| self.stamp_change(item);
        self.batch.write_restamped(head_puts, Some(&stamp)).await?;

        let cleanup: Vec<WriteRequest> = planned
            .iter()
            .filter_map(|p| {
                let old = p.expected.as_ref()?.parts.as_ref()?;
                Some(Self::part_deletes(
                    p.point.connection_id.as_str(),
                    p.point.case_id.as_str(),
                    old,
                ))
            })
            .flatten()
            .collect();
        if !cleanup.is_empty()
            && let Err(e) = self.batch.write(cleanup).await
        {
            tracing::warn!(table = %self.table(), error = %e, "could not delete superseded data point parts");
        }
        Ok(counts)
    }

    /// `BatchWriteItem` holds 25 items: the engine hands over whole batches.
    fn write_batch_size(&self) -> Option<usize> {
        Some(crate::batch::WRITE_CHUNK)
    }

    /// See [`DynamoDataPointStore::upgrade_heads`].
    async fn index_existing_points(
        &self,
        connection: &ConnectionId,
        budget: std::time::Duration,
    ) -> StoreResult<bool> {
        self.upgrade_heads(connection, budget).await
    }
}

pub(crate) fn put_request(item: Item) -> WriteRequest {
    WriteRequest::builder()
        .put_request(
            PutRequest::builder()
                .set_item(Some(item))
                .build()
                .expect("a put request with an item always builds"),
        )
        .build()
}

#[async_trait]
impl DataPointReader for DynamoDataPointStore {
    async fn get_data_point(
        &self,
        connection: &ConnectionId,
        case: &CaseId,
    ) -> StoreResult<Option<DataPoint>> {
        let out = self
            .client()
            .get_item()
            .table_name(self.table())
            .set_key(Some(Self::key_item(connection.as_str(), case.as_str())))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error(e, format_args!("read data point {connection}/{case}")))?;
        match out.item {
            None => Ok(None),
            Some(item) => Ok(self.decode(vec![item]).await?.pop()),
        }
    }

    /// `Query` with `Select: COUNT`, filtered to head items.
    async fn count_data_points(&self, connection: &ConnectionId) -> StoreResult<u64> {
        let mut total = 0u64;
        let mut start = None;
        loop {
            let page = self
                .query_page(connection, None, start.take(), |q, expr| {
                    q.select(Select::Count)
                        .filter_expression(format!("attribute_not_exists({})", expr.name(PART_OF)))
                })
                .await?;
            total += u64::try_from(page.count).unwrap_or_default();
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(total),
            }
        }
    }

    async fn list_data_points(
        &self,
        connection: &ConnectionId,
        after: Option<&CaseId>,
        limit: usize,
    ) -> StoreResult<Vec<DataPoint>> {
        let mut heads = Vec::new();
        let mut start = None;
        while heads.len() < limit {
            let want = i32::try_from((limit - heads.len()).min(1000)).unwrap_or(1000);
            let page = self
                .query_page(
                    connection,
                    after.map(CaseId::as_str),
                    start.take(),
                    |q, expr| {
                        q.limit(want).filter_expression(format!(
                            "attribute_not_exists({})",
                            expr.name(PART_OF)
                        ))
                    },
                )
                .await?;
            heads.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        heads.truncate(limit);
        self.decode(heads).await
    }
}

#[async_trait]
impl DataPointDeleter for DynamoDataPointStore {
    /// `Query` for the keys (heads and parts), then `BatchWriteItem` deletes, page by page.
    async fn delete_data_points(&self, connection: &ConnectionId) -> StoreResult<u64> {
        let mut deleted = 0u64;
        let mut start = None;
        loop {
            let page = self
                .query_page(connection, None, start.take(), |q, expr| {
                    let projection = [CONNECTION_ID, CASE_ID, PART_OF]
                        .map(|a| expr.name(a))
                        .join(", ");
                    q.projection_expression(projection)
                })
                .await?;
            let mut requests = Vec::new();
            for item in page.items() {
                let a = Attrs::new(item, "data point item");
                if a.opt_s(PART_OF)?.is_none() {
                    deleted += 1;
                }
                let key = Self::key_item(a.s(CONNECTION_ID)?, a.s(CASE_ID)?);
                requests.push(
                    WriteRequest::builder()
                        .delete_request(
                            DeleteRequest::builder()
                                .set_key(Some(key))
                                .build()
                                .expect("a delete request with a key always builds"),
                        )
                        .build(),
                );
            }
            self.batch.write(requests).await?;
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(deleted),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use casesync_core::data_point::{ContentSource, Participant};
    use casesync_core::domain::ChannelName;

    fn point(modstamp: &str, subject: &str) -> DataPoint {
        let connection_id = ConnectionId::parse("conn_0123456789abcdef0123456789abcdef").unwrap();
        let case_id = CaseId::parse("500xx000003DHb0AAG").unwrap();
        DataPoint {
            id: DataPoint::id_for(&connection_id, &case_id),
            connection_id,
            channel: ChannelName::parse("support").unwrap(),
            case_id,
            case_number: "1".into(),
            subject: Some(subject.into()),
            status: "Closed".into(),
            priority: None,
            origin: None,
            case_type: None,
            created_date: "2024-03-01T00:00:00Z".parse().unwrap(),
            system_modstamp: modstamp.parse().unwrap(),
            salesforce_link: "https://x".into(),
            participant: Participant::default(),
            content_source: ContentSource::None,
            conversation: vec![],
        }
    }

    fn head(p: &DataPoint) -> StoredHead {
        StoredHead {
            modstamp: p.system_modstamp,
            hash: p.content_hash(),
            parts: None,
        }
    }

    #[test]
    fn versions_of_one_case_in_one_batch_apply_in_order() {
        let v1 = point("2024-03-01T00:00:00Z", "a");
        let v2 = point("2024-03-02T00:00:00Z", "b");
        let enc = |p: &DataPoint| (p.clone(), p.encode());
        let (e1, e2) = (enc(&v1), enc(&v2));
        let versions = [
            (&e1.0, e1.1.clone()),
            (&e2.0, e2.1.clone()),
            (&e1.0, e1.1.clone()),
            (&e2.0, e2.1.clone()),
        ];
        let (counts, winner) = decide(&versions, None);
        assert_eq!(
            counts,
            UpsertCounts {
                created: 1,
                updated: 1,
                unchanged: 1,
                stale: 1
            }
        );
        assert_eq!(winner.map(|(p, _)| p), Some(&v2));
        let older = [(&v1, v1.encode())];
        let (counts, winner) = decide(&older, Some(&head(&v2)));
        assert_eq!((counts.stale, winner.is_none()), (1, true));
        let same = [(&v2, v2.encode())];
        let (counts, winner) = decide(&same, Some(&head(&v2)));
        assert_eq!((counts.unchanged, winner.is_none()), (1, true));
    }
}
