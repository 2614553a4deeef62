//! A consumer mirrors a channel through the read API and the change events, while casesync
//! backfills two connections, imports edits and a re-closed Case, and one connection is
//! deleted. It must end with an exact copy: the same ids, the same content, nothing extra,
//! every delete seen.
//!
//! Everything speaks its real protocol: Salesforce is the simulator over HTTP; DynamoDB,
//! Secrets Manager, the table's stream, EventBridge (a rule for the channel, targeting an SQS
//! queue) and SQS are moto; the `api` and `publisher` handlers get the events Lambda would give
//! them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::dynamodb::Event;
use casesync_api::Api;
use casesync_aws::testing::{Moto, StreamReader, http_api_event, moto};
use casesync_aws::{
    DynamoAuthStateStore, DynamoConnectionStore, DynamoDataPointStore, EventBridgePublisher,
    SecretsManagerStore,
};
use casesync_core::channel::CursorKey;
use casesync_core::domain::{
    ApiVersion, BackfillWindow, ChannelName, Connection, ConnectionId, QueueScope,
};
use casesync_core::manage::{Manager, NewConnection, Policy};
use casesync_core::ports::{ChangeFeed, ChangeQuery, SystemClock};
use casesync_core::sync::{SyncConfig, SyncEngine, SyncOutcome};
use casesync_publisher::Publisher;
use casesync_tests::{closed_case, minutes_ago, org_with_queue, salesforce_for, test_http};
use chrono::{TimeDelta, Utc};
use secrecy::SecretString;
use serde_json::Value;
use sf_simulator::{SimConfig, SimHandle, Simulator};

const LAG: TimeDelta = TimeDelta::milliseconds(300);

struct World {
    aws: Moto,
    sim: SimHandle,
    queue_id: String,
    manager: Manager,
    engine: SyncEngine,
    points: Arc<DynamoDataPointStore>,
    api: Api,
    publisher: Publisher,
    stream: StreamReader,
    consumer_queue: String,
}

async fn world() -> World {
    let aws = moto().await;
    let names = aws.tables("mirror").await;
    let (mut org, queue_id) = org_with_queue();
    for i in 0..25 {
        closed_case(
            &mut org,
            &queue_id,
            minutes_ago(200 - i),
            &format!("Case {i}"),
        );
    }
    let sim = Simulator::start(SimConfig::default(), org)
        .await
        .expect("the simulator starts");
    let salesforce = salesforce_for(&sim, &test_http());
    let dynamodb = aws.dynamodb();
    let connections = Arc::new(DynamoConnectionStore::new(
        dynamodb.clone(),
        &names.tables.connections,
    ));
    let points = Arc::new(
        DynamoDataPointStore::new(dynamodb.clone(), &names.tables.data_points)
            .with_visibility_lag(LAG),
    );
    let secrets = Arc::new(SecretsManagerStore::new(
        aws.secrets_manager(),
        &names.secret_prefix,
    ));
    let manager = Manager {
        connections: connections.clone(),
        data_points: points.clone(),
        auth_states: Arc::new(DynamoAuthStateStore::new(
            dynamodb,
            &names.tables.auth_states,
        )),
        secrets: secrets.clone(),
        salesforce: salesforce.clone(),
        clock: Arc::new(SystemClock),
        policy: Policy {
            allow_loopback_login: true,
            ..Policy::default()
        },
        actor: "the management API",
    };
    let engine = SyncEngine::new(
        connections,
        points.clone(),
        secrets,
        Arc::new(SystemClock),
        salesforce,
        SyncConfig::default(),
    );
    let bus = format!("{}-bus", names.tables.data_points);
    let pattern = serde_json::json!({"source": ["casesync"], "detail": {"channel": ["Support"]}});
    let consumer_queue = aws.bus_to_queue(&bus, &pattern).await;
    let stream = aws.stream(&names.tables.data_points).await;
    World {
        api: Api {
            manager: manager.clone(),
            callback_url: None,
            feed: points.clone(),
            cursor_key: Arc::new(CursorKey::new(b"mirror test key".to_vec())),
        },
        publisher: Publisher::new(EventBridgePublisher::new(aws.eventbridge(), bus)),
        aws,
        sim,
        queue_id,
        manager,
        engine,
        points,
        stream,
        consumer_queue,
    }
}

impl World {
    async fn connect(&self) -> Connection {
        self.manager
            .connect_with_refresh_token(
                NewConnection {
                    channel: ChannelName::parse("Support").unwrap(),
                    login_url: casesync_core::domain::LoginUrl::parse(&self.sim.login_url())
                        .unwrap(),
                    scope: QueueScope::parse(&self.queue_id).unwrap(),
                    backfill: BackfillWindow::Days7,
                    api_version: ApiVersion::DEFAULT,
                },
                SecretString::from(self.sim.mint_refresh_token()),
            )
            .await
            .expect("the headless connect succeeds")
    }

    /// A worker's runs, until the connection is caught up.
    async fn sync(&self, id: &ConnectionId) {
        for _ in 0..20 {
            let report = self
                .engine
                .sync(id, Duration::from_secs(60), None)
                .await
                .unwrap();
            if report.outcome != SyncOutcome::MoreWork {
                assert_eq!(report.outcome, SyncOutcome::Done, "{report:?}");
                return;
            }
        }
        panic!("the sync did not catch up");
    }

    /// The publisher's invocations for whatever the stream holds now.
    async fn publish(&mut self) {
        while let Some(event) = self.stream.next_event().await {
            let event: Event = serde_json::from_value(event).unwrap();
            let response = self.publisher.process(event).await;
            assert!(response.batch_item_failures.is_empty());
        }
    }

    async fn get(&self, path: &str) -> Value {
        let req = lambda_http::request::from_str(&http_api_event("GET", path, None, &[]))
            .expect("a valid event");
        let response = self.api.handle(req).await;
        assert_eq!(response.status(), 200, "{path}");
        match response.body() {
            lambda_http::Body::Text(t) => serde_json::from_str(t).unwrap(),
            other => panic!("a JSON text body, got {other:?}"),
        }
    }
}

/// A consumer of the channel: the read API's pages (with the cursor it keeps) and the events
/// in its SQS queue.
#[derive(Default)]
struct Consumer {
    cursor: Option<String>,
    mirror: BTreeMap<String, Value>,
    deleted: BTreeSet<String>,
    events: usize,
}

impl Consumer {
    /// One page; `false` when it was empty.
    async fn page(&mut self, w: &World) -> bool {
        let path = match &self.cursor {
            Some(c) => format!("/channels/Support/data-points?limit=4&cursor={c}"),
            None => "/channels/Support/data-points?limit=4".to_owned(),
        };
        let page = w.get(&path).await;
        self.cursor = Some(page["next_cursor"].as_str().unwrap().to_owned());
        assert_eq!(page["omitted"], serde_json::json!([]));
        let points = page["data_points"].as_array().unwrap();
        for p in points {
            let id = p["id"].as_str().unwrap().to_owned();
            if !self.deleted.contains(&id) {
                self.mirror.insert(id, p.clone());
            }
        }
        !points.is_empty()
    }

    async fn drain_events(&mut self, w: &World) {
        for e in w.aws.drain_queue(&w.consumer_queue).await {
            self.events += 1;
            if e["detail-type"] == "Data Point Deleted" {
                let id = e["detail"]["id"].as_str().unwrap().to_owned();
                self.mirror.remove(&id);
                self.deleted.insert(id);
            }
        }
    }

    /// Pages until the API has nothing new, then reads the events.
    async fn catch_up(&mut self, w: &World) {
        tokio::time::sleep((LAG + TimeDelta::milliseconds(100)).to_std().unwrap()).await;
        while self.page(w).await {}
        self.drain_events(w).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_of_the_api_and_the_events_ends_with_an_exact_copy_of_the_channel() {
    let mut w = world().await;
    let mut consumer = Consumer::default();

    // A backfill of two connections of the same org into one channel; the consumer starts
    // reading half-way through the second.
    let a = w.connect().await;
    w.sync(&a.id).await;
    w.publish().await;
    consumer.page(&w).await;
    let b = w.connect().await;
    w.sync(&b.id).await;
    w.publish().await;
    consumer.page(&w).await;

    // Edits, a reopened and re-closed Case, new Cases, while the consumer is mid-way.
    let cases: Vec<String> = w
        .sim
        .with_org(|o| o.cases().iter().map(|c| c.id.as_str().to_owned()).collect());
    w.sim.with_org(|o| {
        for id in &cases[..3] {
            o.update_case(id, |c| {
                c.subject = Some(format!("{:?} (edited)", c.subject))
            });
            o.touch(id, minutes_ago(8));
        }
        o.reopen_case(&cases[5], minutes_ago(9));
        o.close_case(&cases[5], minutes_ago(7));
        closed_case(o, &w.queue_id, minutes_ago(6), "A new one");
    });
    consumer.page(&w).await;
    w.sync(&a.id).await;
    w.sync(&b.id).await;
    w.publish().await;
    consumer.catch_up(&w).await;

    // The connection `a` is deleted.
    let deleted = w.manager.delete(&a.id).await.unwrap();
    assert!(deleted.data_points_deleted > 0);
    w.publish().await;
    consumer.catch_up(&w).await;

    // Then the mirror is exactly the channel: b's points, with their latest content
    let everything = w
        .points
        .changes(&ChangeQuery {
            channel: ChannelName::parse("Support").unwrap(),
            connection: None,
            after: None,
            since: None,
            until: Utc::now() + TimeDelta::minutes(1),
            limit: 1000,
            budget: None,
            descending: false,
        })
        .await
        .unwrap();
    let truth: BTreeMap<String, Value> = everything
        .into_iter()
        .map(|p| {
            let json: Value = serde_json::from_str(&p.json.expect("prefetched")).unwrap();
            (p.entry.position.id, json)
        })
        .collect();
    assert_eq!(
        truth.len(),
        26,
        "every in-scope Case, once per remaining connection"
    );
    assert!(truth.values().all(|p| p["connection_id"] == b.id.as_str()));
    assert_eq!(consumer.mirror, truth);
    // every point of the deleted connection was seen deleted
    assert_eq!(consumer.deleted.len(), 26);
    assert!(consumer.deleted.iter().all(|id| !truth.contains_key(id)));
    // and the edits arrived
    let edited = truth
        .values()
        .filter(|p| p["subject"].as_str().unwrap_or("").contains("(edited)"))
        .count();
    assert_eq!(edited, 3);
    assert!(
        consumer.events >= 26 * 2 + 26 + 4,
        "{} events",
        consumer.events
    );
}
