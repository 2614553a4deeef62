//! The `worker` binary as Lambda runs it: configuration from the environment, the Connected
//! App's secret from Secrets Manager (moto), the AWS SDK from `AWS_ENDPOINT_URL`, and one SQS
//! batch served through a stand-in for the Lambda Runtime API.

mod support;

use std::time::Duration;

use casesync_aws::testing::runtime_api;
use casesync_core::ports::WorkKind;
use chrono::Utc;
use sf_simulator::SimConfig;
use support::World;

#[tokio::test]
async fn without_configuration_it_names_every_missing_variable_and_exits() {
    runtime_api::assert_refuses_to_start_without(
        env!("CARGO_BIN_EXE_worker"),
        &[
            "CONNECTIONS_TABLE",
            "DATA_POINTS_TABLE",
            "WORK_QUEUE_URL",
            "DLQ_URL",
            "SECRET_PREFIX",
            "SALESFORCE_CLIENT_ID",
            "SALESFORCE_CLIENT_SECRET_ARN",
        ],
    )
    .await;
}

#[tokio::test]
async fn one_batch_through_the_lambda_runtime_api() {
    // Given a connected org, the Connected App's secret in Secrets Manager, and a tick queued
    let w = World::with_cases("wk-bin", SimConfig::default(), 6).await;
    let c = w.connect().await;
    let secret_name = format!("{}/connected-app", w.names.secret_prefix);
    let client_secret = w.sim.client_secret();
    let arn = w
        .aws
        .secrets_manager()
        .create_secret()
        .name(&secret_name)
        .secret_string(format!("{{\"client_secret\": \"{client_secret}\"}}"))
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    w.send(&c.id, WorkKind::Tick, Utc::now()).await;
    let messages = w.receive_from(&w.queue.queue_url, 1).await;
    let event = serde_json::to_string(&w.sqs_event(&messages)).unwrap();

    // When Lambda runs the binary with the template's environment and hands it the batch
    let (runtime, mut posted) = runtime_api::serve(event, Duration::from_secs(120)).await;
    let mut vars = runtime_api::lambda_env(runtime, w.aws.endpoint_url(), "DEBUG");
    vars.extend(
        [
            ("CONNECTIONS_TABLE", w.names.tables.connections.clone()),
            ("DATA_POINTS_TABLE", w.names.tables.data_points.clone()),
            ("WORK_QUEUE_URL", w.queue.queue_url.clone()),
            ("DLQ_URL", w.queue.dead_letter_queue_url.clone()),
            ("SECRET_PREFIX", w.names.secret_prefix.clone()),
            ("SALESFORCE_CLIENT_ID", w.sim.client_id()),
            ("SALESFORCE_CLIENT_SECRET_ARN", arn),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let log = std::env::temp_dir().join(format!("casesync-worker-{}.log", c.id));
    let child = runtime_api::spawn(env!("CARGO_BIN_EXE_worker"), &vars, Some(&log));
    let (path, body) = tokio::time::timeout(Duration::from_secs(60), posted.recv())
        .await
        .expect("the function answers within a minute")
        .expect("an answer");
    drop(child);

    // Then it answers with no failed item, and the Cases are data points
    assert_eq!(
        path, "/2018-06-01/runtime/invocation/req-1/response",
        "{body}"
    );
    let response: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        response["batchItemFailures"],
        serde_json::json!([]),
        "{body}"
    );
    w.assert_complete(&c.id).await;
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(logs.contains("\"message\":\"batch handled\""), "{logs}");
    assert!(
        !logs.contains(&client_secret),
        "the client secret was logged"
    );
}
