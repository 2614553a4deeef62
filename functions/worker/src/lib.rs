//! Lambda: syncs the connection named by each SQS message.
//!
//! The worker consumes the FIFO work queue (event source mapping with
//! `ReportBatchItemFailures`) and answers with an [`SqsBatchResponse`] naming the messages to
//! deliver again. Each record is handled on its own, in a span carrying its message id:
//!
//! 1. **Decode** the body as a [`WorkItem`]. A body that does not decode can never succeed: it
//!    is a *poison message*, moved at once to the dead-letter queue (`DLQ_URL`) with the reason
//!    as a message attribute, and acknowledged. If that move fails, the record is reported as
//!    failed, and the queue's redrive policy moves it after `maxReceiveCount` receives.
//! 2. **Skip stale work.** When the connection's last recorded run started after the item was
//!    queued, it was already synced since: the item is acknowledged without touching
//!    Salesforce. Ticks pile up behind a long run (one a minute, all in the connection's
//!    message group); this drains them in milliseconds. The rule holds for continuations too:
//!    a run records `last_run` only once it has finished and queued its own follow-up, so a
//!    continuation older than that run is redundant, and skipping it keeps one chain of
//!    continuations per connection. A connection that was deleted, disconnected or needs
//!    re-authorization is acknowledged too: there is nothing to sync.
//! 3. **Sync** with [`SyncEngine::sync`], the budget being the invocation's remaining time (the
//!    Lambda context's deadline) less [`Timing::run_margin`]. The engine takes the
//!    connection's lease, re-reads its state before each page (a disconnect stops it at the
//!    next page) and commits the cursor compare-and-swap after each page.
//!    * `more_work` → a `Continuation` item is queued, so a 6-month backfill completes across
//!      invocations.
//!    * `done`, `busy`, `disconnected`, `needs_reauth`, `rate_limited`, `failed` →
//!      acknowledged: the outcome is recorded on the connection (the Salesforce-side reasons
//!      are the user's to see), and the next tick resumes from the cursor.
//!    * a [`StoreError`] (DynamoDB or Secrets Manager throttled or unreachable before the run
//!      could start) → the record is reported failed and delivered again.
//!
//! Records of one message group (one connection) are handled in order; once one fails, the
//! rest of its group in the batch are reported failed unprocessed, as FIFO ordering requires.
//! Groups are handled concurrently. Failed records get a short visibility timeout
//! (`ChangeMessageVisibility`, backing off with the receive count) so they come back in a
//! minute rather than after the queue's long visibility timeout.
//!
//! No secret reaches a log, an error, a queue message or a stored item: the Connected App's
//! consumer secret is read once at cold start into a `SecretString`, refresh tokens stay in
//! Secrets Manager, access tokens in memory.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use casesync_aws::config::{BACKFILL_SLICES, SALESFORCE_BATCH_SIZE};
use casesync_aws::{Env, Received, SqsWorkQueue, StartupError, Wiring};
use casesync_core::manage::work::{self, FollowUp, Skip};
use casesync_core::ports::{
    Clock, DataPointWriter, SecretStore, StoreError, SyncStateStore, SystemClock, WorkItem,
    WorkKind, WorkQueue,
};
use casesync_core::salesforce::{HttpSettings, Salesforce};
use casesync_core::sync::{SyncConfig, SyncEngine, SyncOutcome, SyncReport};
use lambda_runtime::LambdaEvent;
use tracing::Instrument;

pub use casesync_aws::{REASON_ATTRIBUTE, SOURCE_ID_ATTRIBUTE};

/// How the worker spends an invocation's time, and how soon a failed message comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// The engine starts no new Salesforce page this long before the invocation's deadline:
    /// room for a slow page already in flight, recording the run, releasing the lease and
    /// queueing the continuation.
    pub run_margin: Duration,
    /// A run still going this long before the deadline is abandoned (as a crash would: the
    /// cursor holds the last committed page, the lease expires by itself) so that the batch
    /// response still goes out.
    pub abandon_margin: Duration,
    /// No sync starts with less budget than this; the message is delivered again instead.
    pub min_budget: Duration,
    /// A failed message is visible again after this delay, times 3 for each earlier receive,
    /// up to `max_retry_delay`.
    pub retry_delay: Duration,
    pub max_retry_delay: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            run_margin: Duration::from_secs(60),
            abandon_margin: Duration::from_secs(5),
            min_budget: Duration::from_secs(5),
            retry_delay: Duration::from_secs(60),
            max_retry_delay: Duration::from_secs(15 * 60),
        }
    }
}

impl Timing {
    /// The visibility timeout for a message that failed on its `receive_count`-th receive.
    pub fn retry_after(&self, receive_count: u32) -> Duration {
        let factor = 3u32.saturating_pow(receive_count.saturating_sub(1).min(10));
        self.retry_delay
            .saturating_mul(factor)
            .min(self.max_retry_delay)
    }
}

/// Everything [`Worker::new`] wires together.
pub struct WorkerParts {
    pub connections: Arc<dyn SyncStateStore>,
    pub data_points: Arc<dyn DataPointWriter>,
    pub secrets: Arc<dyn SecretStore>,
    /// The work queue: where continuations go, and how poison messages are dead-lettered and
    /// failed ones delayed.
    pub queue: Arc<SqsWorkQueue>,
    pub salesforce: Salesforce,
    pub sync: SyncConfig,
    pub clock: Arc<dyn Clock>,
    pub timing: Timing,
}

/// The worker's dependencies, built once per process and shared by every invocation.
pub struct Worker {
    engine: SyncEngine,
    connections: Arc<dyn SyncStateStore>,
    queue: Arc<SqsWorkQueue>,
    clock: Arc<dyn Clock>,
    timing: Timing,
}

impl Worker {
    pub fn new(parts: WorkerParts) -> Self {
        let engine = SyncEngine::new(
            parts.connections.clone(),
            parts.data_points,
            parts.secrets,
            parts.clock.clone(),
            parts.salesforce,
            parts.sync,
        );
        Self {
            engine,
            connections: parts.connections,
            queue: parts.queue,
            clock: parts.clock,
            timing: parts.timing,
        }
    }

    /// The production wiring: the DynamoDB, Secrets Manager and SQS adapters from one
    /// `SdkConfig`, the environment read once (`CONNECTIONS_TABLE`, `DATA_POINTS_TABLE`,
    /// `WORK_QUEUE_URL`, `DLQ_URL`, `SECRET_PREFIX`, `SALESFORCE_CLIENT_ID`,
    /// `SALESFORCE_CLIENT_SECRET_ARN`), the Connected App's consumer secret read once.
    pub async fn from_env(sdk: &aws_config::SdkConfig, env: Env) -> Result<Self, StartupError> {
        let mut wiring = Wiring::new(sdk, env);
        let connections = wiring.connections();
        let data_points = wiring.data_points();
        let secrets = wiring.secrets();
        let queue = wiring.consumed_work_queue();
        let batch_size = match wiring.env().optional(SALESFORCE_BATCH_SIZE) {
            Some(_) => wiring
                .env()
                .parsed(SALESFORCE_BATCH_SIZE, casesync_core::sync::parse_batch_size),
            None => None,
        };
        let slices = match wiring.env().optional(BACKFILL_SLICES) {
            Some(_) => wiring
                .env()
                .parsed(BACKFILL_SLICES, casesync_core::sync::parse_slices),
            None => None,
        };
        let salesforce = wiring
            .finish_with_salesforce(&HttpSettings::default())
            .await?;
        Ok(Self::new(WorkerParts {
            connections,
            data_points,
            secrets,
            queue,
            salesforce,
            sync: SyncConfig {
                batch_size: batch_size.unwrap_or(casesync_core::sync::DEFAULT_BATCH_SIZE),
                slices: slices.unwrap_or(casesync_core::sync::DEFAULT_SLICES),
                ..SyncConfig::default()
            },
            clock: Arc::new(SystemClock),
            timing: Timing::default(),
        }))
    }

    /// Handles one batch; `deadline` is when the invocation times out.
    pub async fn process(&self, records: &[SqsMessage], deadline: Instant) -> SqsBatchResponse {
        let started = Instant::now();
        // Records grouped by message group, in order of first appearance.
        let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
        for (i, record) in records.iter().enumerate() {
            let group = group_of(record);
            match groups.iter_mut().find(|(g, _)| *g == group) {
                Some((_, members)) => members.push(i),
                None => groups.push((group, vec![i])),
            }
        }
        let handled = futures::future::join_all(
            groups
                .iter()
                .map(|(_, members)| self.process_group(records, members, deadline)),
        )
        .await;
        let mut verdicts = vec![Verdict::Done; records.len()];
        for (i, verdict) in handled.into_iter().flatten() {
            verdicts[i] = verdict;
        }

        let mut response = SqsBatchResponse::default();
        let mut delays = Vec::new();
        for (record, verdict) in records.iter().zip(&verdicts) {
            if let Verdict::Retry { after } = verdict {
                // An empty identifier makes Lambda retry the whole batch: the safe side for a
                // record without a message id (SQS always sends one).
                response.add_failure(record.message_id.clone().unwrap_or_default());
                if let Some(handle) = &record.receipt_handle {
                    delays.push((handle.as_str(), *after));
                }
            }
        }
        self.queue.retry_after(&delays).await;
        tracing::info!(
            messages = records.len(),
            failed = response.batch_item_failures.len(),
            elapsed_ms = millis(started.elapsed()),
            "batch handled"
        );
        response
    }

    /// One group's records in order; after a failure, the rest are held back.
    async fn process_group(
        &self,
        records: &[SqsMessage],
        members: &[usize],
        deadline: Instant,
    ) -> Vec<(usize, Verdict)> {
        let mut out = Vec::with_capacity(members.len());
        let mut failed: Option<Duration> = None;
        for &i in members {
            let record = &records[i];
            let verdict = match failed {
                None => self.process_record(record, deadline).await,
                Some(after) => {
                    tracing::info!(
                        message_id = record.message_id.as_deref().unwrap_or(""),
                        "held back: an earlier message of its group failed, and FIFO order must hold"
                    );
                    Verdict::Retry { after }
                }
            };
            if let Verdict::Retry { after } = verdict {
                failed.get_or_insert(after);
            }
            out.push((i, verdict));
        }
        out
    }

    async fn process_record(&self, record: &SqsMessage, deadline: Instant) -> Verdict {
        let span = tracing::info_span!(
            "message",
            message_id = record.message_id.as_deref().unwrap_or(""),
            connection = tracing::field::Empty,
            kind = tracing::field::Empty,
        );
        let receive_count = receive_count(record);
        async {
            let item = match decode(record.body.as_deref()) {
                Ok(item) => item,
                Err(reason) => return self.dead_letter(record, &reason, receive_count).await,
            };
            let span = tracing::Span::current();
            span.record("connection", item.connection_id.as_str());
            span.record("kind", item.kind.as_str());
            match self.sync(&item, deadline).await {
                Ok(()) => Verdict::Done,
                Err(reason) => {
                    let after = self.timing.retry_after(receive_count);
                    tracing::warn!(
                        %reason,
                        receive_count,
                        retry_in_s = after.as_secs(),
                        "message failed; it will be delivered again"
                    );
                    Verdict::Retry { after }
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Syncs the item's connection if there is anything to do. `Err` means "deliver again".
    async fn sync(&self, item: &WorkItem, deadline: Instant) -> Result<(), String> {
        let id = &item.connection_id;
        let connection = self
            .connections
            .get_connection(id)
            .await
            .map_err(|e| format!("could not read the connection: {e}"))?;
        match work::needs_run(item, connection.as_ref()) {
            Ok(()) => {}
            Err(Skip::Deleted) => {
                tracing::info!("the connection no longer exists; nothing to do");
                return Ok(());
            }
            Err(Skip::NotActive(state)) => {
                tracing::info!(%state, "the connection is not active; nothing to do");
                return Ok(());
            }
            Err(Skip::Stale {
                last_run_started_at,
            }) => {
                tracing::info!(
                    enqueued_at = %item.enqueued_at,
                    %last_run_started_at,
                    "stale: the connection was synced since this message was queued; skipped"
                );
                return Ok(());
            }
            Err(Skip::AlreadyIndexed) => {
                tracing::info!("the connection's data points are all indexed; nothing to do");
                return Ok(());
            }
        }

        let remaining = deadline.saturating_duration_since(Instant::now());
        let budget = remaining.saturating_sub(self.timing.run_margin);
        if budget < self.timing.min_budget {
            return Err(format!(
                "only {} ms of the invocation remain; not starting a sync",
                millis(remaining)
            ));
        }
        let abandon_after = remaining.saturating_sub(self.timing.abandon_margin);
        match item.kind {
            WorkKind::IndexPoints => return self.index_points(item, budget, abandon_after).await,
            WorkKind::Changes => return self.fetch_changes(item, budget, abandon_after).await,
            WorkKind::Tick | WorkKind::Continuation | WorkKind::Resync => {}
        }
        let report =
            match tokio::time::timeout(abandon_after, self.engine.sync(id, budget, None)).await {
                Ok(Ok(report)) => report,
                Ok(Err(StoreError::ConnectionNotFound(_))) => {
                    tracing::info!("the connection was deleted before the run started");
                    return Ok(());
                }
                Ok(Err(e)) => return Err(format!("the sync could not start: {e}")),
                Err(_) => {
                    tracing::error!(
                        budget_ms = millis(budget),
                        "the run overran its budget and was abandoned before the invocation's \
                     deadline; the cursor holds its last committed page"
                    );
                    return Err("the run did not finish within the invocation".into());
                }
            };
        self.after_run(item, &report).await;
        Ok(())
    }

    /// Fetches the Cases a change event named (the cursor does not move). Delivered again when
    /// another run holds the connection or time ran out; acknowledged otherwise, whatever
    /// Salesforce said: the polling sync covers these Cases too, and records what it finds.
    async fn fetch_changes(
        &self,
        item: &WorkItem,
        budget: Duration,
        abandon_after: Duration,
    ) -> Result<(), String> {
        let id = &item.connection_id;
        let fetch = self.engine.fetch_changes(id, &item.case_ids, budget);
        let report = match tokio::time::timeout(abandon_after, fetch).await {
            Ok(Ok(report)) => report,
            Ok(Err(StoreError::ConnectionNotFound(_))) => {
                tracing::info!("the connection was deleted; nothing to fetch");
                return Ok(());
            }
            Ok(Err(e)) => return Err(format!("could not fetch the changed Cases: {e}")),
            Err(_) => return Err("fetching the changed Cases did not finish in time".into()),
        };
        let lag_ms = (self.clock.now() - item.enqueued_at).num_milliseconds();
        match report.outcome {
            SyncOutcome::Busy => Err(
                "another run holds the connection; its changed Cases are fetched after it".into(),
            ),
            SyncOutcome::MoreWork => {
                Err("time ran out before every changed Case was fetched".into())
            }
            SyncOutcome::Done => {
                tracing::info!(
                    cases = item.case_ids.len(),
                    fetched = report.counts.fetched,
                    created = report.counts.created,
                    updated = report.counts.updated,
                    api_calls = report.counts.api_calls,
                    since_commit_ms = lag_ms,
                    "changed Cases imported"
                );
                Ok(())
            }
            outcome => {
                tracing::warn!(
                    %outcome,
                    error = report.error.as_deref().unwrap_or(""),
                    "changed Cases not fetched; the polling sync covers them"
                );
                Ok(())
            }
        }
    }

    /// Puts the connection's data points stored before the change index existed into it.
    async fn index_points(
        &self,
        item: &WorkItem,
        budget: Duration,
        abandon_after: Duration,
    ) -> Result<(), String> {
        let id = &item.connection_id;
        let done =
            match tokio::time::timeout(abandon_after, self.engine.index_points(id, budget)).await {
                Ok(Ok(Some(done))) => done,
                Ok(Ok(None)) => {
                    tracing::info!("a run holds the connection; the next tick indexes its points");
                    return Ok(());
                }
                Ok(Err(e)) => return Err(format!("could not index the data points: {e}")),
                Err(_) => return Err("indexing did not finish within the invocation".into()),
            };
        match work::follow_up_indexing(item, done, self.clock.now()) {
            FollowUp::Continue(next) => {
                if let Err(e) = self.queue.enqueue(std::slice::from_ref(&next)).await {
                    tracing::warn!(error = %e, "could not queue the rest of the indexing; the next tick does");
                }
                tracing::info!("data points partly indexed; continuing");
            }
            _ => tracing::info!("every data point of the connection is indexed"),
        }
        Ok(())
    }

    async fn after_run(&self, item: &WorkItem, report: &SyncReport) {
        let elapsed_ms = (report.finished_at - report.started_at)
            .num_milliseconds()
            .max(0);
        let error = report.error.as_deref().unwrap_or("");
        match work::follow_up(item, report, self.clock.now()) {
            FollowUp::Continue(next) => {
                match self.queue.enqueue(std::slice::from_ref(&next)).await {
                    Ok(()) => tracing::info!(
                        outcome = %report.outcome,
                        created = report.counts.created,
                        elapsed_ms,
                        "more work left: continuation queued"
                    ),
                    Err(e) => tracing::warn!(
                        error = %e,
                        "more work left, but the continuation could not be queued; the next \
                         tick resumes from the cursor"
                    ),
                }
                return;
            }
            FollowUp::GiveUp(reason) => {
                tracing::warn!(%reason, "more work left, but no continuation: the next tick resumes from the cursor");
                return;
            }
            FollowUp::Nothing => {}
        }
        match report.outcome {
            SyncOutcome::Done | SyncOutcome::MoreWork => {
                tracing::info!(outcome = %report.outcome, created = report.counts.created, updated = report.counts.updated, elapsed_ms, "synced");
            }
            SyncOutcome::Busy | SyncOutcome::Disconnected => {
                tracing::info!(outcome = %report.outcome, %error, "acknowledged");
            }
            SyncOutcome::NeedsReauth | SyncOutcome::RateLimited | SyncOutcome::Failed => {
                tracing::warn!(outcome = %report.outcome, %error, "acknowledged; recorded on the connection");
            }
        }
    }

    /// Moves a message that can never be processed to the dead-letter queue.
    async fn dead_letter(&self, record: &SqsMessage, reason: &str, receive_count: u32) -> Verdict {
        let message = Received {
            message_id: record.message_id.as_deref().unwrap_or(""),
            receipt_handle: record.receipt_handle.as_deref(),
            group_id: group_of(record),
            body: record.body.as_deref().unwrap_or(""),
        };
        match self.queue.dead_letter(&message, reason).await {
            Ok(()) => {
                tracing::error!(%reason, "poison message moved to the dead-letter queue");
                Verdict::Done
            }
            Err(e) => {
                let after = self.timing.retry_after(receive_count);
                tracing::error!(
                    %reason,
                    error = %e,
                    "poison message could not be moved to the dead-letter queue; reported failed \
                     so that the redrive policy moves it"
                );
                Verdict::Retry { after }
            }
        }
    }
}

/// What becomes of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Acknowledged: Lambda deletes it.
    Done,
    /// Reported failed, visible again after `after`.
    Retry { after: Duration },
}

/// The Lambda handler.
pub async fn handle(
    worker: &Worker,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    let deadline = deadline_of(&event.context);
    Ok(worker.process(&event.payload.records, deadline).await)
}

/// The invocation's deadline as an `Instant`.
pub fn deadline_of(context: &lambda_runtime::Context) -> Instant {
    let left = context
        .deadline()
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    Instant::now() + left
}

/// Longest reason kept: a decoding error quotes the offending input, which has no business
/// filling the logs.
const MAX_REASON: usize = 300;

/// The work item in a body, or why there is none.
fn decode(body: Option<&str>) -> Result<WorkItem, String> {
    let body = body
        .filter(|b| !b.trim().is_empty())
        .ok_or_else(|| "the message has no body".to_owned())?;
    serde_json::from_str(body).map_err(|e| {
        let mut reason = format!("the body is not a work item: {e}");
        if reason.len() > MAX_REASON {
            let mut end = MAX_REASON;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
            reason.push('…');
        }
        reason
    })
}

fn group_of(record: &SqsMessage) -> &str {
    record
        .attributes
        .get("MessageGroupId")
        .or(record.message_id.as_ref())
        .map_or("", String::as_str)
}

fn receive_count(record: &SqsMessage) -> u32 {
    record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_work_item_decodes_and_anything_else_is_a_reason() {
        let ok = decode(Some(
            r#"{"connection_id":"conn_0123456789abcdef0123456789abcdef","kind":"tick","enqueued_at":"2024-03-04T17:00:00Z"}"#,
        ))
        .unwrap();
        assert_eq!(ok.kind, WorkKind::Tick);
        assert_eq!(decode(None).unwrap_err(), "the message has no body");
        assert_eq!(decode(Some("  ")).unwrap_err(), "the message has no body");
        let bad_id = decode(Some(
            r#"{"connection_id":"nope","kind":"tick","enqueued_at":"2024-03-04T17:00:00Z"}"#,
        ))
        .unwrap_err();
        assert!(bad_id.contains("invalid connection id"), "{bad_id}");
        let huge = format!("\"{}\"", "x".repeat(10_000));
        assert!(decode(Some(&huge)).unwrap_err().len() <= MAX_REASON + 3);
    }

    #[test]
    fn retries_back_off_by_receive_count_up_to_a_cap() {
        let t = Timing::default();
        assert_eq!(t.retry_after(1), Duration::from_secs(60));
        assert_eq!(t.retry_after(2), Duration::from_secs(180));
        assert_eq!(t.retry_after(3), Duration::from_secs(540));
        assert_eq!(t.retry_after(4), Duration::from_secs(900));
        assert_eq!(t.retry_after(u32::MAX), Duration::from_secs(900));
        assert_eq!(t.retry_after(0), Duration::from_secs(60));
    }

    #[test]
    fn a_past_deadline_leaves_no_time() {
        let context = lambda_runtime::Context::default();
        assert!(deadline_of(&context) <= Instant::now());
    }
}
