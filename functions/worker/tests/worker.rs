//! The worker over real protocols: moto's DynamoDB, Secrets Manager and SQS FIFO (with its
//! dead-letter queue), the Salesforce simulator over HTTP, and real `SqsEvent` payloads built
//! from messages received from the queue.

mod support;

use std::time::Duration;

use casesync_core::domain::ConnectionState;
use casesync_core::ports::{ConnectionWriter, StateWriter, WorkItem, WorkKind};
use casesync_core::sync::SyncOutcome;
use casesync_tests::{closed_case, minutes_ago};
use casesync_worker::{REASON_ATTRIBUTE, SOURCE_ID_ATTRIBUTE, Timing};
use chrono::{TimeDelta, Utc};
use sf_simulator::SimConfig;
use support::{Fault, FaultyDynamo, World, test_timing};

const PLENTY: Duration = Duration::from_secs(120);

fn work_item(body: &str) -> WorkItem {
    serde_json::from_str(body).expect("a work item")
}

#[tokio::test]
async fn a_tick_becomes_data_points_and_advances_the_cursor() {
    // Given a connected org with 12 closed Cases in the queue and a tick for it
    let w = World::with_cases("wk-basic", SimConfig::default(), 12).await;
    let c = w.connect().await;
    w.send(&c.id, WorkKind::Tick, Utc::now()).await;
    let worker = w.worker(test_timing());

    // When the event source delivers it
    let response = w.deliver(&worker, 1, PLENTY).await.expect("a message");

    // Then it is acknowledged, every Case is a data point, and the cursor is at the newest
    assert!(response.batch_item_failures.is_empty());
    w.assert_complete(&c.id).await;
    let after = w.connection(&c.id).await;
    let run = after.last_run.expect("the run is recorded");
    assert_eq!(run.outcome, SyncOutcome::Done);
    assert_eq!(run.counts.created, 12);
    let newest = w.expected().into_values().max().unwrap();
    assert_eq!(after.cursor.system_modstamp, newest);
    assert_eq!(
        w.queue_depth(&w.queue.queue_url).await,
        0,
        "nothing left to do"
    );
    assert_eq!(w.sim.stats().write_attempts, 0);
}

#[tokio::test]
async fn a_long_backfill_finishes_through_continuations() {
    // Given 60 Cases served 5 a page, 40 ms a call, and invocations that leave a 250 ms budget
    let config = SimConfig {
        page_size_cap: Some(5),
        latency: Duration::from_millis(40),
        ..SimConfig::default()
    };
    let w = World::with_cases("wk-backfill", config, 60).await;
    let c = w.connect().await;
    w.send(&c.id, WorkKind::Tick, Utc::now()).await;
    let timing = Timing {
        run_margin: Duration::from_secs(2),
        ..test_timing()
    };
    let worker = w.worker(timing);

    // When the event source delivers until the queue is empty
    let invocations = w.drain(&worker, Duration::from_millis(2250), 100).await;

    // Then several invocations, chained by continuations, imported every Case exactly once
    let delivered = w.delivered.lock().unwrap().clone();
    let continuations = delivered
        .iter()
        .filter(|b| work_item(b).kind == WorkKind::Continuation)
        .count();
    assert!(invocations >= 3, "{invocations} invocations");
    assert!(continuations >= 2, "{continuations} continuations");
    assert_eq!(continuations, invocations - 1, "one chain of continuations");
    w.assert_complete(&c.id).await;
    let after = w.connection(&c.id).await;
    assert_eq!(after.last_run.unwrap().outcome, SyncOutcome::Done);
}

#[tokio::test]
async fn a_poison_message_goes_to_the_dead_letter_queue_and_others_proceed() {
    // Given a connection with a tick queued, and an undecodable message in another group
    let w = World::with_cases("wk-poison", SimConfig::default(), 3).await;
    let c = w.connect().await;
    w.send_raw("{\"connection_id\": 42}", "garbage-group").await;
    w.send(&c.id, WorkKind::Tick, Utc::now()).await;
    let worker = w.worker(test_timing());
    let messages = w.receive_from(&w.queue.queue_url, 10).await;
    assert_eq!(messages.len(), 2);
    let poison_id = messages
        .iter()
        .find(|m| m.body() == Some("{\"connection_id\": 42}"))
        .and_then(|m| m.message_id())
        .unwrap()
        .to_owned();

    // When both are delivered in one batch
    let response = w.invoke(&worker, &messages, PLENTY).await;

    // Then both are acknowledged: the connection synced, the poison message sits in the DLQ
    // with its reason, and the work queue is empty (it will not be retried)
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    w.assert_complete(&c.id).await;
    let dead = w.receive_from(&w.queue.dead_letter_queue_url, 10).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body(), Some("{\"connection_id\": 42}"));
    let attrs = dead[0].message_attributes().unwrap();
    let reason = attrs[REASON_ATTRIBUTE].string_value().unwrap();
    assert!(reason.contains("the body is not a work item"), "{reason}");
    assert_eq!(
        attrs[SOURCE_ID_ATTRIBUTE].string_value(),
        Some(poison_id.as_str())
    );
    assert_eq!(w.queue_depth(&w.queue.queue_url).await, 0);
}

#[tokio::test]
async fn a_poison_message_that_cannot_be_dead_lettered_is_reported_failed() {
    // Given a worker whose DLQ URL is wrong
    let w = World::with_cases("wk-poison-nodlq", SimConfig::default(), 1).await;
    let worker = w.worker_with(
        w.aws.dynamodb(),
        format!("{}/123456789012/missing.fifo", w.aws.endpoint_url()),
        test_timing(),
    );
    w.send_raw("not json", "garbage-group").await;

    // When it is delivered, then it is reported failed: the redrive policy will move it
    let messages = w.receive_from(&w.queue.queue_url, 10).await;
    let response = w.invoke(&worker, &messages, PLENTY).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(
        response.batch_item_failures[0].item_identifier,
        messages[0].message_id().unwrap()
    );
}

#[tokio::test]
async fn a_stale_tick_is_skipped_without_calling_salesforce() {
    // Given a connection synced just now
    let w = World::with_cases("wk-stale", SimConfig::default(), 4).await;
    let c = w.connect().await;
    let queued_before_the_run = Utc::now() - TimeDelta::seconds(30);
    w.send(&c.id, WorkKind::Tick, Utc::now()).await;
    let worker = w.worker(test_timing());
    w.deliver(&worker, 1, PLENTY).await.expect("a message");
    let run_started = w.connection(&c.id).await.last_run.unwrap().started_at;
    assert!(run_started > queued_before_the_run);

    // When a tick queued before that run is delivered (it piled up behind it)
    w.sim.reset_stats();
    w.send(&c.id, WorkKind::Tick, queued_before_the_run).await;
    let response = w.deliver(&worker, 1, PLENTY).await.expect("a message");

    // Then it is acknowledged without a single Salesforce call and no new run
    assert!(response.batch_item_failures.is_empty());
    let stats = w.sim.stats();
    assert_eq!((stats.data_calls, stats.token_refresh), (0, 0), "{stats:?}");
    assert_eq!(
        w.connection(&c.id).await.last_run.unwrap().started_at,
        run_started
    );

    // And a continuation queued before it is skipped likewise
    w.send(&c.id, WorkKind::Continuation, queued_before_the_run)
        .await;
    w.deliver(&worker, 1, PLENTY).await.expect("a message");
    assert_eq!(w.sim.stats().data_calls, 0);

    // While a tick queued after that run does sync
    w.send(&c.id, WorkKind::Tick, Utc::now()).await;
    w.deliver(&worker, 1, PLENTY).await.expect("a message");
    assert!(w.sim.stats().data_calls > 0);
    assert!(w.connection(&c.id).await.last_run.unwrap().started_at > run_started);
}

#[tokio::test]
async fn disconnecting_mid_backfill_stops_ingestion_at_once() {
    // Given a backfill of 80 Cases, 5 a page, 150 ms a call
    let config = SimConfig {
        page_size_cap: Some(5),
        latency: Duration::from_millis(150),
        ..SimConfig::default()
    };
    let w = World::with_cases("wk-disconnect", config, 80).await;
    let c = w.connect().await;
    w.send(&c.id, WorkKind::Tick, Utc::now()).await;
    let worker = w.worker(test_timing());

    // When the user disconnects once the first points are stored
    let disconnect = async {
        loop {
            let stored = w.stored(&c.id).await.len();
            if stored > 0 {
                let pages_then = w.sim.stats().pages_served;
                w.connections
                    .set_state(&c.id, ConnectionState::Disconnected, Some("by the user"))
                    .await
                    .unwrap();
                return (stored, pages_then);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let (response, (stored_then, pages_then)) =
        tokio::join!(w.deliver(&worker, 1, PLENTY), disconnect);

    // Then the run stops at the next page: at most the page in flight and one prefetched are
    // read, at most one more page is written, and no continuation is queued
    assert!(response.unwrap().batch_item_failures.is_empty());
    let after = w.connection(&c.id).await;
    assert_eq!(after.last_run.unwrap().outcome, SyncOutcome::Disconnected);
    let stored_after = w.stored(&c.id).await.len();
    assert!(
        stored_after <= stored_then + 5,
        "{stored_then} stored at the disconnect, {stored_after} after"
    );
    assert!(stored_after < 80);
    let pages_after = w.sim.stats().pages_served;
    assert!(
        pages_after <= pages_then + 2,
        "{pages_then} pages at the disconnect, {pages_after} after"
    );
    assert_eq!(w.queue_depth(&w.queue.queue_url).await, 0);

    // And a tick that was already queued imports nothing
    w.sim.reset_stats();
    w.send(&c.id, WorkKind::Tick, Utc::now()).await;
    w.deliver(&worker, 1, PLENTY).await.expect("a message");
    assert_eq!(w.sim.stats().data_calls, 0);
    assert_eq!(w.stored(&c.id).await.len(), stored_after);
}

#[tokio::test]
async fn redelivered_and_duplicated_messages_import_nothing_twice() {
    // Given a connection with 8 Cases and one tick, delivered and acknowledged
    let w = World::with_cases("wk-dup", SimConfig::default(), 8).await;
    let c = w.connect().await;
    w.send(&c.id, WorkKind::Tick, Utc::now()).await;
    let worker = w.worker(test_timing());
    let messages = w.receive_from(&w.queue.queue_url, 1).await;
    w.invoke(&worker, &messages, PLENTY).await;
    let writes = w.metrics.snapshot().batch_write_item_requests;
    assert_eq!(writes, 8);

    // When SQS delivers the same message again (at-least-once delivery)
    w.sim.reset_stats();
    let again = w.handle_only(&worker, &messages, PLENTY).await;

    // Then it is acknowledged and nothing is read or written
    assert!(again.batch_item_failures.is_empty());
    assert_eq!(w.sim.stats().data_calls, 0);
    assert_eq!(w.metrics.snapshot().batch_write_item_requests, writes);

    // When two new Cases arrive and two fresh ticks reach two workers at the same moment
    // (two containers, as if FIFO ordering had been lost)
    w.sim.with_org(|o| {
        closed_case(o, &w.queue_id, minutes_ago(7), "New 1");
        closed_case(o, &w.queue_id, minutes_ago(6), "New 2");
    });
    let other = w.worker(test_timing());
    w.send(&c.id, WorkKind::Tick, Utc::now()).await;
    let first = w.receive_from(&w.queue.queue_url, 1).await;
    w.send(
        &c.id,
        WorkKind::Tick,
        Utc::now() + TimeDelta::milliseconds(1),
    )
    .await;
    let second = w.receive_from(&w.queue.queue_url, 1).await;
    let second = if second.is_empty() {
        // moto holds the group back while the first is in flight: deliver the same one twice
        first.clone()
    } else {
        second
    };
    let (a, b) = tokio::join!(
        w.invoke(&worker, &first, PLENTY),
        w.invoke(&other, &second, PLENTY)
    );

    // Then both are acknowledged and each new Case was written exactly once
    assert!(a.batch_item_failures.is_empty() && b.batch_item_failures.is_empty());
    w.assert_complete(&c.id).await;
    assert_eq!(w.metrics.snapshot().batch_write_item_requests, writes + 2);
}

#[tokio::test]
async fn dynamodb_throttling_reports_a_batch_item_failure_and_a_later_delivery_completes() {
    // Given a worker whose DynamoDB is throttling every request
    let w = World::with_cases("wk-throttle", SimConfig::default(), 10).await;
    let c = w.connect().await;
    let proxy = FaultyDynamo::start(w.aws.endpoint_url()).await;
    let worker = w.worker_with_dynamodb(proxy.client(&w.aws), test_timing());
    proxy.set(Fault::All);
    w.send(&c.id, WorkKind::Tick, Utc::now()).await;

    // When the tick is delivered
    let messages = w.receive_from(&w.queue.queue_url, 1).await;
    let response = w.invoke(&worker, &messages, PLENTY).await;

    // Then it is reported failed (and not deleted), and nothing was read from Salesforce
    assert_eq!(response.batch_item_failures.len(), 1);
    assert!(proxy.faulted.load(std::sync::atomic::Ordering::Relaxed) > 0);
    assert_eq!(w.sim.stats().data_calls, 0);
    assert_eq!(w.queue_depth(&w.queue.queue_url).await, 1);

    // When DynamoDB recovers and the event source delivers it again
    proxy.set(Fault::None);
    let redelivered = w.receive_from(&w.queue.queue_url, 1).await;
    assert_eq!(
        redelivered.len(),
        1,
        "visible again at once (visibility changed)"
    );
    assert_eq!(redelivered[0].message_id(), messages[0].message_id());
    let receives = redelivered[0]
        .attributes()
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
        })
        .cloned();
    assert_eq!(receives.as_deref(), Some("2"));
    let response = w.invoke(&worker, &redelivered, PLENTY).await;

    // Then it completes with nothing lost
    assert!(response.batch_item_failures.is_empty());
    w.assert_complete(&c.id).await;
}

#[tokio::test]
async fn throttled_writes_mid_run_lose_nothing() {
    // Given a run whose data point writes are throttled (after the SDK's retries)
    let config = SimConfig {
        page_size_cap: Some(4),
        ..SimConfig::default()
    };
    let w = World::with_cases("wk-midrun", config, 12).await;
    let c = w.connect().await;
    let proxy = FaultyDynamo::start(w.aws.endpoint_url()).await;
    let worker = w.worker_with_dynamodb(proxy.client(&w.aws), test_timing());
    proxy.set(Fault::Operation("BatchWriteItem".into()));
    w.send(&c.id, WorkKind::Tick, Utc::now()).await;
    w.deliver(&worker, 1, PLENTY).await.expect("a message");

    // Then the run failed without moving the cursor past unwritten Cases
    let after = w.connection(&c.id).await;
    let run = after.last_run.clone().unwrap();
    assert_eq!(run.outcome, SyncOutcome::Failed, "{run:?}");
    assert_eq!(after.cursor, run.cursor_before);
    assert!(w.stored(&c.id).await.is_empty());

    // When DynamoDB recovers and the next tick arrives
    proxy.set(Fault::None);
    w.send(&c.id, WorkKind::Tick, Utc::now()).await;
    w.drain(&worker, PLENTY, 10).await;

    // Then every Case is stored, once
    w.assert_complete(&c.id).await;
}

#[tokio::test]
async fn a_failed_message_holds_back_the_rest_of_its_group_but_not_other_groups() {
    // Given two connections; DynamoDB throttles the first two requests about the first one
    // (the first message's read and the SDK's retry of it: a second message of that group
    // would get through if it were tried)
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_test_writer()
        .try_init();
    let w = World::with_cases("wk-fifo", SimConfig::default(), 5).await;
    let a = w.connect().await;
    let b = w.connect().await;
    let proxy = FaultyDynamo::start(w.aws.endpoint_url()).await;
    let worker = w.worker_with_dynamodb(proxy.client(&w.aws), test_timing());
    proxy.set(Fault::MentioningFirst(a.id.to_string(), 2));
    let t0 = Utc::now();
    w.send(&a.id, WorkKind::Tick, t0).await;
    w.send(&a.id, WorkKind::Continuation, t0 + TimeDelta::seconds(1))
        .await;
    w.send(&b.id, WorkKind::Tick, t0).await;
    let mut messages = Vec::new();
    for _ in 0..5 {
        messages.extend(w.receive_from(&w.queue.queue_url, 10).await);
        if messages.len() == 3 {
            break;
        }
    }
    assert_eq!(messages.len(), 3, "one batch of three");
    let order: Vec<WorkItem> = messages
        .iter()
        .map(|m| work_item(m.body().unwrap()))
        .collect();

    // When the batch is delivered
    let response = w.invoke(&worker, &messages, PLENTY).await;

    // Then both of A's messages are reported failed, in order, and B's is done
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    let expected: Vec<&str> = messages
        .iter()
        .zip(&order)
        .filter(|(_, item)| item.connection_id == a.id)
        .map(|(m, _)| m.message_id().unwrap())
        .collect();
    assert_eq!(failed, expected);
    assert!(w.connection(&a.id).await.last_run.is_none(), "A never ran");
    w.assert_complete(&b.id).await;
    assert!(w.stored(&a.id).await.is_empty());

    // And once DynamoDB recovers, A's messages complete in order
    proxy.set(Fault::None);
    w.drain(&worker, PLENTY, 10).await;
    w.assert_complete(&a.id).await;
}

#[tokio::test]
async fn a_deleted_connection_acknowledges_its_messages() {
    let w = World::with_cases("wk-deleted", SimConfig::default(), 2).await;
    let c = w.connect().await;
    w.connections.delete_connection(&c.id).await.unwrap();
    w.send(&c.id, WorkKind::Tick, Utc::now()).await;
    let worker = w.worker(test_timing());
    let response = w.deliver(&worker, 1, PLENTY).await.expect("a message");
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(w.sim.stats().data_calls, 0);
}

#[tokio::test]
async fn an_invocation_without_time_left_hands_the_message_back() {
    // Given an invocation whose deadline leaves less than the minimum budget
    let w = World::with_cases("wk-notime", SimConfig::default(), 2).await;
    let c = w.connect().await;
    w.send(&c.id, WorkKind::Tick, Utc::now()).await;
    let worker = w.worker(Timing {
        run_margin: Duration::from_secs(60),
        min_budget: Duration::from_secs(5),
        ..test_timing()
    });

    // When it is delivered, then it is reported failed, untouched, for another invocation
    let response = w
        .deliver(&worker, 1, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(w.sim.stats().data_calls, 0);
    assert_eq!(w.queue_depth(&w.queue.queue_url).await, 1);
}

#[tokio::test]
async fn a_run_that_would_outlive_the_invocation_is_abandoned_and_handed_back() {
    // Given a Salesforce that takes 3 s a call, and an invocation with 1.5 s left
    let w = World::with_cases("wk-overrun", SimConfig::default(), 2).await;
    let c = w.connect().await;
    w.sim.set_latency(Duration::from_secs(3));
    w.send(&c.id, WorkKind::Tick, Utc::now()).await;
    let worker = w.worker(Timing {
        run_margin: Duration::from_secs(1),
        abandon_margin: Duration::from_millis(200),
        ..test_timing()
    });

    // When it is delivered
    let started = std::time::Instant::now();
    let response = w
        .deliver(&worker, 1, Duration::from_millis(1500))
        .await
        .unwrap();

    // Then the handler answers before the deadline, handing the message back
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(w.queue_depth(&w.queue.queue_url).await, 1);
}
