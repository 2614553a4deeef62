//! The `scheduler` binary as Lambda runs it: configuration from the environment, the AWS SDK
//! from `AWS_ENDPOINT_URL`, and one schedule event served through a stand-in for the Lambda
//! Runtime API.

use std::time::Duration;

use casesync_aws::testing::{moto, runtime_api};
use casesync_aws::{DynamoConnectionStore, QueueOptions, create_queue};
use casesync_core::domain::{
    ApiVersion, BackfillWindow, ChannelName, Connection, ConnectionId, InstanceUrl, LoginUrl,
    QueueScope,
};
use casesync_core::ports::{ConnectionWriter, WorkItem, WorkKind};
use chrono::Utc;

#[tokio::test]
async fn without_configuration_it_names_every_missing_variable_and_exits() {
    runtime_api::assert_refuses_to_start_without(
        env!("CARGO_BIN_EXE_scheduler"),
        &["CONNECTIONS_TABLE", "WORK_QUEUE_URL"],
    )
    .await;
}

#[tokio::test]
async fn one_tick_through_the_lambda_runtime_api() {
    // Given an active connection
    let aws = moto().await;
    let names = aws.tables("sched-bin").await;
    let queue = create_queue(&aws.sqs(), &names.queue, &QueueOptions::default())
        .await
        .unwrap();
    let store = DynamoConnectionStore::new(aws.dynamodb(), &names.tables.connections);
    let connection = Connection::new(
        ConnectionId::new_random(),
        ChannelName::parse("support").unwrap(),
        LoginUrl::parse("https://login.salesforce.com").unwrap(),
        InstanceUrl::parse("https://acme.my.salesforce.com").unwrap(),
        ApiVersion::DEFAULT,
        QueueScope::parse("all").unwrap(),
        BackfillWindow::parse("30d").unwrap(),
        Utc::now(),
    );
    store.insert_connection(&connection).await.unwrap();

    // When Lambda runs the binary and hands it a schedule event
    let event = serde_json::json!({
        "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event", "source": "aws.events", "account": "123456789012",
        "time": "2024-03-04T17:01:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/casesync-Tick"], "detail": {}
    })
    .to_string();
    let (runtime, mut posted) = runtime_api::serve(event, Duration::from_secs(60)).await;
    let mut vars = runtime_api::lambda_env(runtime, aws.endpoint_url(), "INFO");
    vars.push(("CONNECTIONS_TABLE".into(), names.tables.connections.clone()));
    vars.push(("WORK_QUEUE_URL".into(), queue.queue_url.clone()));
    let child = runtime_api::spawn(env!("CARGO_BIN_EXE_scheduler"), &vars, None);
    let (path, body) = tokio::time::timeout(Duration::from_secs(60), posted.recv())
        .await
        .expect("the function answers within a minute")
        .expect("an answer");
    drop(child);

    // Then it reports one tick sent, and the queue holds it
    assert_eq!(
        path, "/2018-06-01/runtime/invocation/req-1/response",
        "{body}"
    );
    let summary: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(summary["sent"], 1, "{body}");
    let got = aws
        .sqs()
        .receive_message()
        .queue_url(&queue.queue_url)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(got.len(), 1);
    let item: WorkItem = serde_json::from_str(got[0].body().unwrap()).unwrap();
    assert_eq!(item.connection_id, connection.id);
    assert_eq!(item.kind, WorkKind::Tick);
    assert_eq!(
        item.enqueued_at,
        "2024-03-04T17:01:00Z"
            .parse::<chrono::DateTime<Utc>>()
            .unwrap()
    );
}
