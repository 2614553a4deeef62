//! The `oauth-callback` binary as Lambda runs it: configuration from the environment, the
//! client secret from Secrets Manager (moto), the AWS SDK from `AWS_ENDPOINT_URL`, and one
//! invocation served through a stand-in for the Lambda Runtime API on loopback.

use std::time::Duration;

use casesync_aws::testing::runtime_api;

#[tokio::test]
async fn without_configuration_it_names_every_missing_variable_and_exits() {
    runtime_api::assert_refuses_to_start_without(
        env!("CARGO_BIN_EXE_oauth-callback"),
        &[
            "CONNECTIONS_TABLE",
            "AUTH_STATES_TABLE",
            "SECRET_PREFIX",
            "SALESFORCE_CLIENT_ID",
            "SALESFORCE_CLIENT_SECRET_ARN",
        ],
    )
    .await;
}

#[tokio::test]
async fn one_invocation_through_the_lambda_runtime_api() {
    let aws = casesync_aws::testing::moto().await;
    let names = aws.tables("callback-bin").await;
    let secret_name = format!("{}/connected-app", names.secret_prefix);
    aws.secrets_manager()
        .create_secret()
        .name(&secret_name)
        .secret_string("the-consumer-secret")
        .send()
        .await
        .unwrap();
    let query = "code=aPrxTheCodeFromTheBrowser0123456789%3D%3D&state=forgedstate0123456789";
    let event = serde_json::json!({
        "version": "2.0",
        "routeKey": "GET /oauth/callback",
        "rawPath": "/oauth/callback",
        "rawQueryString": query,
        "headers": {"host": "abc123def4.execute-api.us-east-1.amazonaws.com", "accept": "text/html"},
        "queryStringParameters": {"code": "aPrxTheCodeFromTheBrowser0123456789==", "state": "forgedstate0123456789"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123def4",
            "domainName": "abc123def4.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123def4",
            "http": {"method": "GET", "path": "/oauth/callback", "protocol": "HTTP/1.1",
                     "sourceIp": "203.0.113.7", "userAgent": "Mozilla/5.0"},
            "requestId": "Jx1Q2jKLoAMEVXw=",
            "routeKey": "GET /oauth/callback",
            "stage": "$default",
            "time": "12/Mar/2024:10:00:00 +0000",
            "timeEpoch": 1710237600000i64
        },
        "isBase64Encoded": false
    })
    .to_string();
    let (runtime, mut posted) = runtime_api::serve(event, Duration::from_secs(60)).await;

    let log = std::env::temp_dir().join(format!(
        "casesync-oauth-callback-{}.log",
        uuid_like(&names.secret_prefix)
    ));
    let mut vars = runtime_api::lambda_env(runtime, aws.endpoint_url(), "TRACE");
    vars.extend(
        [
            ("CONNECTIONS_TABLE", names.tables.connections.clone()),
            ("DATA_POINTS_TABLE", names.tables.data_points.clone()),
            ("AUTH_STATES_TABLE", names.tables.auth_states.clone()),
            ("SECRET_PREFIX", names.secret_prefix.clone()),
            ("SALESFORCE_CLIENT_ID", "3MVG9-the-consumer-key".into()),
            ("SALESFORCE_CLIENT_SECRET_ARN", secret_name.clone()),
            ("APP_URL", "https://app.example.com/salesforce".into()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let child = runtime_api::spawn(env!("CARGO_BIN_EXE_oauth-callback"), &vars, Some(&log));

    let (path, body) = tokio::time::timeout(Duration::from_secs(60), posted.recv())
        .await
        .expect("the function answers within a minute")
        .expect("an answer");
    assert_eq!(
        path, "/2018-06-01/runtime/invocation/req-1/response",
        "{body}"
    );
    let response: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(response["statusCode"], 400, "{body}");
    assert_eq!(response["headers"]["cache-control"], "no-store");
    assert_eq!(response["headers"]["referrer-policy"], "no-referrer");
    let html = response["body"].as_str().unwrap();
    assert!(html.contains("already used"), "{html}");
    assert!(
        html.contains("href=\"https://app.example.com/salesforce\""),
        "{html}"
    );
    assert!(!body.contains("aPrxTheCodeFromTheBrowser"));

    // Even at TRACE, the raw event (it holds the code) was not logged.
    drop(child);
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(logs.contains("OAuth callback refused"), "{logs}");
    assert!(logs.contains("\"level\":\"TRACE\""), "TRACE is on: {logs}");
    assert!(
        !logs.contains("aPrxTheCodeFromTheBrowser"),
        "the code was logged: {logs}"
    );
    assert!(!logs.contains("the-consumer-secret"));
}

/// The unique part of a test's resource prefix, for a file name.
fn uuid_like(prefix: &str) -> String {
    prefix
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect()
}
