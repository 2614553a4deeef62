//! Real time: Salesforce change events, as Event Relay delivers them, over moto's EventBridge
//! (a bus, a rule, an SQS target), routed by the change router onto the FIFO work queue, and
//! handled by the `worker` binary through the stand-in Lambda Runtime API. Each scenario ends
//! with the data points equal to the org: nothing lost, nothing duplicated, nothing stale.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::SqsMessage;
use casesync_aws::SqsWorkQueue;
use casesync_aws::testing::runtime_api;
use casesync_change_router::Router;
use casesync_core::domain::{Connection, ConnectionId};
use casesync_core::ports::{ConnectionReader, SystemClock, WorkKind};
use chrono::{DateTime, TimeDelta, Utc};
use sf_simulator::{ChangeRecord, SimConfig, cdc};
use support::World;

use casesync_tests::{closed_case, minutes_ago};

/// The org, its relay, and the functions between them.
struct Relay {
    w: World,
    bus: String,
    /// The rule's SQS target: what the change router consumes.
    inbox: String,
    router: Router,
    worker_env: Vec<(String, String)>,
    connection: Connection,
}

impl Relay {
    /// An org with `n` closed Cases, connected and imported by a first sync; then its changes
    /// are recorded as change events.
    async fn start(label: &str, n: usize) -> Self {
        let w = World::with_cases(label, SimConfig::default(), n).await;
        let connection = w.connect().await;
        assert!(
            connection.org_id.is_some(),
            "the org is recorded at connect"
        );
        let bus = format!("{label}-salesforce");
        let inbox = w
            .aws
            .bus_to_queue(
                &bus,
                &serde_json::json!({
                    "source": [{"prefix": "aws.partner/salesforce.com/"}],
                    "detail-type": ["CaseChangeEvent", "EmailMessageChangeEvent"]
                }),
            )
            .await;
        let secret_name = format!("{}/connected-app", w.names.secret_prefix);
        let arn = w
            .aws
            .secrets_manager()
            .create_secret()
            .name(&secret_name)
            .secret_string(w.sim.client_secret())
            .send()
            .await
            .unwrap()
            .arn
            .unwrap();
        let worker_env = [
            ("CONNECTIONS_TABLE", w.names.tables.connections.clone()),
            ("DATA_POINTS_TABLE", w.names.tables.data_points.clone()),
            ("WORK_QUEUE_URL", w.queue.queue_url.clone()),
            ("DLQ_URL", w.queue.dead_letter_queue_url.clone()),
            ("SECRET_PREFIX", w.names.secret_prefix.clone()),
            ("SALESFORCE_CLIENT_ID", w.sim.client_id()),
            ("SALESFORCE_CLIENT_SECRET_ARN", arn),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .to_vec();
        let router = Router {
            connections: w.connections.clone(),
            queue: Arc::new(SqsWorkQueue::new(w.aws.sqs(), &w.queue.queue_url)),
            clock: Arc::new(SystemClock),
        };
        let relay = Self {
            w,
            bus,
            inbox,
            router,
            worker_env,
            connection,
        };
        // The first sync (a tick), then events from here on.
        relay
            .w
            .send(&relay.connection.id, WorkKind::Tick, Utc::now())
            .await;
        relay.work().await;
        relay.w.assert_complete(&relay.connection.id).await;
        relay.w.sim.record_changes();
        relay
    }

    fn id(&self) -> &ConnectionId {
        &self.connection.id
    }

    /// Puts events on the bus as Event Relay does.
    async fn publish(&self, events: &[String]) {
        for chunk in events.chunks(10) {
            let entries = chunk.iter().map(|raw| {
                let e: serde_json::Value = serde_json::from_str(raw).unwrap();
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus)
                    .source(e["source"].as_str().unwrap())
                    .detail_type(e["detail-type"].as_str().unwrap())
                    .detail(e["detail"].to_string())
                    .build()
            });
            let out = self
                .w
                .aws
                .eventbridge()
                .put_events()
                .set_entries(Some(entries.collect()))
                .send()
                .await
                .expect("moto takes the events");
            assert_eq!(out.failed_entry_count(), 0, "{out:?}");
        }
    }

    /// The change router's event source: its SQS queue, in batches of up to 1,000 (the
    /// template's batch size: the event source mapping gathers them over its batching window),
    /// until empty. Returns the messages it failed.
    async fn route(&self) -> usize {
        let sqs = self.w.aws.sqs();
        let mut failed = 0;
        loop {
            let mut messages = Vec::new();
            while messages.len() < 1_000 {
                let got = self.w.receive_from(&self.inbox, 10).await;
                if got.is_empty() {
                    break;
                }
                messages.extend(got);
            }
            if messages.is_empty() {
                return failed;
            }
            let records: Vec<SqsMessage> = self.w.sqs_event(&messages).records;
            let response = self.router.process(&records).await;
            failed += response.batch_item_failures.len();
            for m in &messages {
                let id = m.message_id().unwrap_or("");
                if !response
                    .batch_item_failures
                    .iter()
                    .any(|f| f.item_identifier == id)
                {
                    sqs.delete_message()
                        .queue_url(&self.inbox)
                        .receipt_handle(m.receipt_handle().unwrap_or(""))
                        .send()
                        .await
                        .unwrap();
                }
            }
        }
    }

    /// The worker binary on the work queue, a batch of up to 10 per invocation, until empty.
    /// Returns the work items it handled.
    async fn work(&self) -> Vec<serde_json::Value> {
        let mut handled = Vec::new();
        for _ in 0..50 {
            let messages = self.w.receive_from(&self.w.queue.queue_url, 10).await;
            if messages.is_empty() {
                return handled;
            }
            let event = serde_json::to_string(&self.w.sqs_event(&messages)).unwrap();
            let (runtime, mut posted) = runtime_api::serve(event, Duration::from_secs(120)).await;
            let mut vars = runtime_api::lambda_env(runtime, self.w.aws.endpoint_url(), "INFO");
            vars.extend(self.worker_env.iter().cloned());
            let child = runtime_api::spawn(env!("CARGO_BIN_EXE_worker"), &vars, None);
            let (_, body) = tokio::time::timeout(Duration::from_secs(60), posted.recv())
                .await
                .expect("the worker answers within a minute")
                .expect("an answer");
            drop(child);
            let response: serde_json::Value = serde_json::from_str(&body).unwrap();
            let failed: Vec<&str> = response["batchItemFailures"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|f| f["itemIdentifier"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            assert!(failed.is_empty(), "the worker failed items: {body}");
            for m in &messages {
                handled.push(serde_json::from_str(m.body().unwrap_or("null")).unwrap());
                self.w
                    .aws
                    .sqs()
                    .delete_message()
                    .queue_url(&self.w.queue.queue_url)
                    .receipt_handle(m.receipt_handle().unwrap_or(""))
                    .send()
                    .await
                    .unwrap();
            }
        }
        panic!("the work queue did not empty");
    }

    /// The recorded changes, relayed, routed and worked. Returns the items the worker handled.
    async fn deliver(&self, changes: &[ChangeRecord]) -> Vec<serde_json::Value> {
        self.publish(&self.w.sim.relayed(changes)).await;
        assert_eq!(self.route().await, 0, "the router refused an event");
        self.work().await
    }

    /// id → SystemModstamp of the stored data points.
    async fn stored(&self) -> BTreeMap<String, DateTime<Utc>> {
        let points = self.w.stored(self.id()).await;
        let map: BTreeMap<String, DateTime<Utc>> = points
            .iter()
            .map(|p| (p.case_id.to_string(), p.system_modstamp))
            .collect();
        assert_eq!(map.len(), points.len(), "a Case is stored twice");
        map
    }

    async fn cursor(&self) -> casesync_core::domain::Cursor {
        self.w
            .connections
            .get_connection(self.id())
            .await
            .unwrap()
            .unwrap()
            .cursor
    }
}

/// Now, in whole seconds (Salesforce stamps no finer than milliseconds).
fn now() -> DateTime<Utc> {
    minutes_ago(0)
}

/// A closed Case in the connection's queue, stamped now: too recent for the polling sync,
/// which reads up to now − 5 minutes.
fn close_now(w: &World, subject: &str) -> String {
    let queue = w.queue_id.clone();
    w.sim.with_org(|o| closed_case(o, &queue, now(), subject))
}

#[tokio::test]
async fn a_closed_case_arrives_through_its_change_event_and_follows_every_later_change() {
    let r = Relay::start("cdc-life", 3).await;
    let cursor = r.cursor().await;

    // Closed now: in the Channel at once, though polling could not read it for 5 minutes.
    let fresh = close_now(&r.w, "Refund not received");
    let changes = r.w.sim.take_changes();
    assert!(
        changes
            .iter()
            .any(|c| c.entity == "Case" && c.change_type == "CREATE")
    );
    let handled = r.deliver(&changes).await;
    assert!(
        handled.iter().all(|i| i["kind"] == "changes"),
        "{handled:?}"
    );
    r.w.assert_complete(r.id()).await;
    assert_eq!(r.cursor().await, cursor, "the keyset cursor does not move");

    // Edited: the data point follows.
    r.w.sim.with_org(|o| {
        o.update_case(&fresh, |c| c.subject = Some("Refund received twice".into()));
        o.touch(&fresh, now());
    });
    r.deliver(&r.w.sim.take_changes()).await;
    r.w.assert_complete(r.id()).await;
    let point =
        r.w.stored(r.id())
            .await
            .into_iter()
            .find(|p| p.case_id.as_str() == fresh)
            .unwrap();
    assert_eq!(point.subject.as_deref(), Some("Refund received twice"));

    // Reopened: the data point keeps its last closed version; closed again: updated.
    let before = r.stored().await[&fresh];
    r.w.sim.with_org(|o| o.reopen_case(&fresh, now()));
    r.deliver(&r.w.sim.take_changes()).await;
    assert_eq!(
        r.stored().await[&fresh],
        before,
        "an open Case is not imported"
    );
    r.w.sim
        .with_org(|o| o.close_case(&fresh, now() + TimeDelta::seconds(1)));
    r.deliver(&r.w.sim.take_changes()).await;
    r.w.assert_complete(r.id()).await;

    // Deleted: nothing to fetch; its data point stays as it was (casesync does not delete
    // data on Salesforce's behalf: polling could not see deletions either).
    let kept = r.stored().await;
    r.w.sim.with_org(|o| o.delete_case(&fresh, now()));
    let changes = r.w.sim.take_changes();
    assert_eq!(changes[0].change_type, "DELETE");
    let handled = r.deliver(&changes).await;
    assert!(handled.is_empty(), "a delete makes no work: {handled:?}");
    assert_eq!(r.stored().await, kept);
    assert_eq!(r.w.sim.stats().write_attempts, 0);
}

#[tokio::test]
async fn a_burst_of_a_thousand_changes_costs_a_few_queries() {
    let r = Relay::start("cdc-burst", 2).await;
    let queue = r.w.queue_id.clone();
    let at = now();
    r.w.sim.with_org(|o| {
        for i in 0..1_000 {
            closed_case(o, &queue, at, &format!("Burst {i}"));
        }
    });
    // Salesforce merges some (the same change to many records), sends others one by one.
    let changes = r.w.sim.take_changes();
    let creates: Vec<ChangeRecord> = changes.into_iter().filter(|c| c.entity == "Case").collect();
    let mut events: Vec<ChangeRecord> = creates[..600].chunks(50).filter_map(cdc::merged).collect();
    events.extend_from_slice(&creates[600..]);
    r.w.sim.reset_stats();

    r.deliver(&events).await;

    r.w.assert_complete(r.id()).await;
    let stats = r.w.sim.stats();
    assert!(
        stats.data_calls <= 10,
        "{} Salesforce calls for 1,000 changed Cases ({} queries, {} more pages)",
        stats.data_calls,
        stats.queries,
        stats.query_more
    );
}

#[tokio::test]
async fn gaps_duplicates_and_disorder_end_equal_to_the_org() {
    let r = Relay::start("cdc-gaps", 3).await;

    // A gap event names the Cases but carries no fields: they are fetched, and the connection
    // is synced through its cursor too.
    let queue = r.w.queue_id.clone();
    let late =
        r.w.sim
            .with_org(|o| closed_case(o, &queue, minutes_ago(8), "Stamped before the lag"));
    let gap: Vec<ChangeRecord> = r.w.sim.take_changes().iter().map(cdc::gap).collect();
    let handled = r.deliver(&gap).await;
    let kinds: Vec<&str> = handled.iter().filter_map(|i| i["kind"].as_str()).collect();
    assert!(
        kinds.contains(&"resync") && kinds.contains(&"changes"),
        "{kinds:?}"
    );
    assert!(r.stored().await.contains_key(&late));
    r.w.assert_complete(r.id()).await;

    // An overflow event: too many changes to list; the connection is synced.
    let overflow = cdc::overflow("Case", &gap[0]);
    let handled = r.deliver(&[overflow]).await;
    assert_eq!(handled.len(), 1);
    assert_eq!(handled[0]["kind"], "resync");

    // Two edits of one Case, delivered twice and newest first: the newest version wins, once.
    let fresh = close_now(&r.w, "First version");
    r.deliver(&r.w.sim.take_changes()).await;
    r.w.sim.with_org(|o| {
        o.update_case(&fresh, |c| c.subject = Some("Second version".into()));
        o.touch(&fresh, now() + TimeDelta::seconds(1));
    });
    let mut edits = r.w.sim.take_changes();
    r.w.sim.with_org(|o| {
        o.update_case(&fresh, |c| c.subject = Some("Third version".into()));
        o.touch(&fresh, now() + TimeDelta::seconds(2));
    });
    edits.extend(r.w.sim.take_changes());
    let disordered = vec![edits[1].clone(), edits[0].clone(), edits[1].clone()];
    r.deliver(&disordered).await;
    r.deliver(&[edits[0].clone()]).await;
    r.w.assert_complete(r.id()).await;
    let point =
        r.w.stored(r.id())
            .await
            .into_iter()
            .find(|p| p.case_id.as_str() == fresh)
            .unwrap();
    assert_eq!(point.subject.as_deref(), Some("Third version"));

    // An event for another org, and one that is not a change event: passed over and
    // dead-lettered (after the queue's receives) respectively; nothing else happens.
    let mut stranger: serde_json::Value =
        serde_json::from_str(&r.w.sim.relayed(&[edits[0].clone()])[0]).unwrap();
    stranger["source"] = "aws.partner/salesforce.com/00DDn0000000ZZZ/0YLDn0000000001GAA".into();
    let mut garbled = stranger.clone();
    garbled["detail"] = serde_json::json!({"note": "not a change event"});
    r.publish(&[stranger.to_string()]).await;
    assert_eq!(r.route().await, 0);
    assert!(r.work().await.is_empty(), "another org's event made work");
    r.publish(&[garbled.to_string()]).await;
    assert_eq!(r.route().await, 1, "what is not a change event is refused");
    assert!(r.work().await.is_empty());
    r.w.assert_complete(r.id()).await;
}

#[tokio::test]
async fn with_the_events_switched_off_polling_catches_up() {
    let r = Relay::start("cdc-off", 3).await;
    // Events flow for one Case...
    let with_events = close_now(&r.w, "Seen through its event");
    r.deliver(&r.w.sim.take_changes()).await;
    assert!(r.stored().await.contains_key(&with_events));

    // ...then the relay stops (its events are lost), and Cases keep closing. Once they are
    // older than the read lag, a tick imports them: the polling sync is the guarantee.
    let queue = r.w.queue_id.clone();
    let missed: Vec<String> = r.w.sim.with_org(|o| {
        (0..5)
            .map(|i| closed_case(o, &queue, minutes_ago(6) + TimeDelta::seconds(i), "Missed"))
            .collect()
    });
    drop(r.w.sim.take_changes());
    r.w.send(r.id(), WorkKind::Tick, Utc::now()).await;
    r.work().await;
    let stored = r.stored().await;
    assert!(missed.iter().all(|id| stored.contains_key(id)));
    r.w.assert_complete(r.id()).await;
}

#[tokio::test]
async fn connections_made_before_the_org_was_recorded_learn_it_at_their_next_sync() {
    let w = World::with_cases("cdc-backfill", SimConfig::default(), 2).await;
    let mut c = w.connect().await;
    // As a connection stored by an earlier version: no org.
    c.org_id = None;
    w.connections.delete_connection(&c.id).await.unwrap();
    use casesync_core::ports::ConnectionWriter;
    w.connections.insert_connection(&c).await.unwrap();
    assert!(w.connection(&c.id).await.org_id.is_none());

    w.send(&c.id, WorkKind::Tick, Utc::now()).await;
    let worker = w.worker(support::test_timing());
    w.drain(&worker, Duration::from_secs(60), 5).await;

    let org = w.sim.with_org(|o| o.org_id.to_string());
    assert_eq!(
        w.connection(&c.id).await.org_id.map(|o| o.to_string()),
        Some(org)
    );
    w.assert_complete(&c.id).await;
}
