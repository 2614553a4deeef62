//! Upgrading a stack deployed before the change index: a connection whose stored data points
//! lack the index attributes is queued for indexing by the scheduler's rule, whatever its
//! state, and the worker gives its points those attributes, after which the read path lists
//! them with their exact content.

mod support;

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use casesync_core::domain::{ChannelName, ConnectionState};
use casesync_core::manage::work::Targets;
use casesync_core::ports::{ChangeFeed, ChangeQuery, StateWriter, WorkKind};
use chrono::{TimeDelta, Utc};
use sf_simulator::SimConfig;
use support::{World, test_timing};

const PLENTY: Duration = Duration::from_secs(120);

fn everything() -> ChangeQuery {
    ChangeQuery {
        channel: ChannelName::parse("support").unwrap(),
        connection: None,
        after: None,
        since: None,
        until: Utc::now() + TimeDelta::minutes(1),
        limit: 1000,
        budget: None,
        descending: false,
    }
}

#[tokio::test]
async fn points_stored_before_the_change_index_are_indexed_by_the_worker() {
    // Given a connection synced into DynamoDB
    let w = World::with_cases("index-upgrade", SimConfig::default(), 12).await;
    let c = w.connect().await;
    w.send(&c.id, WorkKind::Tick, Utc::now()).await;
    w.drain(&w.worker(test_timing()), PLENTY, 10).await;
    let before = w.stored(&c.id).await;
    assert_eq!(before.len(), 12);
    // ... and made to look as a stack before the index left it: heads without the index
    // attributes, the connection not marked indexed, and (any state will do) disconnected
    let ddb = w.aws.dynamodb();
    for p in &before {
        ddb.update_item()
            .table_name(&w.names.tables.data_points)
            .key("connection_id", AttributeValue::S(c.id.to_string()))
            .key("case_id", AttributeValue::S(p.case_id.to_string()))
            .update_expression("REMOVE channel, changed, escaped_len, case_number")
            .send()
            .await
            .unwrap();
    }
    ddb.update_item()
        .table_name(&w.names.tables.connections)
        .key("connection_id", AttributeValue::S(c.id.to_string()))
        .update_expression("REMOVE points_indexed")
        .send()
        .await
        .unwrap();
    w.connections
        .set_state(&c.id, ConnectionState::Disconnected, Some("by the user"))
        .await
        .unwrap();
    assert!(w.points.changes(&everything()).await.unwrap().is_empty());
    assert!(w.points.by_id(&before[0].id).await.unwrap().is_none());

    // When the scheduler's rule picks the work for it, and the worker runs it
    let connection = w.connection(&c.id).await;
    assert!(!connection.points_indexed);
    let work = Targets::split([connection]).work(Utc::now());
    assert_eq!(
        work.len(),
        1,
        "no tick for a disconnected connection, only the indexing"
    );
    assert_eq!(work[0].kind, WorkKind::IndexPoints);
    w.send(&c.id, WorkKind::IndexPoints, work[0].enqueued_at)
        .await;
    w.drain(&w.worker(test_timing()), PLENTY, 10).await;

    // Then every point is listed in the channel's change order, exactly as stored, and the
    // connection is marked indexed (so the scheduler queues nothing more for it)
    let listed = w.points.changes(&everything()).await.unwrap();
    assert_eq!(listed.len(), 12);
    for p in &before {
        let found = listed
            .iter()
            .find(|l| l.entry.position.id == p.id)
            .expect("listed");
        assert_eq!(
            found.json.as_deref().map(str::as_bytes),
            Some(p.encode().json.as_slice())
        );
    }
    let after = w.connection(&c.id).await;
    assert!(after.points_indexed);
    assert_eq!(
        after.state,
        ConnectionState::Disconnected,
        "its state is untouched"
    );
    assert!(Targets::split([after]).work(Utc::now()).is_empty());
    assert_eq!(
        w.stored(&c.id).await,
        before,
        "the points themselves are unchanged"
    );
}
