//! Call counters, cheap enough to leave on in production: one relaxed atomic add per AWS call.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counts the batch calls the adapters make. Share one `Arc<Metrics>` between adapters (see
/// `with_metrics` on each) and read it with [`Metrics::snapshot`]; subtract two snapshots to
/// measure one piece of work.
#[derive(Debug, Default)]
pub struct Metrics {
    batch_write_item_calls: AtomicU64,
    batch_write_item_requests: AtomicU64,
    batch_get_item_calls: AtomicU64,
    send_message_batch_calls: AtomicU64,
    query_calls: AtomicU64,
    get_item_calls: AtomicU64,
    scan_calls: AtomicU64,
    put_events_calls: AtomicU64,
    retries: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// DynamoDB `BatchWriteItem` calls (heads, body parts, part clean-up, deletes), retries
    /// included.
    pub batch_write_item_calls: u64,
    /// Put and delete requests sent in those calls (a retried request counts again).
    pub batch_write_item_requests: u64,
    /// DynamoDB `BatchGetItem` calls, retries of unprocessed keys included.
    pub batch_get_item_calls: u64,
    /// SQS `SendMessageBatch` calls, retries of failed entries included.
    pub send_message_batch_calls: u64,
    /// DynamoDB `Query` calls of the change feed (pages, parts, ids).
    pub query_calls: u64,
    /// DynamoDB `GetItem` calls of the change feed.
    pub get_item_calls: u64,
    /// DynamoDB `Scan` calls of the change feed (the console's chart).
    pub scan_calls: u64,
    /// EventBridge `PutEvents` calls.
    pub put_events_calls: u64,
    /// Retry rounds: unprocessed items or keys, failed queue entries.
    pub retries: u64,
}

impl MetricsSnapshot {
    /// DynamoDB write calls of any kind.
    pub fn dynamodb_write_calls(&self) -> u64 {
        self.batch_write_item_calls
    }
}

impl std::ops::Sub for MetricsSnapshot {
    type Output = MetricsSnapshot;
    fn sub(self, o: Self) -> Self {
        Self {
            batch_write_item_calls: self.batch_write_item_calls - o.batch_write_item_calls,
            batch_write_item_requests: self.batch_write_item_requests - o.batch_write_item_requests,
            batch_get_item_calls: self.batch_get_item_calls - o.batch_get_item_calls,
            send_message_batch_calls: self.send_message_batch_calls - o.send_message_batch_calls,
            query_calls: self.query_calls - o.query_calls,
            get_item_calls: self.get_item_calls - o.get_item_calls,
            scan_calls: self.scan_calls - o.scan_calls,
            put_events_calls: self.put_events_calls - o.put_events_calls,
            retries: self.retries - o.retries,
        }
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            batch_write_item_calls: get(&self.batch_write_item_calls),
            batch_write_item_requests: get(&self.batch_write_item_requests),
            batch_get_item_calls: get(&self.batch_get_item_calls),
            send_message_batch_calls: get(&self.send_message_batch_calls),
            query_calls: get(&self.query_calls),
            get_item_calls: get(&self.get_item_calls),
            scan_calls: get(&self.scan_calls),
            put_events_calls: get(&self.put_events_calls),
            retries: get(&self.retries),
        }
    }

    pub(crate) fn batch_write(&self, requests: usize) {
        self.batch_write_item_calls.fetch_add(1, Ordering::Relaxed);
        self.batch_write_item_requests
            .fetch_add(requests as u64, Ordering::Relaxed);
    }

    pub(crate) fn batch_get(&self) {
        self.batch_get_item_calls.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn send_message_batch(&self) {
        self.send_message_batch_calls
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn query(&self) {
        self.query_calls.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get_item(&self) {
        self.get_item_calls.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn scan(&self) {
        self.scan_calls.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn put_events(&self) {
        self.put_events_calls.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }
}
