use std::sync::Arc;

use aws_sdk_sqs::types::MessageSystemAttributeName;
use casesync_aws::{Metrics, QueueOptions, SqsWorkQueue, create_queue, deduplication_id};
use casesync_core::domain::ConnectionId;
use casesync_core::ports::{WorkItem, WorkKind, WorkQueue};

use crate::common::t;

struct Received {
    item: WorkItem,
    group: String,
    dedup: String,
}

/// Receives and deletes everything visible, 10 at a time, until a receive comes back empty.
async fn drain(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<Received> {
    let mut out = Vec::new();
    loop {
        let got = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        let messages = got.messages.unwrap_or_default();
        if messages.is_empty() {
            return out;
        }
        for m in messages {
            let attrs = m.attributes.clone().unwrap_or_default();
            out.push(Received {
                item: serde_json::from_str(m.body().unwrap()).unwrap(),
                group: attrs[&MessageSystemAttributeName::MessageGroupId].clone(),
                dedup: attrs[&MessageSystemAttributeName::MessageDeduplicationId].clone(),
            });
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn twenty_five_items_go_in_three_batches_grouped_by_connection_and_deduplicated() {
    let aws = casesync_aws::testing::moto().await;
    let sqs = aws.sqs();
    let names = aws.unique_names("queue");
    let urls = create_queue(&sqs, &names.queue, &QueueOptions::default())
        .await
        .unwrap();
    let metrics = Arc::new(Metrics::new());
    let queue = SqsWorkQueue::new(sqs.clone(), &urls.queue_url).with_metrics(metrics.clone());
    let items: Vec<WorkItem> = (0..25)
        .map(|i| WorkItem {
            connection_id: ConnectionId::new_random(),
            kind: if i % 2 == 0 {
                WorkKind::Tick
            } else {
                WorkKind::Continuation
            },
            enqueued_at: t("2024-03-05T10:00:00Z"),
            idle_runs: 0,
            case_ids: Vec::new(),
        })
        .collect();

    // When 25 items are enqueued, and the send is retried (the caller saw a timeout)
    queue.enqueue(&items).await.unwrap();
    queue.enqueue(&items).await.unwrap();

    // Then each send took 3 SendMessageBatch calls (10 + 10 + 5)
    assert_eq!(metrics.snapshot().send_message_batch_calls, 6);
    // and every item arrives once, in its connection's group, with its deduplication id
    let mut received = drain(&sqs, &urls.queue_url).await;
    received.sort_by(|a, b| a.item.connection_id.cmp(&b.item.connection_id));
    let mut expected = items.clone();
    expected.sort_by(|a, b| a.connection_id.cmp(&b.connection_id));
    assert_eq!(
        received.iter().map(|r| r.item.clone()).collect::<Vec<_>>(),
        expected
    );
    for r in &received {
        assert_eq!(r.group, r.item.connection_id.as_str());
        assert_eq!(r.dedup, deduplication_id(&r.item));
    }

    // But a later tick of the same connection is a new message
    let later = WorkItem {
        enqueued_at: t("2024-03-05T10:05:00Z"),
        ..items[0].clone()
    };
    queue.enqueue(std::slice::from_ref(&later)).await.unwrap();
    let got = drain(&sqs, &urls.queue_url).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].item, later);
}

#[tokio::test]
async fn two_items_of_one_connection_are_never_handed_out_at_once() {
    let aws = casesync_aws::testing::moto().await;
    let sqs = aws.sqs();
    let names = aws.unique_names("queue-group");
    let urls = create_queue(&sqs, &names.queue, &QueueOptions::default())
        .await
        .unwrap();
    let queue = SqsWorkQueue::new(sqs.clone(), &urls.queue_url);
    let id = ConnectionId::new_random();
    let first = WorkItem {
        connection_id: id.clone(),
        kind: WorkKind::Tick,
        enqueued_at: t("2024-03-05T10:00:00Z"),
        idle_runs: 0,
        case_ids: Vec::new(),
    };
    let second = WorkItem {
        kind: WorkKind::Continuation,
        ..first.clone()
    };
    queue.enqueue(&[first.clone(), second]).await.unwrap();

    // A receiver gets the first item; while it is in flight, no other receiver gets the second
    let got = sqs
        .receive_message()
        .queue_url(&urls.queue_url)
        .max_number_of_messages(1)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(got.len(), 1);
    let item: WorkItem = serde_json::from_str(got[0].body().unwrap()).unwrap();
    assert_eq!(item, first);
    let again = sqs
        .receive_message()
        .queue_url(&urls.queue_url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert!(again.is_empty());
}

#[tokio::test]
async fn the_queue_is_fifo_with_a_fifo_dead_letter_queue() {
    let aws = casesync_aws::testing::moto().await;
    let sqs = aws.sqs();
    let names = aws.unique_names("queue-attrs");
    assert!(
        create_queue(&sqs, "not-fifo", &QueueOptions::default())
            .await
            .is_err()
    );
    let urls = create_queue(&sqs, &names.queue, &QueueOptions::default())
        .await
        .unwrap();
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&urls.queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    use aws_sdk_sqs::types::QueueAttributeName as A;
    assert_eq!(attrs[&A::FifoQueue], "true");
    let redrive: serde_json::Value = serde_json::from_str(&attrs[&A::RedrivePolicy]).unwrap();
    assert!(
        redrive["deadLetterTargetArn"]
            .as_str()
            .unwrap()
            .ends_with("-dlq.fifo")
    );
    assert!(urls.dead_letter_queue_url.ends_with("-dlq.fifo"));
}
