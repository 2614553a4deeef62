//! Lambda: fans out one SQS message per active connection.
//!
//! An EventBridge rule invokes it on a schedule (`rate(1 minute)` by default). Each event is a
//! *tick*: the scheduler lists the connections and sends one
//! `WorkItem { kind: Tick, enqueued_at: <the event's time> }` per **active** connection to the
//! FIFO work queue ([`SqsWorkQueue`]: `SendMessageBatch`, 10 entries a call, calls in parallel).
//! Disconnected and needs-reauth connections get nothing: a sync could only fail for them.
//!
//! The event's time, not the clock, stamps the items: the queue's deduplication id is derived
//! from (connection, kind, enqueued_at), so when Lambda retries a failed invocation of the same
//! event within SQS's 5-minute deduplication window, the items it already sent are not queued a
//! second time.
//!
//! Which connections get a tick is the core's rule ([`Targets`]); this crate is the wiring.
//! Configuration: `CONNECTIONS_TABLE`, `WORK_QUEUE_URL` (see [`casesync_aws::config`]).

use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use casesync_aws::{Env, Metrics, StartupError, Wiring};
use casesync_core::manage::work::Targets;
use casesync_core::ports::{Clock, ConnectionReader, StoreError, SystemClock, WorkQueue};
use chrono::{DateTime, Utc};
use lambda_runtime::LambdaEvent;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum TickError {
    #[error("could not list the connections: {0}")]
    List(#[source] StoreError),
    /// Some items may have been sent; a retry of the same event sends them again, and SQS
    /// drops the duplicates.
    #[error("could not queue the work items of {connections} connections: {source}")]
    Send {
        connections: usize,
        #[source]
        source: StoreError,
    },
}

/// What one tick did (also the function's result, visible to `aws lambda invoke`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TickSummary {
    pub connections: usize,
    pub sent: usize,
    pub skipped_disconnected: usize,
    pub skipped_needs_reauth: usize,
    /// `SendMessageBatch` calls, retries included.
    pub send_calls: u64,
    pub elapsed_ms: u64,
}

/// The scheduler's dependencies, built once per process.
pub struct Scheduler {
    connections: Arc<dyn ConnectionReader>,
    queue: Arc<dyn WorkQueue>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
}

impl Scheduler {
    /// `metrics` is the one the queue adapter counts its calls into.
    pub fn new(
        connections: Arc<dyn ConnectionReader>,
        queue: Arc<dyn WorkQueue>,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            connections,
            queue,
            metrics,
            clock,
        }
    }

    /// The production wiring: DynamoDB connections, the SQS FIFO work queue.
    pub fn from_env(sdk: &aws_config::SdkConfig, env: Env) -> Result<Self, StartupError> {
        let mut wiring = Wiring::new(sdk, env);
        let connections = wiring.connections();
        let queue = wiring.work_queue();
        let metrics = wiring.metrics();
        wiring.finish()?;
        Ok(Self::new(
            connections,
            queue,
            metrics,
            Arc::new(SystemClock),
        ))
    }

    /// Queues one tick, stamped `at`, for every active connection.
    pub async fn tick(&self, at: DateTime<Utc>) -> Result<TickSummary, TickError> {
        let started = Instant::now();
        let calls_before = self.metrics.snapshot().send_message_batch_calls;
        let connections = self
            .connections
            .list_connections()
            .await
            .map_err(TickError::List)?;
        let mut summary = TickSummary {
            connections: connections.len(),
            ..TickSummary::default()
        };
        let targets = Targets::split(connections);
        summary.skipped_disconnected = targets.disconnected.len();
        summary.skipped_needs_reauth = targets.needs_reauth.len();
        let items = targets.work(at);
        let sent = self.queue.enqueue(&items).await;
        summary.send_calls = self.metrics.snapshot().send_message_batch_calls - calls_before;
        summary.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if let Err(source) = sent {
            tracing::error!(
                connections = summary.connections,
                to_send = items.len(),
                send_calls = summary.send_calls,
                elapsed_ms = summary.elapsed_ms,
                error = %source,
                "tick failed: work items not (all) queued"
            );
            return Err(TickError::Send {
                connections: items.len(),
                source,
            });
        }
        summary.sent = items.len();
        tracing::info!(
            tick = %at,
            connections = summary.connections,
            sent = summary.sent,
            skipped_disconnected = summary.skipped_disconnected,
            skipped_needs_reauth = summary.skipped_needs_reauth,
            send_calls = summary.send_calls,
            elapsed_ms = summary.elapsed_ms,
            "tick queued"
        );
        Ok(summary)
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

/// The Lambda handler: one tick per schedule event, stamped with the event's `time`.
pub async fn handle(
    scheduler: &Scheduler,
    event: LambdaEvent<EventBridgeEvent>,
) -> Result<TickSummary, lambda_runtime::Error> {
    let at = match event.payload.time {
        Some(t) => t,
        None => {
            // Not a scheduled event (a hand-made test invocation): a retry of it would not be
            // deduplicated, which is harmless.
            let now = scheduler.now();
            tracing::warn!(%now, "the event has no time; stamping the tick with the clock");
            now
        }
    };
    Ok(scheduler.tick(at).await?)
}
