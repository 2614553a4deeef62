use std::net::TcpListener;

use casesync_aws::testing::Moto;
use casesync_aws::{DynamoConnectionStore, DynamoDataPointStore, SqsWorkQueue};
use casesync_core::domain::ConnectionId;
use casesync_core::ports::{
    ConnectionReader, DataPointReader, StoreError, WorkItem, WorkKind, WorkQueue,
};

#[tokio::test]
async fn an_unreachable_endpoint_is_unavailable_not_unexpected() {
    // Given an endpoint where nothing listens
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let aws = Moto::connect(&format!("http://127.0.0.1:{port}")).await;
    let store = DynamoConnectionStore::new(aws.dynamodb(), "connections");

    // Then reads fail as transient
    let err = store.list_connections().await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    let queue = SqsWorkQueue::new(aws.sqs(), format!("http://127.0.0.1:{port}/1/q.fifo"));
    let item = WorkItem {
        connection_id: ConnectionId::new_random(),
        kind: WorkKind::Tick,
        enqueued_at: chrono::Utc::now(),
        idle_runs: 0,
        case_ids: Vec::new(),
    };
    assert!(queue.enqueue(&[item]).await.unwrap_err().is_transient());
}

#[tokio::test]
async fn a_missing_table_is_unexpected_and_says_which() {
    let aws = casesync_aws::testing::moto().await;
    let store = DynamoDataPointStore::new(aws.dynamodb(), "no-such-table");
    let err = store
        .count_data_points(&ConnectionId::new_random())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unexpected(_)), "{err}");
    let text = err.to_string();
    assert!(text.contains("no-such-table"), "{text}");
    // One line a person can act on: AWS's code and message, not the raw response.
    assert!(text.contains("ResourceNotFoundException"), "{text}");
    assert!(
        !text.contains("headers") && !text.contains("SdkBody"),
        "{text}"
    );
    assert!(text.len() < 300, "{text}");
}
