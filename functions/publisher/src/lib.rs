//! Lambda `publisher`: one change event on the stack's EventBridge bus for each data point
//! created, updated (its content changed) or deleted, derived from the data points table's
//! DynamoDB stream, so that a write and its event cannot diverge. The event contract is
//! `casesync_core::events`; which stream record stands for which event, `casesync_aws::events`.
//!
//! The stream's event source mapping reports batch item failures. A batch is read in order;
//! records that stand for no event (body parts, rewrites that leave the content alone) are
//! passed over. When `PutEvents` refuses an event, the first failed record is reported, and
//! Lambda delivers the batch again from it (the events before it were published; the ones after
//! it are sent again: delivery is at least once). After the mapping's retries, the batch goes
//! to the dead-letter queue, whose depth raises an alarm: an event is never dropped silently.
//!
//! Configuration: `EVENT_BUS_NAME`.

use std::time::Instant;

use aws_lambda_events::dynamodb::Event;
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use casesync_aws::events::{self, Change, EventBridgePublisher};
use casesync_aws::{Env, StartupError, Wiring};
use lambda_runtime::LambdaEvent;

/// The publisher's dependencies, built once per process.
pub struct Publisher {
    events: EventBridgePublisher,
}

impl Publisher {
    pub fn new(events: EventBridgePublisher) -> Self {
        Self { events }
    }

    /// The production wiring: the EventBridge client from one `SdkConfig`, `EVENT_BUS_NAME`.
    pub fn from_env(sdk: &aws_config::SdkConfig, env: Env) -> Result<Self, StartupError> {
        let mut wiring = Wiring::new(sdk, env);
        let events = wiring.event_bus();
        wiring.finish()?;
        Ok(Self::new(events))
    }

    /// Publishes the events of one batch of stream records; the response names the first
    /// record whose event could not be published (Lambda delivers again from there).
    pub async fn process(&self, event: Event) -> DynamoDbEventResponse {
        let started = Instant::now();
        let records = event.records.len();
        // Each event with the sequence number of its record.
        let mut changes: Vec<(String, Change)> = Vec::new();
        let mut failed: Option<String> = None;
        for record in event.records {
            let sequence = record.change.sequence_number.clone().unwrap_or_default();
            let old = events::image(record.change.old_image);
            let new = events::image(record.change.new_image);
            match events::change_event(
                &record.event_name,
                &old,
                &new,
                &sequence,
                record.change.approximate_creation_date_time,
            ) {
                Ok(Some(change)) => changes.push((sequence, change)),
                Ok(None) => {}
                Err(e) => {
                    // A record we cannot read now will not read later either: report it, so
                    // that it ends in the dead-letter queue after the retries, not dropped.
                    tracing::error!(error = %e, sequence, "unreadable stream record");
                    failed = Some(sequence);
                    break;
                }
            }
        }
        let to_send: Vec<Change> = changes.iter().map(|(_, c)| c.clone()).collect();
        let results = self.events.publish(&to_send).await;
        let mut published = 0usize;
        for ((sequence, change), result) in changes.iter().zip(results) {
            match result {
                Ok(()) => published += 1,
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        sequence,
                        id = %change.detail.id,
                        kind = change.kind.detail_type(),
                        "could not publish an event; the batch is delivered again from it"
                    );
                    // The first failure in stream order decides where Lambda resumes.
                    if failed.is_none() {
                        failed = Some(sequence.clone());
                    }
                    break;
                }
            }
        }
        let mut response = DynamoDbEventResponse::default();
        if let Some(sequence) = failed {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = Some(sequence);
            response.batch_item_failures.push(failure);
        }
        tracing::info!(
            records,
            events = changes.len(),
            published,
            failed = !response.batch_item_failures.is_empty(),
            bus = self.events.bus(),
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "stream batch handled"
        );
        response
    }
}

/// The Lambda handler.
pub async fn handle(
    publisher: &Publisher,
    event: LambdaEvent<Event>,
) -> Result<DynamoDbEventResponse, lambda_runtime::Error> {
    Ok(publisher.process(event.payload).await)
}
