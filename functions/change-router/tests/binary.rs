//! The `change-router` binary as Lambda runs it: configuration from the environment, the AWS
//! SDK from `AWS_ENDPOINT_URL` (moto), and one SQS batch of relayed change events served
//! through a stand-in for the Lambda Runtime API.

use std::time::Duration;

use casesync_aws::testing::runtime_api;
use casesync_aws::{DynamoConnectionStore, QueueOptions, create_queue};
use casesync_core::domain::{
    ApiVersion, BackfillWindow, ChannelName, Connection, ConnectionId, InstanceUrl, LoginUrl,
    OrgId, QueueScope,
};
use casesync_core::ports::ConnectionWriter;

#[tokio::test]
async fn without_configuration_it_names_every_missing_variable_and_exits() {
    runtime_api::assert_refuses_to_start_without(
        env!("CARGO_BIN_EXE_change-router"),
        &["CONNECTIONS_TABLE", "WORK_QUEUE_URL"],
    )
    .await;
}

fn relayed(org: &str, case: &str) -> String {
    serde_json::json!({
        "version": "0",
        "id": "0b4a3f6e-0000-4000-8000-000000000001",
        "detail-type": "CaseChangeEvent",
        "source": format!("aws.partner/salesforce.com/{org}/0YLDn0000000001GAA"),
        "account": "123456789012",
        "time": "2026-12-06T10:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {"payload": {"ChangeEventHeader": {
            "entityName": "Case", "recordIds": [case], "changeType": "UPDATE",
            "changeOrigin": "com/salesforce/api/rest/59.0",
            "transactionKey": "0002343d-9d90-e395-ed20-cf416ba652ad", "sequenceNumber": 1,
            "commitTimestamp": 1_796_551_200_000i64, "commitNumber": 11_000_000_001u64,
            "commitUser": "005Dn000001AbCdIAK", "changedFields": ["Status"],
            "diffFields": [], "nulledFields": []
        }, "Status": "Closed"}}
    })
    .to_string()
}

#[tokio::test]
async fn one_batch_through_the_lambda_runtime_api() {
    // Given a connection of an org, and a FIFO work queue
    let aws = casesync_aws::testing::moto().await;
    let names = aws.tables("router-bin").await;
    let queue = create_queue(&aws.sqs(), &names.queue, &QueueOptions::default())
        .await
        .unwrap();
    let org = OrgId::parse("00DDn0000000001").unwrap();
    let mut c = Connection::new(
        ConnectionId::new_random(),
        ChannelName::parse("support").unwrap(),
        LoginUrl::default(),
        InstanceUrl::parse("https://acme.my.salesforce.com").unwrap(),
        ApiVersion::DEFAULT,
        QueueScope::All,
        BackfillWindow::Days30,
        chrono::Utc::now(),
    );
    c.org_id = Some(org.clone());
    DynamoConnectionStore::new(aws.dynamodb(), &names.tables.connections)
        .insert_connection(&c)
        .await
        .unwrap();

    // When Lambda hands the binary a batch: an event of that org, and one that is not an event
    let event = serde_json::json!({"Records": [
        {"messageId": "m-1", "receiptHandle": "r-1", "body": relayed(org.as_str(), "500Dn00003H1h3AIAR"),
         "attributes": {}, "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
         "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:change-events", "awsRegion": "us-east-1"},
        {"messageId": "m-2", "receiptHandle": "r-2", "body": "{\"detail\": {}}",
         "attributes": {}, "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
         "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:change-events", "awsRegion": "us-east-1"}
    ]})
    .to_string();
    let (runtime, mut posted) = runtime_api::serve(event, Duration::from_secs(60)).await;
    let mut vars = runtime_api::lambda_env(runtime, aws.endpoint_url(), "INFO");
    vars.push(("CONNECTIONS_TABLE".into(), names.tables.connections.clone()));
    vars.push(("WORK_QUEUE_URL".into(), queue.queue_url.clone()));
    let _child = runtime_api::spawn(env!("CARGO_BIN_EXE_change-router"), &vars, None);
    let (_, body) = tokio::time::timeout(Duration::from_secs(60), posted.recv())
        .await
        .expect("the router answers within a minute")
        .expect("an answer");

    // Then the garbage is reported failed, and the Case is queued in its connection's group
    let response: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        response["batchItemFailures"],
        serde_json::json!([{"itemIdentifier": "m-2"}]),
        "{body}"
    );
    let got = aws
        .sqs()
        .receive_message()
        .queue_url(&queue.queue_url)
        .max_number_of_messages(10)
        .message_system_attribute_names(
            aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId,
        )
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(got.len(), 1);
    let item: serde_json::Value = serde_json::from_str(got[0].body().unwrap()).unwrap();
    assert_eq!(item["kind"], "changes");
    assert_eq!(item["connection_id"], c.id.as_str());
    assert_eq!(item["case_ids"], serde_json::json!(["500Dn00003H1h3AIAR"]));
    let group = got[0]
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId))
        .cloned();
    assert_eq!(group.as_deref(), Some(c.id.as_str()));
}
