//! The work queue on SQS FIFO.

use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, MessageAttributeValue, SendMessageBatchRequestEntry,
};
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use casesync_core::ports::{StoreError, StoreResult, WorkItem, WorkQueue};

use crate::error::store_error;
use crate::metrics::Metrics;
use crate::tuning::Tuning;

/// Entries per `SendMessageBatch` call (SQS's limit).
pub const SEND_BATCH: usize = 10;

/// The message attribute holding why a message was dead-lettered.
pub const REASON_ATTRIBUTE: &str = "casesync_reason";
/// The message attribute holding the dead-lettered message's original id.
pub const SOURCE_ID_ATTRIBUTE: &str = "casesync_source_message_id";

/// A message the worker received and now reports on: what dead-lettering it and delaying its
/// redelivery need to know.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    pub message_id: &'a str,
    pub receipt_handle: Option<&'a str>,
    pub group_id: &'a str,
    pub body: &'a str,
}

/// [`WorkQueue`] on an SQS FIFO queue.
///
/// * `MessageGroupId` = the connection id: SQS hands out one message of a group at a time, so
///   two work items of one connection are never processed at once, while different
///   connections run in parallel.
/// * `MessageDeduplicationId` = SHA-256 of (connection id, kind, enqueued_at): a send retried
///   within SQS's 5-minute deduplication window (a Lambda retry, an SDK retry after a timeout)
///   does not enqueue the item twice. See [`deduplication_id`].
/// * body = the [`WorkItem`] as JSON.
#[derive(Debug, Clone)]
pub struct SqsWorkQueue {
    client: Client,
    queue_url: String,
    /// Where [`SqsWorkQueue::dead_letter`] moves messages that can never be processed.
    dead_letter_queue_url: Option<String>,
    metrics: Arc<Metrics>,
    tuning: Tuning,
}

/// The deduplication id of a work item: hex SHA-256 of `connection id|kind|enqueued_at`, and
/// `|case id,case id...` for the Cases a change item names (64 characters; SQS allows 128).
/// The same change event delivered twice within SQS's window is one message.
pub fn deduplication_id(item: &WorkItem) -> String {
    let kind = item.kind.as_str();
    let enqueued = item
        .enqueued_at
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let mut hasher = Sha256::new();
    hasher.update(format!("{}|{kind}|{enqueued}", item.connection_id));
    if !item.case_ids.is_empty() {
        hasher.update(b"|");
        for (i, id) in item.case_ids.iter().enumerate() {
            if i > 0 {
                hasher.update(b",");
            }
            hasher.update(id.as_str());
        }
    }
    hex::encode(hasher.finalize())
}

impl SqsWorkQueue {
    /// `queue_url` is the FIFO queue's URL (see [`crate::create_queue`]).
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            dead_letter_queue_url: None,
            metrics: Arc::new(Metrics::new()),
            tuning: Tuning::default(),
        }
    }

    /// The FIFO dead-letter queue [`SqsWorkQueue::dead_letter`] moves messages to.
    pub fn with_dead_letter_queue(mut self, url: impl Into<String>) -> Self {
        self.dead_letter_queue_url = Some(url.into());
        self
    }

    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn with_tuning(mut self, tuning: Tuning) -> Self {
        self.tuning = tuning;
        self
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Moves a message that can never be processed (a *poison message*) to the dead-letter
    /// queue, with `reason` and its original id as message attributes. The caller then
    /// acknowledges it; when this fails, the caller reports it failed instead and the queue's
    /// redrive policy moves it after `maxReceiveCount` receives.
    pub async fn dead_letter(&self, message: &Received<'_>, reason: &str) -> StoreResult<()> {
        let dlq = self
            .dead_letter_queue_url
            .as_deref()
            .ok_or_else(|| StoreError::Unexpected(anyhow!("no dead-letter queue is configured")))?;
        let attribute = |value: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| StoreError::Unexpected(anyhow!("build a message attribute: {e}")))
        };
        let body = if message.body.is_empty() {
            "(empty body)"
        } else {
            message.body
        };
        // SQS allows 128 characters; a message id is 36. Anything else gets a fresh one.
        let deduplication_id = match message.message_id {
            id if !id.is_empty() && id.len() <= 128 => id.to_owned(),
            _ => format!("poison-{}", uuid::Uuid::new_v4().simple()),
        };
        let group_id = if message.group_id.is_empty() {
            "poison"
        } else {
            message.group_id
        };
        self.client
            .send_message()
            .queue_url(dlq)
            .message_body(body)
            .message_group_id(group_id)
            .message_deduplication_id(deduplication_id)
            .message_attributes(REASON_ATTRIBUTE, attribute(reason)?)
            .message_attributes(
                SOURCE_ID_ATTRIBUTE,
                attribute(if message.message_id.is_empty() {
                    "unknown"
                } else {
                    message.message_id
                })?,
            )
            .send()
            .await
            .map_err(|e| store_error(e, format_args!("dead-letter a message to {dlq}")))?;
        Ok(())
    }

    /// Makes failed messages visible again after their delay instead of the queue's long
    /// visibility timeout (`ChangeMessageVisibilityBatch`, 10 a call). Best effort: on failure
    /// the queue's own timeout applies, which only delays the retry; failures are logged.
    pub async fn retry_after(&self, delays: &[(&str, Duration)]) {
        for chunk in delays.chunks(SEND_BATCH) {
            let entries: Vec<_> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, (handle, after))| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(*handle)
                        .visibility_timeout(i32::try_from(after.as_secs()).unwrap_or(i32::MAX))
                        .build()
                        .ok()
                })
                .collect();
            let result = self
                .client
                .change_message_visibility_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await;
            match result {
                Ok(out) if out.failed().is_empty() => {}
                Ok(out) => tracing::warn!(
                    failed = out.failed().len(),
                    "could not shorten the visibility of some failed messages"
                ),
                Err(e) => tracing::warn!(
                    error = %aws_sdk_sqs::error::DisplayErrorContext(e),
                    "could not shorten the visibility of the failed messages"
                ),
            }
        }
    }

    /// Sends up to 10 items; entries SQS reports as failed through no fault of ours are sent
    /// again with backoff. A sender fault, or failures left when the retries are spent, fail
    /// the call.
    async fn send_batch(&self, items: &[WorkItem]) -> StoreResult<()> {
        let mut entries = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let body = serde_json::to_string(item)
                .map_err(|e| StoreError::Unexpected(anyhow!("encode work item: {e}")))?;
            let entry = SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(body)
                .message_group_id(item.connection_id.as_str())
                .message_deduplication_id(deduplication_id(item))
                .build()
                .map_err(|e| StoreError::Unexpected(anyhow!("build queue entry: {e}")))?;
            entries.push(entry);
        }
        let mut delays = self.tuning.retry.delays();
        loop {
            self.metrics.send_message_batch();
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries.clone()))
                .send()
                .await
                .map_err(|e| {
                    store_error(e, format_args!("send work items to {}", self.queue_url))
                })?;
            let failed = out.failed();
            if failed.is_empty() {
                return Ok(());
            }
            if let Some(f) = failed.iter().find(|f| f.sender_fault) {
                return Err(StoreError::Unexpected(anyhow!(
                    "SQS refused {} of {} work items ({}: {})",
                    failed.len(),
                    entries.len(),
                    f.code,
                    f.message.as_deref().unwrap_or("")
                )));
            }
            let Some(delay) = delays.next() else {
                let f = &failed[0];
                return Err(StoreError::Unavailable(anyhow!(
                    "SQS failed {} of {} work items after retries ({}: {})",
                    failed.len(),
                    entries.len(),
                    f.code,
                    f.message.as_deref().unwrap_or("")
                )));
            };
            let retry: Vec<&str> = failed.iter().map(|f| f.id.as_str()).collect();
            entries.retain(|e| retry.contains(&e.id.as_str()));
            self.metrics.retry();
            tokio::time::sleep(delay).await;
        }
    }
}

#[async_trait]
impl WorkQueue for SqsWorkQueue {
    /// `SendMessageBatch` calls of 10 entries, in parallel (bounded by the tuning's
    /// concurrency). `Ok` only when every item was accepted; on an error some items may have
    /// been sent, and sending all again is safe within the deduplication window.
    async fn enqueue(&self, items: &[WorkItem]) -> StoreResult<()> {
        let calls: Vec<_> = items
            .chunks(SEND_BATCH)
            .map(|chunk| self.send_batch(chunk))
            .collect();
        futures::stream::iter(calls)
            .buffer_unordered(self.tuning.concurrency.max(1))
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use casesync_core::domain::ConnectionId;
    use casesync_core::ports::WorkKind;

    #[test]
    fn deduplication_ids_follow_connection_kind_and_time() {
        let item = WorkItem {
            connection_id: ConnectionId::parse("conn_0123456789abcdef0123456789abcdef").unwrap(),
            kind: WorkKind::Tick,
            enqueued_at: "2024-03-04T17:00:00Z".parse().unwrap(),
            idle_runs: 0,
            case_ids: Vec::new(),
        };
        let id = deduplication_id(&item);
        // Unchanged by the change items' field: items queued before it dedupe as before.
        assert_eq!(
            id,
            hex::encode(Sha256::digest(
                "conn_0123456789abcdef0123456789abcdef|tick|2024-03-04T17:00:00.000000000Z"
            ))
        );
        assert_eq!(id.len(), 64);
        assert_eq!(deduplication_id(&item.clone()), id);
        let later = WorkItem {
            enqueued_at: "2024-03-04T17:00:00.001Z".parse().unwrap(),
            ..item.clone()
        };
        let other_kind = WorkItem {
            kind: WorkKind::Continuation,
            ..item.clone()
        };
        assert_ne!(deduplication_id(&later), id);
        assert_ne!(deduplication_id(&other_kind), id);
    }

    #[test]
    fn change_items_differ_by_their_cases() {
        let at = "2024-03-04T17:00:00Z".parse().unwrap();
        let connection = ConnectionId::parse("conn_0123456789abcdef0123456789abcdef").unwrap();
        let case = |s: &str| casesync_core::domain::CaseId::parse(s).unwrap();
        let a = WorkItem::changes(connection.clone(), vec![case("500xx000003DHb0")], at);
        let b = WorkItem::changes(connection.clone(), vec![case("500xx000003DHb1")], at);
        let both = WorkItem::changes(
            connection,
            vec![case("500xx000003DHb0"), case("500xx000003DHb1")],
            at,
        );
        assert_eq!(deduplication_id(&a), deduplication_id(&a.clone()));
        assert_ne!(deduplication_id(&a), deduplication_id(&b));
        assert_ne!(deduplication_id(&a), deduplication_id(&both));
    }
}
