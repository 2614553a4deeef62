//! The `api` binary as Lambda runs it: configuration from the environment, the client secret
//! from Secrets Manager (moto), the AWS SDK from `AWS_ENDPOINT_URL`, and one invocation served
//! through a stand-in for the Lambda Runtime API on loopback.

mod common;

use std::time::Duration;

use casesync_aws::testing::runtime_api;

#[tokio::test]
async fn without_configuration_it_names_every_missing_variable_and_exits() {
    runtime_api::assert_refuses_to_start_without(
        env!("CARGO_BIN_EXE_api"),
        &[
            "CONNECTIONS_TABLE",
            "DATA_POINTS_TABLE",
            "AUTH_STATES_TABLE",
            "SECRET_PREFIX",
            "SALESFORCE_CLIENT_ID",
            "SALESFORCE_CLIENT_SECRET_ARN",
            "CURSOR_SECRET_ARN",
        ],
    )
    .await;
}

/// The environment of the api function, with its two secrets created in moto.
async fn api_env(
    aws: &casesync_aws::testing::Moto,
    names: &casesync_aws::testing::ResourceNames,
) -> Vec<(&'static str, String)> {
    let secret_name = format!("{}/connected-app", names.secret_prefix);
    aws.secrets_manager()
        .create_secret()
        .name(&secret_name)
        .secret_string(r#"{"client_secret":"the-consumer-secret"}"#)
        .send()
        .await
        .unwrap();
    let cursor_secret = format!("{}/cursor-key", names.secret_prefix);
    aws.secrets_manager()
        .create_secret()
        .name(&cursor_secret)
        .secret_string("a-generated-cursor-signing-key-0123456789")
        .send()
        .await
        .unwrap();
    vec![
        ("CONNECTIONS_TABLE", names.tables.connections.clone()),
        ("DATA_POINTS_TABLE", names.tables.data_points.clone()),
        ("AUTH_STATES_TABLE", names.tables.auth_states.clone()),
        ("SECRET_PREFIX", names.secret_prefix.clone()),
        ("SALESFORCE_CLIENT_ID", "3MVG9-the-consumer-key".into()),
        ("SALESFORCE_CLIENT_SECRET_ARN", secret_name),
        ("CURSOR_SECRET_ARN", cursor_secret),
        ("CALLBACK_URL", String::new()),
    ]
}

#[tokio::test]
async fn a_data_point_through_the_lambda_runtime_api() {
    // Given a stored data point whose text needs JSON escaping
    let aws = casesync_aws::testing::moto().await;
    let names = aws.tables("api-bin-read").await;
    let vars_of_api = api_env(&aws, &names).await;
    let connection = casesync_core::domain::ConnectionId::new_random();
    let mut p = common::point(&connection, 1);
    p.conversation[0].text = "He said \"no\" \\ then <b>left</b>\n«ünïcödé»".into();
    casesync_aws::DynamoDataPointStore::new(aws.dynamodb(), &names.tables.data_points)
        .upsert_data_points(std::slice::from_ref(&p))
        .await
        .unwrap();
    use casesync_core::ports::DataPointWriter;
    let event = common::event("GET", &format!("/data-points/{}", p.id), None);
    let (runtime, mut posted) = runtime_api::serve(event, Duration::from_secs(60)).await;
    let mut vars = runtime_api::lambda_env(runtime, aws.endpoint_url(), "INFO");
    vars.extend(vars_of_api.into_iter().map(|(k, v)| (k.to_owned(), v)));

    // When Lambda runs the binary with GET /data-points/{id}
    let _child = runtime_api::spawn(env!("CARGO_BIN_EXE_api"), &vars, None);
    let (_, body) = tokio::time::timeout(Duration::from_secs(60), posted.recv())
        .await
        .expect("the function answers within a minute")
        .expect("an answer");

    // Then the response carries the stored JSON exactly
    let response: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(response["statusCode"], 200, "{body}");
    assert_eq!(
        response["body"].as_str().unwrap().as_bytes(),
        p.encode().json.as_slice()
    );
}

#[tokio::test]
async fn one_invocation_through_the_lambda_runtime_api() {
    let aws = casesync_aws::testing::moto().await;
    let names = aws.tables("api-bin").await;
    let vars_of_api = api_env(&aws, &names).await;
    let event = common::event(
        "POST",
        "/connections",
        Some(r#"{"channel":"support","queues":"all","backfill":"30d"}"#),
    );
    let (runtime, mut posted) = runtime_api::serve(event, Duration::from_secs(60)).await;

    let mut vars = runtime_api::lambda_env(runtime, aws.endpoint_url(), "INFO");
    vars.extend(vars_of_api.into_iter().map(|(k, v)| (k.to_owned(), v)));
    let _child = runtime_api::spawn(env!("CARGO_BIN_EXE_api"), &vars, None);

    let (path, body) = tokio::time::timeout(Duration::from_secs(60), posted.recv())
        .await
        .expect("the function answers within a minute")
        .expect("an answer");
    assert_eq!(
        path, "/2018-06-01/runtime/invocation/req-1/response",
        "{body}"
    );
    let response: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(response["statusCode"], 201, "{body}");
    let answer: serde_json::Value =
        serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    let url = url::Url::parse(answer["authorize_url"].as_str().unwrap()).unwrap();
    assert_eq!(
        url.origin().ascii_serialization(),
        "https://login.salesforce.com"
    );
    let pairs: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(pairs["client_id"], "3MVG9-the-consumer-key");
    assert_eq!(pairs["redirect_uri"], common::callback_url());
    assert!(!body.contains("the-consumer-secret"));
    // The pending flow is in the auth states table.
    let scan = aws
        .dynamodb()
        .scan()
        .table_name(&names.tables.auth_states)
        .send()
        .await
        .unwrap();
    assert_eq!(scan.count(), 1);
}
