//! The publisher over moto: data points written to DynamoDB, the table's stream read as Lambda
//! reads it, events published on an EventBridge bus whose rule delivers them to a consumer's
//! SQS queue. And the binary, through the stand-in Lambda Runtime API.

use std::collections::HashMap;
use std::time::Duration;

use aws_lambda_events::dynamodb::Event;
use casesync_aws::testing::{Moto, moto, runtime_api};
use casesync_aws::{DynamoDataPointStore, EventBridgePublisher};
use casesync_core::data_point::{ContentSource, DataPoint, Direction, Message, Participant};
use casesync_core::domain::{CaseId, ChannelName, ConnectionId};
use casesync_core::events::{DataPointEvent, compare_versions};
use casesync_core::ports::{DataPointDeleter, DataPointWriter};
use casesync_publisher::Publisher;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

fn point(connection: &ConnectionId, channel: &str, i: usize, subject: &str) -> DataPoint {
    let case = CaseId::parse(&format!("500xx{i:010}")).unwrap();
    let at: DateTime<Utc> = "2024-03-01T09:15:02Z".parse().unwrap();
    DataPoint {
        id: DataPoint::id_for(connection, &case),
        connection_id: connection.clone(),
        channel: ChannelName::parse(channel).unwrap(),
        case_number: format!("{i:08}"),
        case_id: case,
        subject: Some(subject.to_owned()),
        status: "Closed".into(),
        priority: Some("High".into()),
        origin: Some("Email".into()),
        case_type: None,
        created_date: at,
        system_modstamp: at + TimeDelta::minutes(i as i64),
        salesforce_link: "https://acme.my.salesforce.com/lightning/r/Case/x/view".into(),
        participant: Participant {
            email: Some("jane@example.com".into()),
            name: Some("Jane Doe".into()),
        },
        content_source: ContentSource::EmailThread,
        conversation: vec![Message {
            message_id: None,
            direction: Some(Direction::Inbound),
            from_address: Some("jane@example.com".into()),
            from_name: None,
            to_address: None,
            sent_at: at,
            subject: None,
            text: format!("SECRET-CASE-TEXT {subject}"),
        }],
    }
}

struct Setup {
    aws: Moto,
    table: String,
    points: DynamoDataPointStore,
    bus: String,
    queue: String,
}

async fn setup(label: &str) -> Setup {
    let aws = moto().await;
    let names = aws.tables(label).await;
    let bus = format!("{}-bus", &names.tables.data_points);
    // One channel's events, as docs/deploy.md's example rule delivers them.
    let pattern = serde_json::json!({"source": ["casesync"], "detail": {"channel": ["Support"]}});
    let queue = aws.bus_to_queue(&bus, &pattern).await;
    Setup {
        points: DynamoDataPointStore::new(aws.dynamodb(), &names.tables.data_points),
        table: names.tables.data_points,
        aws,
        bus,
        queue,
    }
}

impl Setup {
    fn publisher(&self, bus: &str) -> Publisher {
        Publisher::new(EventBridgePublisher::new(self.aws.eventbridge(), bus))
    }

    /// What the consumer received: (detail-type, detail), in arrival order.
    async fn received(&self) -> Vec<(String, DataPointEvent, Value)> {
        self.aws
            .drain_queue(&self.queue)
            .await
            .into_iter()
            .map(|e| {
                let detail: DataPointEvent = serde_json::from_value(e["detail"].clone())
                    .expect("the detail is the event contract");
                (e["detail-type"].as_str().unwrap().to_owned(), detail, e)
            })
            .collect()
    }
}

#[tokio::test]
async fn each_created_updated_or_deleted_point_is_one_event_and_unchanged_rewrites_none() {
    let s = setup("pub-events").await;
    let mut stream = s.aws.stream(&s.table).await;
    let publisher = s.publisher(&s.bus);
    let conn = ConnectionId::new_random();
    let other = ConnectionId::new_random();

    // Given three points created (one of them a multi-part thread), one in another channel
    let mut big = point(&conn, "Support", 3, "big");
    // Text that compresses poorly, so its body is split into part items.
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    big.conversation[0].text = (0..1_500_000)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            char::from(b' ' + (seed % 94) as u8)
        })
        .collect();
    s.points
        .upsert_data_points(&[
            point(&conn, "Support", 1, "a"),
            point(&conn, "Support", 2, "b"),
            big.clone(),
            point(&other, "Billing", 9, "elsewhere"),
        ])
        .await
        .unwrap();
    // then one updated, one rewritten unchanged, and later the connection deleted
    let mut updated = point(&conn, "Support", 1, "a, again");
    updated.system_modstamp += TimeDelta::hours(1);
    s.points
        .upsert_data_points(&[updated.clone(), point(&conn, "Support", 2, "b")])
        .await
        .unwrap();
    s.points.delete_data_points(&conn).await.unwrap();

    // When the publisher handles the stream, in batches as Lambda would
    while let Some(event) = stream.next_event().await {
        let event: Event = serde_json::from_value(event).expect("a DynamoDB stream event");
        let response = publisher.process(event).await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
    }
    let got = s.received().await;

    // Then the consumer received exactly the Support channel's changes, one event each
    let mut by_kind: HashMap<String, Vec<&DataPointEvent>> = HashMap::new();
    for (kind, detail, _) in &got {
        by_kind.entry(kind.clone()).or_default().push(detail);
    }
    let ids = |kind: &str| -> Vec<String> {
        let mut v: Vec<String> = by_kind
            .get(kind)
            .map(|d| d.iter().map(|e| e.case_id.clone()).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    let case = |i: usize| format!("500xx{i:010}AAA");
    let all = vec![case(1), case(2), case(3)];
    assert_eq!(ids("Data Point Created"), all, "{got:#?}");
    assert_eq!(ids("Data Point Updated"), vec![case(1)], "{got:#?}");
    assert_eq!(ids("Data Point Deleted"), all, "{got:#?}");
    assert_eq!(
        got.len(),
        7,
        "nothing else: no parts, no unchanged rewrite, no other channel"
    );

    // And each carries the contract's fields and no Case text
    for (_, detail, raw) in &got {
        assert_eq!(raw["source"], "casesync");
        assert_eq!(detail.channel, "Support");
        assert_eq!(detail.connection_id, conn.as_str());
        assert_eq!(detail.path, format!("/data-points/{}", detail.id));
        assert!(!detail.version.is_empty());
        assert!(!raw.to_string().contains("SECRET-CASE-TEXT"), "{raw}");
    }
    let updated_event = by_kind["Data Point Updated"][0];
    assert_eq!(updated_event.id, updated.id);
    assert_eq!(updated_event.case_number, "00000001");
    assert_eq!(updated_event.system_modstamp, "2024-03-01T10:16:02Z");
    // Versions order the changes of one point.
    let of_one: Vec<&str> = got
        .iter()
        .filter(|(_, d, _)| d.id == updated.id)
        .map(|(_, d, _)| d.version.as_str())
        .collect();
    assert_eq!(of_one.len(), 3);
    assert!(
        of_one
            .windows(2)
            .all(|w| compare_versions(w[0], w[1]).is_lt())
    );
}

#[tokio::test]
async fn an_event_that_cannot_be_published_fails_its_record_so_lambda_delivers_it_again() {
    let s = setup("pub-fail").await;
    let mut stream = s.aws.stream(&s.table).await;
    let conn = ConnectionId::new_random();
    s.points
        .upsert_data_points(&[
            point(&conn, "Support", 1, "a"),
            point(&conn, "Support", 2, "b"),
        ])
        .await
        .unwrap();
    let event: Event = serde_json::from_value(stream.next_event().await.unwrap()).unwrap();
    let first = event.records[0].change.sequence_number.clone().unwrap();

    // When the bus does not exist (or EventBridge refuses)
    let response = s.publisher("no-such-bus").process(event.clone()).await;

    // Then the batch reports its first record failed (Lambda resumes from it)
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(
        response.batch_item_failures[0].item_identifier.as_deref(),
        Some(first.as_str())
    );
    // and delivered again to a working publisher, every event arrives
    let response = s.publisher(&s.bus).process(event).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(s.received().await.len(), 2);
}

#[tokio::test]
async fn without_configuration_it_names_every_missing_variable_and_exits() {
    runtime_api::assert_refuses_to_start_without(
        env!("CARGO_BIN_EXE_publisher"),
        &["EVENT_BUS_NAME"],
    )
    .await;
}

#[tokio::test]
async fn one_stream_batch_through_the_lambda_runtime_api() {
    let s = setup("pub-bin").await;
    let mut stream = s.aws.stream(&s.table).await;
    let conn = ConnectionId::new_random();
    s.points
        .upsert_data_points(&[point(&conn, "Support", 1, "a")])
        .await
        .unwrap();
    let event = stream.next_event().await.unwrap().to_string();

    let (runtime, mut posted) = runtime_api::serve(event, Duration::from_secs(60)).await;
    let mut vars = runtime_api::lambda_env(runtime, s.aws.endpoint_url(), "INFO");
    vars.push(("EVENT_BUS_NAME".into(), s.bus.clone()));
    let child = runtime_api::spawn(env!("CARGO_BIN_EXE_publisher"), &vars, None);
    let (path, body) = tokio::time::timeout(Duration::from_secs(60), posted.recv())
        .await
        .expect("the function answers within a minute")
        .expect("an answer");
    drop(child);

    assert_eq!(
        path, "/2018-06-01/runtime/invocation/req-1/response",
        "{body}"
    );
    let response: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(response["batchItemFailures"], serde_json::json!([]));
    let got = s.received().await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "Data Point Created");
    assert_eq!(got[0].1.id, point(&conn, "Support", 1, "a").id);
}
