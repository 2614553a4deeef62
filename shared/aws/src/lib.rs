//! casesync adapters for AWS: the ports of `casesync_core::ports` on DynamoDB, Secrets Manager
//! and SQS. No Lambda here: each function asks [`Wiring`] for the adapters it uses (the SDK
//! clients built once from one `aws_config::SdkConfig`, the environment read once) and hands
//! them to the core.
//!
//! ```no_run
//! # async fn demo(config: &aws_config::SdkConfig) {
//! use std::sync::Arc;
//! use casesync_aws::*;
//!
//! let ddb = aws_sdk_dynamodb::Client::new(config);
//! let tables = TableNames::with_prefix("casesync-prod");
//! let metrics = Arc::new(Metrics::new());
//! let connections = DynamoConnectionStore::new(ddb.clone(), &tables.connections);
//! let points = DynamoDataPointStore::new(ddb.clone(), &tables.data_points)
//!     .with_metrics(metrics.clone());
//! let auth_states = DynamoAuthStateStore::new(ddb, &tables.auth_states);
//! let secrets = SecretsManagerStore::new(
//!     aws_sdk_secretsmanager::Client::new(config),
//!     "casesync-prod/refresh-tokens",
//! );
//! let queue = SqsWorkQueue::new(aws_sdk_sqs::Client::new(config), "https://sqs.../work.fifo")
//!     .with_metrics(metrics);
//! # }
//! ```
//!
//! # Resources
//!
//! All tables are on-demand (`PAY_PER_REQUEST`); [`create_tables`] and [`create_queue`] make
//! them with the key schema the SAM template declares.
//!
//! ## `connections`: partition key `connection_id` (S)
//!
//! One item per connection ([`DynamoConnectionStore`]):
//!
//! | attribute | type | what |
//! |---|---|---|
//! | `connection_id` | S | `conn_` + 32 hex digits |
//! | `channel`, `login_url`, `instance_url`, `api_version`, `scope`, `backfill` | S | the settings, in their parse formats (`scope` is `all` or comma-separated queue ids) |
//! | `state` | S | `active`, `disconnected`, `needs_reauth` |
//! | `client_id` | S, absent when none | the Connected App that issued the refresh token |
//! | `state_reason` | S, absent when none | why not active |
//! | `created_at`, `last_lookback_at` | S | RFC 3339, exact |
//! | `cursor_modstamp` | S | fixed-width RFC 3339 UTC with milliseconds, `2024-03-04T17:00:00.000Z`, so it compares as a string |
//! | `cursor_case_id` | S, absent when the cursor has no Case id | |
//! | `lease_holder`, `lease_until` | S, absent when free | `lease_until` fixed-width like the cursor |
//! | `last_run` | M | the last [`SyncReport`](casesync_core::sync::SyncReport), as a DynamoDB map (serde_dynamo): readable in the console and projectable (`last_run.outcome`) by the API |
//! | `failures` | L of M | the [`CaseFailure`](casesync_core::domain::CaseFailure)s (at most 200, well under the item limit) |
//!
//! Conditional writes: insert is `attribute_not_exists(connection_id)`; every other update
//! requires the item to exist (a racing delete is not undone by a half item); the cursor commit
//! is a compare-and-swap on both cursor attributes and refuses to move backwards; the lease is
//! taken only if free, expired (`lease_until <= now`) or already the caller's.
//!
//! ## `data_points`: partition key `connection_id` (S), sort key `case_id` (S)
//!
//! A *head* item per Case ([`DynamoDataPointStore`]): `connection_id`, `case_id`, `id`,
//! `system_modstamp` (fixed-width, as above), `content_hash` ([`DataPoint::content_hash`]),
//! and the body: the data point's contract JSON compressed with zstd (level 3, with a content
//! checksum).
//!
//! **Large items.** DynamoDB refuses items over 400 KB; an email thread can be 5 MB. Email text
//! compresses 4–10×, so compression alone keeps almost every point in one item (one write, one
//! read). When the compressed body is still over 350 KB, it is split into *part* items of
//! 350 KB: sort key `<case_id>#<part set>#<nnnn>`, attributes `part_of` (the Case id) and
//! `body`; the head then holds `parts` (N) and `part_set` (S) instead of `body`. `#` sorts
//! before any Case id character, so parts sit right after their head. Why not S3 for the big
//! ones: a second service, bucket and IAM policy for a rare case, and no conditional write
//! across the two; parts keep every byte in one table, under one key, one delete.
//!
//! Crash safety: a part set id is fresh for every write attempt; parts are written first, then
//! the head that refers to them, then the superseded parts are deleted. A crash leaves at worst
//! unreferenced parts (reads only follow the head; list and count filter on
//! `attribute_not_exists(part_of)`; `delete_data_points` removes them), never a head pointing
//! at missing parts. A body reassembled wrongly fails zstd's checksum instead of decoding.
//!
//! **Writes.** [`DataPointWriter::upsert_data_points`](casesync_core::ports::DataPointWriter)
//! reads the stored heads with `BatchGetItem` (100 keys a call, strongly consistent,
//! unprocessed keys retried), decides each point with
//! [`DataPoint::supersedes`](casesync_core::data_point::DataPoint::supersedes) (unchanged points
//! are never rewritten, older never overwrite newer), writes parts with `BatchWriteItem` (25 a
//! call, in parallel, unprocessed items retried with jittered exponential backoff), then the
//! heads the same way: 1,000 new points cost 10 `BatchGetItem` and 40 `BatchWriteItem` calls.
//!
//! `BatchWriteItem` takes no condition, so the store does not arbitrate between two writers of
//! one connection at the same moment: between one writer's read and its write, another could
//! store a newer version that the older write then covers. The sync lease rules that out
//! (`LeaseStore`, on the connection item, conditional): a run holds it from before its first
//! read until after its last write, and it outlives the run's time budget by minutes while a
//! Lambda invocation cannot outlive its timeout, so no two live workers write one connection's
//! data points. Per-item conditional writes would cost 25× the calls for a race the lease
//! already excludes; `TransactWriteItems` would double the write units.
//!
//! ## `auth_states`: partition key `state` (S), TTL attribute `expires_at`
//!
//! `pending`: the [`PendingAuthorization`](casesync_core::ports::PendingAuthorization) as JSON;
//! `expires_at`: epoch seconds. Taking is one `DeleteItem` with `ReturnValues: ALL_OLD`, hence
//! single-use ([`DynamoAuthStateStore`]).
//!
//! ## Secrets Manager
//!
//! One secret per connection, `<prefix>/<connection_id>` ([`SecretsManagerStore`]).
//!
//! ## SQS
//!
//! A FIFO queue with a FIFO dead-letter queue ([`SqsWorkQueue`], [`create_queue`]):
//! `MessageGroupId` = connection id, `MessageDeduplicationId` =
//! SHA-256(connection id, kind, enqueued_at), body = the `WorkItem` JSON.
//!
//! # Errors
//!
//! `ConditionalCheckFailed` → `StoreError::Conflict`; throttling, 5xx, timeouts and dispatch
//! failures → `StoreError::Unavailable` (after the SDK's own retries); the rest →
//! `StoreError::Unexpected` with what was being done. No secret value reaches an error or a log.
//!
//! # Metrics
//!
//! [`Metrics`] counts `BatchWriteItem`, `BatchGetItem` and
//! `SendMessageBatch` calls with relaxed atomics; share one `Arc<Metrics>` between adapters.
//!
//! # Differences from `casesync_core::memory::MemoryStore`
//!
//! * A lease lives on its connection's item: `try_acquire_lease` on a connection that does not
//!   exist is `StoreError::ConnectionNotFound` (the memory store grants it).
//! * An upsert is not one atomic write: on an error, some of its points may have been written
//!   (each one whole). Writing the batch again is safe.
//! * Timestamps compared in conditions are kept to the millisecond (Salesforce's precision).
//!
//! # Tests
//!
//! With the `test-support` feature, [`testing`] starts a moto server and points an
//! `SdkConfig` at it.
//!
//! [`DataPoint::content_hash`]: casesync_core::data_point::DataPoint::content_hash

mod auth_states;
mod batch;
mod body;
mod changes;
pub mod config;
mod connections;
mod data_points;
mod error;
pub mod events;
mod item;
mod metrics;
mod provision;
mod queue;
mod secrets;
mod time;
mod tuning;
mod wiring;

pub mod telemetry;
#[cfg(feature = "test-support")]
pub mod testing;

pub use auth_states::DynamoAuthStateStore;
pub use config::Env;
pub use connections::DynamoConnectionStore;
pub use data_points::{CHANGE_INDEX, CHANGE_VISIBILITY_LAG, DynamoDataPointStore, ID_INDEX};
pub use events::{Change, EventBridgePublisher, change_event};
pub use metrics::{Metrics, MetricsSnapshot};
pub use provision::{ProvisionError, QueueOptions, QueueUrls, create_queue, create_tables};
pub use queue::{REASON_ATTRIBUTE, Received, SOURCE_ID_ATTRIBUTE, SqsWorkQueue, deduplication_id};
pub use secrets::SecretsManagerStore;
pub use tuning::{RetryPolicy, Tuning};
pub use wiring::{Started, StartupError, Wiring};

/// DynamoDB's item size limit (400 KB), which no item this crate writes reaches.
pub const DYNAMODB_ITEM_LIMIT: usize = 400 * 1024;

/// The names of the three tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNames {
    pub connections: String,
    pub data_points: String,
    pub auth_states: String,
}

impl TableNames {
    /// `<prefix>-connections`, `<prefix>-data-points`, `<prefix>-auth-states`; the prefix is
    /// typically the stack name.
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            connections: format!("{prefix}-connections"),
            data_points: format!("{prefix}-data-points"),
            auth_states: format!("{prefix}-auth-states"),
        }
    }
}
