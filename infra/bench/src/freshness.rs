//! Real time, on moto: how soon a closed Case is a data point through Salesforce change events,
//! and what a burst of them costs in Salesforce calls.
//!
//! The pipeline as deployed, minus the relay: the simulator records a change event at commit
//! (its `commitTimestamp`, on this process's clock) → the change router, fed as its SQS event
//! source feeds it (batches gathered for up to 2 s, as the template's
//! `MaximumBatchingWindowInSeconds`) → the FIFO work queue (moto) → the worker's handler,
//! polling it → DynamoDB (moto). Freshness is the data point's write stamp in the table's change
//! order minus the commit timestamp. Event Relay's own delivery (Salesforce → EventBridge → the
//! rule's SQS target) is not in it: it cannot be measured here, and Salesforce publishes no
//! figure for it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::SqsMessage;
use casesync_aws::{
    DynamoConnectionStore, DynamoDataPointStore, QueueOptions, SqsWorkQueue, create_queue,
};
use casesync_change_router::Router;
use casesync_core::domain::ChannelName;
use casesync_core::memory::MemoryStore;
use casesync_core::ports::{ChangeFeed, ChangeQuery, SystemClock};
use casesync_core::sync::SyncConfig;
use casesync_worker::{Timing, Worker, WorkerParts};
use chrono::{DateTime, TimeDelta, Utc};
use sf_simulator::{ChangeRecord, NewCase, NewEmail, Org, SimConfig, SimHandle, Simulator, cdc};
use tokio::sync::mpsc;

use crate::figures::{Row, Verdict};

/// Changes per second while measuring freshness.
const RATE: u64 = 20;
/// The template's batching window of the router's event source.
const BATCH_WINDOW: Duration = Duration::from_secs(2);
/// The template's batch size of the router's event source.
const BATCH_SIZE: usize = 1_000;

fn closed(org: &mut Org, queue: &str, at: DateTime<Utc>, i: usize) -> String {
    let id = org.add_case(NewCase {
        subject: Some(format!("Closed just now {i}")),
        status: "Closed".into(),
        owner_id: Some(queue.to_owned()),
        system_modstamp: Some(at),
        closed_date: Some(at),
        created_date: Some(at - TimeDelta::hours(1)),
        ..NewCase::default()
    });
    org.add_email(
        &id,
        NewEmail {
            incoming: true,
            from_address: Some("customer@example.com".into()),
            text_body: Some("It broke again.".into()),
            message_date: Some(at - TimeDelta::minutes(30)),
            ..NewEmail::default()
        },
        false,
    );
    id
}

/// Now, as Salesforce stamps it (milliseconds).
fn now_ms() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_else(Utc::now)
}

fn sqs_message(body: String, n: usize) -> SqsMessage {
    serde_json::from_value(serde_json::json!({
        "messageId": format!("m-{n}"),
        "receiptHandle": format!("r-{n}"),
        "body": body,
        "attributes": {},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "awsRegion": "us-east-1"
    }))
    .expect("an SQS message")
}

/// The worker's event source: polls the FIFO queue and hands batches to the handler.
async fn work_loop(worker: Arc<Worker>, aws: casesync_aws::testing::Moto, queue_url: String) {
    let sqs = aws.sqs();
    loop {
        let got = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(300)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await;
        let messages = got.ok().and_then(|o| o.messages).unwrap_or_default();
        if messages.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let records: Vec<SqsMessage> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let mut r = sqs_message(m.body().unwrap_or("").to_owned(), i);
                r.message_id = m.message_id().map(str::to_owned);
                r.attributes = m
                    .attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                r
            })
            .collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(300);
        let response = worker.process(&records, deadline).await;
        for m in &messages {
            let failed = response
                .batch_item_failures
                .iter()
                .any(|f| Some(f.item_identifier.as_str()) == m.message_id());
            if !failed {
                let _ = sqs
                    .delete_message()
                    .queue_url(&queue_url)
                    .receipt_handle(m.receipt_handle().unwrap_or(""))
                    .send()
                    .await;
            }
        }
    }
}

/// The router's event source: batches of relayed events, gathered for up to the window.
async fn route_loop(router: Arc<Router>, mut events: mpsc::UnboundedReceiver<String>) {
    let mut n = 0;
    while let Some(first) = events.recv().await {
        let mut batch = vec![sqs_message(first, n)];
        n += 1;
        let until = tokio::time::Instant::now() + BATCH_WINDOW;
        while batch.len() < BATCH_SIZE {
            match tokio::time::timeout_at(until, events.recv()).await {
                Ok(Some(e)) => {
                    batch.push(sqs_message(e, n));
                    n += 1;
                }
                _ => break,
            }
        }
        router.process(&batch).await;
    }
}

struct Pipeline {
    sim: SimHandle,
    queue: String,
    feed: Arc<DynamoDataPointStore>,
    events: mpsc::UnboundedSender<String>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    channel: ChannelName,
}

impl Pipeline {
    async fn start(label: &str) -> anyhow::Result<Self> {
        let aws = casesync_aws::testing::try_moto()
            .await
            .map_err(|e| anyhow::anyhow!("moto is needed for these figures: {e}"))?;
        let names = aws.tables(label).await;
        let work = create_queue(&aws.sqs(), &names.queue, &QueueOptions::default()).await?;
        let mut org = Org::new();
        let queue = org.add_queue("Support", "Support");
        let sim = Simulator::start(SimConfig::default(), org).await?;
        let connections = Arc::new(DynamoConnectionStore::new(
            aws.dynamodb(),
            &names.tables.connections,
        ));
        let feed = Arc::new(
            DynamoDataPointStore::new(aws.dynamodb(), &names.tables.data_points)
                .with_visibility_lag(TimeDelta::zero()),
        );
        let secrets = Arc::new(MemoryStore::new());
        let (salesforce, connection) =
            crate::figures::connect_to(&sim, connections.as_ref(), secrets.as_ref(), Utc::now())
                .await?;
        let worker = Arc::new(Worker::new(WorkerParts {
            connections: connections.clone(),
            data_points: feed.clone(),
            secrets,
            queue: Arc::new(
                SqsWorkQueue::new(aws.sqs(), &work.queue_url)
                    .with_dead_letter_queue(work.dead_letter_queue_url.clone()),
            ),
            salesforce,
            sync: SyncConfig::default(),
            clock: Arc::new(SystemClock),
            timing: Timing::default(),
        }));
        let router = Arc::new(Router {
            connections,
            queue: Arc::new(SqsWorkQueue::new(aws.sqs(), &work.queue_url)),
            clock: Arc::new(SystemClock),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let tasks = vec![
            tokio::spawn(work_loop(worker, aws, work.queue_url.clone())),
            tokio::spawn(route_loop(router, rx)),
        ];
        sim.record_changes();
        Ok(Self {
            sim,
            queue,
            feed,
            events: tx,
            tasks,
            channel: connection.channel,
        })
    }

    /// What the relay delivers: the recorded changes, as EventBridge hands them to the rule's
    /// target.
    fn relay(&self, changes: &[ChangeRecord]) {
        for e in self.sim.relayed(changes) {
            let _ = self.events.send(e);
        }
    }

    /// The write stamp of each Case's data point, waiting (at most `wait`) for `cases` of them.
    async fn written(
        &self,
        cases: usize,
        wait: Duration,
    ) -> anyhow::Result<HashMap<String, DateTime<Utc>>> {
        let started = Instant::now();
        loop {
            let entries = self
                .feed
                .changes(&ChangeQuery {
                    channel: self.channel.clone(),
                    connection: None,
                    after: None,
                    since: None,
                    until: Utc::now() + TimeDelta::minutes(1),
                    limit: 100_000,
                    budget: None,
                    descending: false,
                })
                .await?;
            let stamps: HashMap<String, DateTime<Utc>> = entries
                .into_iter()
                .map(|e| (e.entry.case_id.to_string(), e.entry.position.changed_at))
                .collect();
            if stamps.len() >= cases || started.elapsed() > wait {
                return Ok(stamps);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub async fn figures(changes: usize, burst: usize) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();

    // Freshness: `changes` Cases closed at RATE per second, each through its change event.
    let p = Pipeline::start("bench-fresh").await?;
    let mut commits: HashMap<String, i64> = HashMap::new();
    let tick = Duration::from_millis(1_000 / RATE);
    for i in 0..changes {
        let queue = p.queue.clone();
        let id = p.sim.with_org(|o| closed(o, &queue, now_ms(), i));
        let recorded = p.sim.take_changes();
        if let Some(c) = recorded.iter().find(|c| c.entity == "Case") {
            commits.insert(id, c.commit_timestamp);
        }
        p.relay(&recorded);
        tokio::time::sleep(tick).await;
    }
    let written = p.written(changes, Duration::from_secs(120)).await?;
    let mut lags: Vec<f64> = commits
        .iter()
        .filter_map(|(id, commit)| {
            let at = written.get(id)?;
            Some((at.timestamp_micros() as f64 / 1_000.0 - *commit as f64) / 1_000.0)
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&lags, 0.5), percentile(&lags, 0.99));
    rows.push(Row {
        figure: format!(
            "freshness with change events: Case closed -> data point ({} changes at {RATE}/s)",
            lags.len()
        ),
        measured: format!(
            "p50 {p50:.2} s, p99 {p99:.2} s ({} of {changes} arrived)",
            lags.len()
        ),
        limit: format!(
            "the router's batching window ({} s) + one query",
            BATCH_WINDOW.as_secs()
        ),
        target: "p99 <= 10 s (Event Relay's own delivery excluded: not measurable here)".into(),
        verdict: Verdict::of(lags.len() == changes && p99 <= 10.0),
    });
    drop(p);

    // Polling only, for comparison: a Case is read once it is `lag` old, at the next tick.
    let lag = SyncConfig::default().lag.num_seconds() as f64;
    rows.push(Row {
        figure: "freshness with polling only (rate(1 minute) ticks)".into(),
        measured: format!(
            "p50 {:.0} s, p99 {:.0} s (computed: the {lag:.0} s read lag + a uniform wait for the next tick + a run of about p50 above)",
            lag + 30.0 + p50,
            lag + 59.4 + p50
        ),
        limit: "rows can become visible late: nothing newer than now - 5 min is read".into(),
        target: "-".into(),
        verdict: Verdict::Info,
    });

    // A burst: `burst` Cases closed at once, partly in merged events, partly one by one.
    let p = Pipeline::start("bench-burst").await?;
    let queue = p.queue.clone();
    let at = now_ms();
    p.sim.with_org(|o| {
        for i in 0..burst {
            closed(o, &queue, at, i);
        }
    });
    let cases: Vec<ChangeRecord> = p
        .sim
        .take_changes()
        .into_iter()
        .filter(|c| c.entity == "Case")
        .collect();
    let merged_part = cases.len() * 3 / 5;
    let mut events: Vec<ChangeRecord> = cases[..merged_part]
        .chunks(50)
        .filter_map(cdc::merged)
        .collect();
    events.extend_from_slice(&cases[merged_part..]);
    p.sim.reset_stats();
    let started = Instant::now();
    p.relay(&events);
    let written = p.written(burst, Duration::from_secs(300)).await?;
    let took = started.elapsed();
    let stats = p.sim.stats();
    let per_100 = stats.data_calls as f64 / (burst as f64 / 100.0);
    rows.push(Row {
        figure: format!(
            "Salesforce calls under a burst of {burst} changed Cases ({} events, some merged)",
            events.len()
        ),
        measured: format!(
            "{} calls ({} queries, {} more pages): {per_100:.2} per 100 Cases; all {} in {:.1} s",
            stats.data_calls,
            stats.queries,
            stats.query_more,
            written.len(),
            took.as_secs_f64()
        ),
        limit: "one query per 400 Cases (URL length), 200 Cases per page".into(),
        target: "<= 1 per 100 changed Cases".into(),
        verdict: Verdict::of(written.len() == burst && per_100 <= 1.0),
    });
    Ok(rows)
}
