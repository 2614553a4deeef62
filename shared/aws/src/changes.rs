//! A channel's data points in the order they last changed: [`ChangeFeed`] of
//! [`DynamoDataPointStore`], on the `by_change` global secondary index (partition key `channel`,
//! sort key `changed` = `<change stamp>#<id>`, projecting the table's keys and `body`,
//! `parts`, `part_set`, `escaped_len`), and data points by id on the `by_id` index (keys only).
//! Plus the upgrade of heads written before those indexes existed.
//!
//! Reads use `Query` and `GetItem` only. A page of points costs one `Query` on the index (two
//! when its compressed bodies pass the 1 MB a `Query` returns), plus one `Query` for the parts
//! of each split body it keeps.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, TimeDelta, Utc};
use tokio::time::Instant;

use casesync_core::data_point::{self, DataPoint};
use casesync_core::domain::{CaseId, ChannelName, ConnectionId};
use casesync_core::ports::{
    ChangeEntry, ChangeFeed, ChangePosition, ChangeQuery, ChangedPoint, StoreResult, StoredJson,
};

use crate::body::{self, PART_SIZE};
use crate::data_points::{
    BODY, CASE_ID, CASE_NUMBER, CHANGE_INDEX, CHANGED, CHANNEL, CONNECTION_ID,
    DynamoDataPointStore, ESCAPED_LEN, ID, ID_INDEX, PART_OF, SYSTEM_MODSTAMP, part_set,
    put_request,
};
use crate::error::{corrupt, store_error};
use crate::item::{Attrs, Expr, Item, n, s};
use crate::time;

/// Entries read per `Query` call at most.
const QUERY_LIMIT: usize = 1000;

/// The entry an index item (or a head) describes.
fn entry_of(item: &Item) -> StoreResult<ChangeEntry> {
    let a = Attrs::new(item, "data point index entry");
    let changed = a.s(CHANGED)?;
    let (stamp, id) = changed
        .split_once('#')
        .ok_or_else(|| corrupt("data point index entry", "changed without '#'"))?;
    let connection = a.s(CONNECTION_ID)?;
    let case = a.s(CASE_ID)?;
    Ok(ChangeEntry {
        position: ChangePosition {
            changed_at: time::parse("data point change stamp", stamp)?,
            id: id.to_owned(),
        },
        connection_id: ConnectionId::parse(connection)
            .map_err(|e| corrupt("data point index entry", e))?,
        case_id: CaseId::parse(case).map_err(|e| corrupt("data point index entry", e))?,
        escaped_len: a.opt_n(ESCAPED_LEN)?.unwrap_or_default(),
    })
}

fn text(json: Vec<u8>, what: &str) -> StoreResult<String> {
    String::from_utf8(json).map_err(|_| corrupt(what, "body is not UTF-8"))
}

impl DynamoDataPointStore {
    /// The JSON of a head (an index item projecting the body attributes, or the head itself):
    /// inline bodies decompressed, split ones read with one `Query` for their parts.
    async fn json_of(&self, item: &Item) -> StoreResult<Vec<u8>> {
        let a = Attrs::new(item, "data point head");
        let (c, k) = (a.s(CONNECTION_ID)?, a.s(CASE_ID)?);
        let what = format!("data point {c}/{k}");
        let Some(set) = part_set(item)? else {
            return body::decompress_json(&what, a.b(BODY)?);
        };
        let prefix = format!("{k}#{}#", set.id);
        let mut parts: Vec<(String, Vec<u8>)> = Vec::with_capacity(set.count);
        let mut start = None;
        loop {
            let mut expr = Expr::new();
            let key_condition = format!(
                "{} = {} AND begins_with({}, {})",
                expr.name(CONNECTION_ID),
                expr.value("connection", s(c)),
                expr.name(CASE_ID),
                expr.value("prefix", s(&prefix)),
            );
            self.metrics().query();
            let page = self
                .client()
                .query()
                .table_name(self.table())
                .key_condition_expression(key_condition)
                .set_expression_attribute_names(expr.names())
                .set_expression_attribute_values(expr.values())
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| store_error(e, format_args!("read the parts of {what}")))?;
            for part in page.items() {
                let p = Attrs::new(part, "data point part");
                parts.push((p.s(CASE_ID)?.to_owned(), p.b(BODY)?.to_vec()));
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        if parts.len() != set.count {
            return Err(corrupt(
                &what,
                format_args!("{} of its {} parts are stored", parts.len(), set.count),
            ));
        }
        // Part keys end in a zero-padded index: key order is part order.
        parts.sort_by(|x, y| x.0.cmp(&y.0));
        let mut bytes = Vec::with_capacity(set.count * PART_SIZE);
        for (_, part) in parts {
            bytes.extend_from_slice(&part);
        }
        body::decompress_json(&what, &bytes)
    }

    async fn head(&self, connection: &str, case: &str) -> StoreResult<Option<Item>> {
        self.metrics().get_item();
        let out = self
            .client()
            .get_item()
            .table_name(self.table())
            .set_key(Some(Self::key_item(connection, case)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error(e, format_args!("read data point {connection}/{case}")))?;
        Ok(out.item)
    }
}

#[async_trait]
impl ChangeFeed for DynamoDataPointStore {
    fn visibility_lag(&self) -> TimeDelta {
        self.visibility_lag
    }

    /// One `Query` on the index per 1,000 entries or 1 MB (more only when a connection filter
    /// passes over others' entries). The bodies the index holds come along, decompressed for
    /// the entries within the budget; split ones within it are read with one `Query` each.
    async fn changes(&self, q: &ChangeQuery) -> StoreResult<Vec<ChangedPoint>> {
        if q.limit == 0 {
            return Ok(Vec::new());
        }
        // `changed` BETWEEN lo AND hi. No stamp sorts below "0"; `<after>\u{1}` is the smallest
        // key above `<after>`; every stamp below `until` sorts below `until` itself.
        let mut lo = match q.since {
            Some(since) => time::fixed_us(&since)?,
            None => "0".to_owned(),
        };
        let mut hi = time::fixed_us(&q.until)?;
        // Newest first: keys below the position's own (which is then passed over).
        let mut below = None;
        if let Some(after) = &q.after {
            let key = format!("{}#{}", time::fixed_us(&after.changed_at)?, after.id);
            if q.descending {
                hi = hi.min(key.clone());
                below = Some(key);
            } else {
                lo = lo.max(format!("{key}\u{1}"));
            }
        }
        if lo > hi {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut start = None;
        // The caller's rule for keeping entries: bodies past it are not read.
        let mut spent = 0u64;
        let mut within = true;
        loop {
            let mut expr = Expr::new();
            let key_condition = format!(
                "{} = {} AND {} BETWEEN {} AND {}",
                expr.name(CHANNEL),
                expr.value("channel", s(q.channel.as_str())),
                expr.name(CHANGED),
                expr.value("lo", s(&lo)),
                expr.value("hi", s(&hi)),
            );
            let filter = q.connection.as_ref().map(|c| {
                format!(
                    "{} = {}",
                    expr.name(CONNECTION_ID),
                    expr.value("connection", s(c.as_str()))
                )
            });
            let want = (q.limit - out.len()).min(QUERY_LIMIT);
            self.metrics().query();
            let page = self
                .client()
                .query()
                .table_name(self.table())
                .index_name(CHANGE_INDEX)
                .key_condition_expression(key_condition)
                .set_filter_expression(filter)
                .set_expression_attribute_names(expr.names())
                .set_expression_attribute_values(expr.values())
                .limit(i32::try_from(want).unwrap_or(1000))
                .scan_index_forward(!q.descending)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| {
                    store_error(
                        e,
                        format_args!("query the changes of channel {}", q.channel),
                    )
                })?;
            for item in page.items() {
                if below.is_some()
                    && Attrs::new(item, "data point index entry").opt_s(CHANGED)?
                        == below.as_deref()
                {
                    continue;
                }
                let entry = entry_of(item)?;
                let keep = match q.budget {
                    None => true,
                    Some(budget) if entry.escaped_len > budget => false,
                    Some(budget) => {
                        within = within && spent + entry.escaped_len <= budget;
                        if within {
                            spent += entry.escaped_len;
                        }
                        within
                    }
                };
                let json = match keep {
                    true => Some(text(self.json_of(item).await?, "data point")?),
                    false => None,
                };
                out.push(ChangedPoint { entry, json });
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() && out.len() < q.limit => start = Some(key),
                _ => {
                    out.truncate(q.limit);
                    return Ok(out);
                }
            }
        }
    }

    /// A `GetItem` per entry (and a `Query` for a split body's parts).
    async fn bodies(&self, entries: &[ChangeEntry]) -> StoreResult<Vec<StoredJson>> {
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let Some(head) = self
                .head(e.connection_id.as_str(), e.case_id.as_str())
                .await?
            else {
                continue;
            };
            if !head.contains_key(CHANGED) {
                continue;
            }
            let json = text(self.json_of(&head).await?, "data point")?;
            out.push(StoredJson {
                entry: entry_of(&head)?,
                json,
            });
        }
        Ok(out)
    }

    /// A `Scan` of the id index (small entries: keys, channel and modstamp), filtered.
    async fn modstamps(
        &self,
        channel: &ChannelName,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<DateTime<Utc>>> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let mut expr = Expr::new();
            let filter = format!(
                "{} = {} AND {} >= {}",
                expr.name(CHANNEL),
                expr.value("channel", s(channel.as_str())),
                expr.name(SYSTEM_MODSTAMP),
                expr.value("since", s(time::fixed_ms(&since)?)),
            );
            let projection = expr.name(SYSTEM_MODSTAMP);
            self.metrics().scan();
            let page = self
                .client()
                .scan()
                .table_name(self.table())
                .index_name(ID_INDEX)
                .filter_expression(filter)
                .projection_expression(projection)
                .set_expression_attribute_names(expr.names())
                .set_expression_attribute_values(expr.values())
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| {
                    store_error(e, format_args!("read the modstamps of channel {channel}"))
                })?;
            for item in page.items() {
                let a = Attrs::new(item, "data point id entry");
                out.push(time::parse("data point id entry", a.s(SYSTEM_MODSTAMP)?)?);
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(out),
            }
        }
    }

    /// A `Query` on the id index, a `GetItem` for the head (and a `Query` for a split body).
    async fn by_id(&self, id: &str) -> StoreResult<Option<StoredJson>> {
        let mut expr = Expr::new();
        let key_condition = format!("{} = {}", expr.name(ID), expr.value("id", s(id)));
        self.metrics().query();
        let page = self
            .client()
            .query()
            .table_name(self.table())
            .index_name(ID_INDEX)
            .key_condition_expression(key_condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .limit(1)
            .send()
            .await
            .map_err(|e| store_error(e, format_args!("look up data point {id}")))?;
        let Some(key) = page.items().first() else {
            return Ok(None);
        };
        let a = Attrs::new(key, "data point id entry");
        let Some(head) = self.head(a.s(CONNECTION_ID)?, a.s(CASE_ID)?).await? else {
            return Ok(None);
        };
        if !head.contains_key(CHANGED) {
            // Written before the change index: readable once upgraded.
            return Ok(None);
        }
        let json = text(self.json_of(&head).await?, "data point")?;
        Ok(Some(StoredJson {
            entry: entry_of(&head)?,
            json,
        }))
    }
}

impl DynamoDataPointStore {
    /// Gives the heads of `connection` written before the change index (no `changed`) the
    /// attributes the indexes and change events need (`channel`, `changed`, `escaped_len`,
    /// `case_number`), read from their own bodies, for at most `budget`. `Ok(true)` once none
    /// is left. Idempotent and resumable: each pass picks up the heads still missing them. The
    /// caller holds the connection's sync lease, so no run writes these heads meanwhile.
    pub async fn upgrade_heads(
        &self,
        connection: &ConnectionId,
        budget: Duration,
    ) -> StoreResult<bool> {
        let deadline = Instant::now() + budget;
        let mut start = None;
        loop {
            if Instant::now() >= deadline {
                return Ok(false);
            }
            let mut expr = Expr::new();
            let key_condition = format!(
                "{} = {}",
                expr.name(CONNECTION_ID),
                expr.value("connection", s(connection.as_str()))
            );
            let filter = format!(
                "attribute_not_exists({}) AND attribute_not_exists({})",
                expr.name(CHANGED),
                expr.name(PART_OF)
            );
            let page = self
                .client()
                .query()
                .table_name(self.table())
                .key_condition_expression(key_condition)
                .filter_expression(filter)
                .set_expression_attribute_names(expr.names())
                .set_expression_attribute_values(expr.values())
                .consistent_read(true)
                .limit(100)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| {
                    store_error(
                        e,
                        format_args!("find the unindexed data points of {connection}"),
                    )
                })?;
            let heads: Vec<Item> = page.items().to_vec();
            if !heads.is_empty() {
                let bodies = self.bodies_of(&heads).await?;
                let mut puts = Vec::with_capacity(heads.len());
                for (mut head, json) in heads.into_iter().zip(bodies) {
                    let point: DataPoint = serde_json::from_slice(&json).map_err(|e| {
                        corrupt("data point", format_args!("not a data point: {e}"))
                    })?;
                    head.insert(CHANNEL.to_owned(), s(point.channel.as_str()));
                    head.insert(CASE_NUMBER.to_owned(), s(&point.case_number));
                    head.insert(ESCAPED_LEN.to_owned(), n(data_point::escaped_len(&json)));
                    head.insert(CHANGED.to_owned(), AttributeValue::S(String::new()));
                    puts.push(put_request(head));
                }
                let stamp = |item: &mut Item| self.stamp_change(item);
                self.batch.write_restamped(puts, Some(&stamp)).await?;
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(true),
            }
        }
    }
}
