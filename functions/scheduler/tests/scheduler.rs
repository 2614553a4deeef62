//! The scheduler against moto's DynamoDB and SQS FIFO, driven by real EventBridge payloads.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use casesync_aws::testing::{Moto, moto};
use casesync_aws::{DynamoConnectionStore, Metrics, QueueOptions, SqsWorkQueue, create_queue};
use casesync_core::domain::{
    ApiVersion, BackfillWindow, ChannelName, Connection, ConnectionId, ConnectionState,
    InstanceUrl, LoginUrl, QueueScope,
};
use casesync_core::ports::{ConnectionWriter, StateWriter, SystemClock, WorkItem, WorkKind};
use casesync_scheduler::{Scheduler, TickSummary, handle};
use chrono::{DateTime, Utc};
use lambda_runtime::{Context, LambdaEvent};

struct Fixture {
    aws: Moto,
    store: Arc<DynamoConnectionStore>,
    queue_url: String,
    scheduler: Scheduler,
}

async fn fixture(label: &str) -> Fixture {
    let aws = moto().await;
    let names = aws.tables(label).await;
    let queue = create_queue(&aws.sqs(), &names.queue, &QueueOptions::default())
        .await
        .expect("the queue is created");
    let store = Arc::new(DynamoConnectionStore::new(
        aws.dynamodb(),
        &names.tables.connections,
    ));
    let metrics = Arc::new(Metrics::new());
    let work_queue = SqsWorkQueue::new(aws.sqs(), &queue.queue_url).with_metrics(metrics.clone());
    let scheduler = Scheduler::new(
        store.clone(),
        Arc::new(work_queue),
        metrics,
        Arc::new(SystemClock),
    );
    Fixture {
        aws,
        store,
        queue_url: queue.queue_url,
        scheduler,
    }
}

impl Fixture {
    async fn connection(&self, state: ConnectionState) -> ConnectionId {
        let c = Connection::new(
            ConnectionId::new_random(),
            ChannelName::parse("support").unwrap(),
            LoginUrl::parse("https://login.salesforce.com").unwrap(),
            InstanceUrl::parse("https://acme.my.salesforce.com").unwrap(),
            ApiVersion::DEFAULT,
            QueueScope::parse("all").unwrap(),
            BackfillWindow::parse("30d").unwrap(),
            Utc::now(),
        );
        self.store.insert_connection(&c).await.unwrap();
        if state != ConnectionState::Active {
            self.store
                .set_state(&c.id, state, Some("test"))
                .await
                .unwrap();
        }
        c.id
    }

    async fn invoke(&self, time: &str) -> TickSummary {
        handle(&self.scheduler, schedule_event(time))
            .await
            .expect("the tick succeeds")
    }

    /// Every message in the queue (received, never deleted: FIFO deduplication in moto only
    /// compares with messages still in the queue), with its group id.
    async fn messages(&self) -> Vec<(String, WorkItem)> {
        let sqs = self.aws.sqs();
        let mut out = Vec::new();
        loop {
            let got = sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .visibility_timeout(600)
                .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
                .send()
                .await
                .unwrap();
            let batch = got.messages.unwrap_or_default();
            if batch.is_empty() {
                break;
            }
            for m in batch {
                let group = m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                    .cloned()
                    .unwrap_or_default();
                let item: WorkItem = serde_json::from_str(m.body().unwrap()).unwrap();
                out.push((group, item));
            }
        }
        out
    }

    async fn queue_depth(&self) -> u64 {
        let attrs = self
            .aws
            .sqs()
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .unwrap();
        attrs
            .attributes
            .and_then(|a| {
                a.get(&QueueAttributeName::ApproximateNumberOfMessages)
                    .cloned()
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// The payload EventBridge sends for a scheduled rule.
fn schedule_event(time: &str) -> LambdaEvent<EventBridgeEvent> {
    let payload = serde_json::json!({
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": time,
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/casesync-Tick"],
        "detail": {}
    });
    LambdaEvent::new(
        serde_json::from_value(payload).expect("a valid EventBridge event"),
        Context::default(),
    )
}

#[tokio::test]
async fn a_tick_queues_exactly_one_message_per_active_connection() {
    // Given active, disconnected and needs-reauth connections
    let f = fixture("sched-one").await;
    let mut active = Vec::new();
    for _ in 0..3 {
        active.push(f.connection(ConnectionState::Active).await);
    }
    f.connection(ConnectionState::Disconnected).await;
    f.connection(ConnectionState::NeedsReauth).await;

    // When the schedule fires
    let summary = f.invoke("2024-03-04T17:01:00Z").await;

    // Then each active connection has one tick, in its own message group, stamped with the
    // event's time; the others have none
    assert_eq!(summary.connections, 5);
    assert_eq!(summary.sent, 3);
    assert_eq!(summary.skipped_disconnected, 1);
    assert_eq!(summary.skipped_needs_reauth, 1);
    assert_eq!(summary.send_calls, 1);
    let at: DateTime<Utc> = "2024-03-04T17:01:00Z".parse().unwrap();
    let messages = f.messages().await;
    let mut by_connection: BTreeMap<ConnectionId, usize> = BTreeMap::new();
    for (group, item) in &messages {
        assert_eq!(group, item.connection_id.as_str());
        assert_eq!(item.kind, WorkKind::Tick);
        assert_eq!(item.enqueued_at, at);
        *by_connection.entry(item.connection_id.clone()).or_default() += 1;
    }
    active.sort();
    assert_eq!(by_connection.keys().cloned().collect::<Vec<_>>(), active);
    assert!(by_connection.values().all(|n| *n == 1), "{by_connection:?}");
}

#[tokio::test]
async fn a_retried_tick_is_deduplicated_and_the_next_tick_is_not() {
    // Given two active connections and a tick already queued
    let f = fixture("sched-dedup").await;
    f.connection(ConnectionState::Active).await;
    f.connection(ConnectionState::Active).await;
    f.invoke("2024-03-04T17:01:00Z").await;
    assert_eq!(f.queue_depth().await, 2);

    // When Lambda retries the same event
    let retried = f.invoke("2024-03-04T17:01:00Z").await;

    // Then the sends succeed but SQS keeps one message per connection
    assert_eq!(retried.sent, 2);
    assert_eq!(f.queue_depth().await, 2);

    // And the next scheduled event is new work
    f.invoke("2024-03-04T17:02:00Z").await;
    assert_eq!(f.queue_depth().await, 4);
}

#[tokio::test]
async fn many_connections_go_out_in_batches_of_ten() {
    // Given 23 active connections
    let f = fixture("sched-many").await;
    for _ in 0..23 {
        f.connection(ConnectionState::Active).await;
    }

    // When the schedule fires
    let summary = f.invoke("2024-03-04T17:01:00Z").await;

    // Then three SendMessageBatch calls carry the 23 ticks
    assert_eq!(summary.sent, 23);
    assert_eq!(summary.send_calls, 3);
    assert_eq!(f.messages().await.len(), 23);
}

#[tokio::test]
async fn no_connections_means_no_messages() {
    let f = fixture("sched-none").await;
    let summary = f.invoke("2024-03-04T17:01:00Z").await;
    assert_eq!(
        summary,
        TickSummary {
            elapsed_ms: summary.elapsed_ms,
            ..TickSummary::default()
        }
    );
    assert_eq!(f.queue_depth().await, 0);
}

#[tokio::test]
async fn an_unreachable_queue_fails_the_invocation_so_lambda_retries_it() {
    // Given a connection and a queue URL that does not exist
    let f = fixture("sched-noqueue").await;
    f.connection(ConnectionState::Active).await;
    let metrics = Arc::new(Metrics::new());
    let scheduler = Scheduler::new(
        f.store.clone(),
        Arc::new(
            SqsWorkQueue::new(
                f.aws.sqs(),
                format!("{}/123456789012/missing.fifo", f.aws.endpoint_url()),
            )
            .with_metrics(metrics.clone()),
        ),
        metrics,
        Arc::new(SystemClock),
    );

    // When the schedule fires, then the invocation fails (Lambda's async retry sends it again)
    let err = handle(&scheduler, schedule_event("2024-03-04T17:01:00Z"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("could not queue"), "{err}");
}
