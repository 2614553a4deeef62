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
//! Configuration: `CONNECTIONS_TABLE`, `WORK_QUEUE_URL` (see [`casesync_aws::config`]).

use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use casesync_aws::config::{CONNECTIONS_TABLE, ConfigError, Env, WORK_QUEUE_URL};
use casesync_aws::{DynamoConnectionStore, Metrics, SqsWorkQueue};
use casesync_core::domain::ConnectionState;
use casesync_core::ports::{
    Clock, ConnectionReader, StoreError, SystemClock, WorkItem, WorkKind, WorkQueue,
};
use chrono::{DateTime, Utc};
use lambda_runtime::LambdaEvent;
use serde::Serialize;

/// What the scheduler reads from its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerConfig {
    pub connections_table: String,
    pub work_queue_url: String,
}

impl SchedulerConfig {
    /// Reads the process environment; every missing variable is reported at once.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::read(Env::new())
    }

    pub fn read(mut env: Env) -> Result<Self, ConfigError> {
        let config = Self {
            connections_table: env.required(CONNECTIONS_TABLE),
            work_queue_url: env.required(WORK_QUEUE_URL),
        };
        env.finish().map(|()| config)
    }
}

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
    pub fn from_sdk(sdk: &aws_config::SdkConfig, config: &SchedulerConfig) -> Self {
        let metrics = Arc::new(Metrics::new());
        let connections = DynamoConnectionStore::new(
            aws_sdk_dynamodb::Client::new(sdk),
            &config.connections_table,
        );
        let queue = SqsWorkQueue::new(aws_sdk_sqs::Client::new(sdk), &config.work_queue_url)
            .with_metrics(metrics.clone());
        Self::new(
            Arc::new(connections),
            Arc::new(queue),
            metrics,
            Arc::new(SystemClock),
        )
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
        let mut items = Vec::with_capacity(connections.len());
        for connection in connections {
            match connection.state {
                ConnectionState::Active => items.push(WorkItem {
                    connection_id: connection.id,
                    kind: WorkKind::Tick,
                    enqueued_at: at,
                }),
                ConnectionState::Disconnected => summary.skipped_disconnected += 1,
                ConnectionState::NeedsReauth => summary.skipped_needs_reauth += 1,
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_missing_variable_is_reported_at_once() {
        let err = SchedulerConfig::read(Env::from_fn(|_| None)).unwrap_err();
        assert_eq!(err.missing, vec![CONNECTIONS_TABLE, WORK_QUEUE_URL]);
    }

    #[test]
    fn the_configuration_comes_from_the_contract_names() {
        let config = SchedulerConfig::read(Env::from_fn(|name| match name {
            "CONNECTIONS_TABLE" => Some("conns".into()),
            "WORK_QUEUE_URL" => Some("https://sqs.example/q.fifo".into()),
            _ => None,
        }))
        .unwrap();
        assert_eq!(config.connections_table, "conns");
        assert_eq!(config.work_queue_url, "https://sqs.example/q.fifo");
    }
}
