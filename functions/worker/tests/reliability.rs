//! The AWS rows of the reliability suite: the worker over moto and the simulator under DynamoDB
//! throttling at every request of a run, racing deliveries (the lease's and the cursor's
//! conditional checks), Secrets Manager unavailable, and SQS redelivering every message. Each
//! trial ends with the stored data points compared to the org: nothing lost, duplicated or
//! stale. `--nocapture` shows the figures.

mod support;

use std::sync::Arc;
use std::time::Duration;

use casesync_aws::SecretsManagerStore;
use casesync_core::ports::{SystemClock, WorkKind};
use casesync_core::sync::SyncConfig;
use casesync_tests::Figures;
use casesync_worker::{Worker, WorkerParts};
use chrono::Utc;
use sf_simulator::SimConfig;
use support::{Fault, FaultyDynamo, World, test_timing};

const PLENTY: Duration = Duration::from_secs(120);

/// Several pages per run, so faults land between pages too.
fn sim() -> SimConfig {
    SimConfig {
        page_size_cap: Some(4),
        ..SimConfig::default()
    }
}

/// Compares what is stored with the org, into `figures`.
async fn check(w: &World, id: &casesync_core::domain::ConnectionId, figures: &mut Figures) {
    figures.trials += 1;
    let expected = w.expected();
    let points = w.stored(id).await;
    let mut seen = std::collections::BTreeSet::new();
    for p in &points {
        if !seen.insert(p.case_id.to_string()) {
            figures.duplicated += 1;
        }
        if expected
            .get(p.case_id.as_str())
            .is_some_and(|at| *at != p.system_modstamp)
        {
            figures.stale += 1;
        }
    }
    figures.lost += expected.keys().filter(|k| !seen.contains(*k)).count() as u64;
}

/// Delivers until the queue is empty, then ticks again (a run that failed was acknowledged:
/// the next tick resumes it), until the connection is caught up.
async fn settle(w: &World, worker: &Worker, id: &casesync_core::domain::ConnectionId) {
    w.send(id, WorkKind::Tick, Utc::now()).await;
    w.drain(worker, PLENTY, 50).await;
    for _ in 0..5 {
        w.send(id, WorkKind::Tick, Utc::now()).await;
        w.drain(worker, PLENTY, 50).await;
    }
}

#[tokio::test]
async fn dynamodb_throttling_at_every_request_of_a_run_loses_nothing() {
    // How many DynamoDB requests a clean run makes: a window that never opens, counted.
    let requests = {
        let probe = World::with_cases("rl-probe", sim(), 12).await;
        let c = probe.connect().await;
        let proxy = FaultyDynamo::start(probe.aws.endpoint_url()).await;
        let worker = probe.worker_with_dynamodb(proxy.client(&probe.aws), test_timing());
        proxy.set(Fault::Window {
            skip: 10_000,
            times: 1,
        });
        probe.send(&c.id, WorkKind::Tick, Utc::now()).await;
        probe.drain(&worker, PLENTY, 10).await;
        proxy.remaining_skip(10_000)
    };
    assert!(
        requests >= 10,
        "a run makes many DynamoDB requests ({requests})"
    );

    let mut figures = Figures::new(format!(
        "DynamoDB ThrottlingException at every request of a worker run ({requests} positions, past the SDK's retries)"
    ));
    for k in 0..requests {
        let w = World::with_cases(&format!("rl-thr{k}"), sim(), 12).await;
        let c = w.connect().await;
        let proxy = FaultyDynamo::start(w.aws.endpoint_url()).await;
        let worker = w.worker_with_dynamodb(proxy.client(&w.aws), test_timing());
        // Two in a row: the SDK's own retry (2 attempts) is spent too.
        proxy.set(Fault::Window { skip: k, times: 2 });
        settle(&w, &worker, &c.id).await;
        check(&w, &c.id, &mut figures).await;
    }
    figures.report();
}

#[tokio::test]
async fn racing_deliveries_meet_the_lease_and_the_cursor_checks_and_lose_nothing() {
    let mut figures = Figures::new(
        "two workers handling the same connection's messages at once (lease and cursor conditional checks)",
    );
    for trial in 0..8 {
        let w = World::with_cases(&format!("rl-race{trial}"), sim(), 12).await;
        let c = w.connect().await;
        let (a, b) = (w.worker(test_timing()), w.worker(test_timing()));
        w.send(&c.id, WorkKind::Tick, Utc::now()).await;
        let messages = w.receive_from(&w.queue.queue_url, 1).await;
        // The same message in two containers at once, as after a visibility timeout.
        let (ra, rb) = tokio::join!(
            w.handle_only(&a, &messages, PLENTY),
            w.handle_only(&b, &messages, PLENTY)
        );
        assert!(ra.batch_item_failures.is_empty() && rb.batch_item_failures.is_empty());
        settle(&w, &a, &c.id).await;
        check(&w, &c.id, &mut figures).await;
    }
    figures.report();
}

#[tokio::test]
async fn secrets_manager_unavailable_fails_the_run_cleanly_and_a_later_tick_completes() {
    let mut figures = Figures::new("Secrets Manager unavailable during a run, then back");
    for trial in 0..3 {
        let w = World::with_cases(&format!("rl-sm{trial}"), sim(), 12).await;
        let c = w.connect().await;
        // A worker whose Secrets Manager cannot be reached (nothing listens on port 1).
        let unreachable = aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::config::Builder::from(w.aws.sdk_config())
                .endpoint_url("http://127.0.0.1:1")
                .build(),
        );
        let sqs = w.aws.sqs();
        let broken = Worker::new(WorkerParts {
            connections: w.connections.clone(),
            data_points: w.points.clone(),
            secrets: Arc::new(SecretsManagerStore::new(
                unreachable,
                &w.names.secret_prefix,
            )),
            queue: Arc::new(
                casesync_aws::SqsWorkQueue::new(sqs, &w.queue.queue_url)
                    .with_dead_letter_queue(&w.queue.dead_letter_queue_url),
            ),
            salesforce: w.salesforce.clone(),
            sync: SyncConfig::default(),
            clock: Arc::new(SystemClock),
            timing: test_timing(),
        });
        w.send(&c.id, WorkKind::Tick, Utc::now()).await;
        w.drain(&broken, PLENTY, 5).await;
        // Nothing read without a token, nothing written, the cursor where it was.
        assert_eq!(w.sim.stats().data_calls, 0);
        assert!(w.stored(&c.id).await.is_empty());
        settle(&w, &w.worker(test_timing()), &c.id).await;
        check(&w, &c.id, &mut figures).await;
    }
    figures.report();
}

#[tokio::test]
async fn every_message_of_a_backfill_delivered_twice_imports_each_case_once() {
    let mut figures =
        Figures::new("SQS delivering every message of a backfill twice (at-least-once delivery)");
    for trial in 0..3 {
        let w = World::with_cases(&format!("rl-dup{trial}"), sim(), 12).await;
        let c = w.connect().await;
        let worker = w.worker(test_timing());
        w.send(&c.id, WorkKind::Tick, Utc::now()).await;
        for _ in 0..30 {
            let messages = w.receive_from(&w.queue.queue_url, 1).await;
            if messages.is_empty() {
                break;
            }
            // Delivered, then delivered again before the first delete is seen.
            w.handle_only(&worker, &messages, PLENTY).await;
            w.invoke(&worker, &messages, PLENTY).await;
        }
        let writes = w.metrics.snapshot().batch_write_item_requests;
        assert_eq!(writes, 12, "each point written once");
        check(&w, &c.id, &mut figures).await;
    }
    figures.report();
}
