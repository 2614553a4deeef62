//! Lambda `change-router`: Salesforce change events, relayed by Event Relay to the org's
//! EventBridge partner bus, become work items on the FIFO work queue, in each connection's
//! message group, so the one-run-per-connection guarantee holds for them too.
//!
//! A rule on the partner bus sends the `Case` (and `EmailMessage`) change events to an SQS
//! queue; this function consumes it in batches (a short batching window gathers a burst). A
//! batch is parsed ([`casesync_core::changes::parse_event`]), routed to the active connections
//! of each event's org and coalesced ([`casesync_core::changes::route`]), and queued. An
//! EventBridge rule cannot do this itself: its SQS target takes one static message group, and
//! one partner bus serves a whole org, whose events may concern several connections.
//!
//! Failures: an event that is not a change event is reported failed (the queue's redrive policy
//! moves it to its dead-letter queue after a few receives, for someone to read: nothing is
//! dropped silently); when the connections cannot be read or the work not queued, every record
//! is reported failed and comes back. Nothing is lost either way: the polling sync imports every
//! closed Case regardless, these events only make it sooner.
//!
//! Configuration: `CONNECTIONS_TABLE`, `WORK_QUEUE_URL`.

use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsMessage};
use casesync_aws::{Env, StartupError, Wiring};
use casesync_core::changes::{self, ChangeEvent};
use casesync_core::ports::{Clock, ConnectionReader, SystemClock, WorkQueue};

/// The router's dependencies, built once per process.
pub struct Router {
    pub connections: Arc<dyn ConnectionReader>,
    pub queue: Arc<dyn WorkQueue>,
    pub clock: Arc<dyn Clock>,
}

impl Router {
    /// The production wiring: `CONNECTIONS_TABLE`, `WORK_QUEUE_URL`.
    pub fn from_env(sdk: &aws_config::SdkConfig, env: Env) -> Result<Self, StartupError> {
        let mut wiring = Wiring::new(sdk, env);
        let connections = wiring.connections();
        let queue = wiring.work_queue();
        wiring.finish()?;
        Ok(Self {
            connections,
            queue,
            clock: Arc::new(SystemClock),
        })
    }

    /// Routes one batch; the response names the records to deliver again.
    pub async fn process(&self, records: &[SqsMessage]) -> SqsBatchResponse {
        let started = Instant::now();
        let mut response = SqsBatchResponse::default();
        let mut events: Vec<ChangeEvent> = Vec::with_capacity(records.len());
        for record in records {
            match changes::parse_event(record.body.as_deref().unwrap_or("")) {
                Ok(event) => events.push(event),
                Err(e) => {
                    tracing::warn!(
                        message_id = record.message_id.as_deref().unwrap_or(""),
                        error = %e,
                        "not a Salesforce change event; it goes to the dead-letter queue"
                    );
                    response.add_failure(record.message_id.clone().unwrap_or_default());
                }
            }
        }
        if events.is_empty() {
            return response;
        }
        let all_failed = |response: &mut SqsBatchResponse| {
            response.batch_item_failures.clear();
            for record in records {
                response.add_failure(record.message_id.clone().unwrap_or_default());
            }
        };
        let connections = match self.connections.list_connections().await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "could not read the connections; the batch comes back");
                all_failed(&mut response);
                return response;
            }
        };
        let routed = changes::route(&events, &connections, self.clock.now());
        if let Err(e) = self.queue.enqueue(&routed.items).await {
            tracing::error!(error = %e, "could not queue the work; the batch comes back");
            all_failed(&mut response);
            return response;
        }
        for (org, count) in &routed.unrouted {
            tracing::info!(org = %org, events = count, "no active connection imports this org; events passed over");
        }
        let cases: usize = routed.items.iter().map(|w| w.case_ids.len()).sum();
        tracing::info!(
            messages = records.len(),
            events = events.len(),
            work_items = routed.items.len(),
            cases,
            ignored = routed.ignored,
            failed = response.batch_item_failures.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "change events routed"
        );
        response
    }
}
