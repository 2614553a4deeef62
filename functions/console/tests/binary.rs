//! The `console` binary as Lambda runs it: configuration from the environment, its secrets
//! from Secrets Manager (moto), and one request served through a stand-in for the Lambda
//! Runtime API on loopback, as API Gateway's HTTP API (payload 2.0) sends it.

use std::time::Duration;

use casesync_aws::testing::{http_api_event, runtime_api};

#[tokio::test]
async fn without_configuration_it_names_every_missing_variable_and_exits() {
    runtime_api::assert_refuses_to_start_without(
        env!("CARGO_BIN_EXE_console"),
        &[
            "CONNECTIONS_TABLE",
            "DATA_POINTS_TABLE",
            "AUTH_STATES_TABLE",
            "SECRET_PREFIX",
            "SALESFORCE_CLIENT_ID",
            "SALESFORCE_CLIENT_SECRET_ARN",
            "CURSOR_SECRET_ARN",
            "USER_POOL_ID",
            "USER_POOL_CLIENT_ID",
        ],
    )
    .await;
}

/// Asks the binary for `path`; returns its answer (the API Gateway response JSON).
async fn invoke(path: &str) -> serde_json::Value {
    let aws = casesync_aws::testing::moto().await;
    let names = aws.tables("console-bin").await;
    let sm = aws.secrets_manager();
    let mut vars_of_console = vec![
        ("CONNECTIONS_TABLE", names.tables.connections.clone()),
        ("DATA_POINTS_TABLE", names.tables.data_points.clone()),
        ("AUTH_STATES_TABLE", names.tables.auth_states.clone()),
        ("SECRET_PREFIX", names.secret_prefix.clone()),
        ("SALESFORCE_CLIENT_ID", "3MVG9-the-consumer-key".into()),
        ("USER_POOL_ID", "us-east-1_AbCdEf123".into()),
        ("USER_POOL_CLIENT_ID", "4abcdefghijklmnopqrstu1234".into()),
    ];
    for (var, name, value) in [
        (
            "SALESFORCE_CLIENT_SECRET_ARN",
            "connected-app",
            "the-consumer-secret",
        ),
        (
            "CURSOR_SECRET_ARN",
            "cursor-key",
            "a-generated-cursor-signing-key-0123456789",
        ),
    ] {
        let name = format!("{}/{name}", names.secret_prefix);
        sm.create_secret()
            .name(&name)
            .secret_string(value)
            .send()
            .await
            .unwrap();
        vars_of_console.push((var, name));
    }
    let event = http_api_event("GET", path, None, &[("accept", "text/html")]);
    let (runtime, mut posted) = runtime_api::serve(event, Duration::from_secs(60)).await;
    let mut vars = runtime_api::lambda_env(runtime, aws.endpoint_url(), "INFO");
    vars.extend(vars_of_console.into_iter().map(|(k, v)| (k.to_owned(), v)));
    let _child = runtime_api::spawn(env!("CARGO_BIN_EXE_console"), &vars, None);
    let (path, body) = tokio::time::timeout(Duration::from_secs(60), posted.recv())
        .await
        .expect("the function answers within a minute")
        .expect("an answer");
    assert!(path.ends_with("/response"), "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn a_page_without_a_session_goes_to_sign_in_through_the_lambda_runtime_api() {
    let response = invoke("/console/channels/support").await;
    assert_eq!(response["statusCode"], 303, "{response}");
    assert_eq!(
        response["headers"]["location"],
        "/console/sign-in?next=%2Fconsole%2Fchannels%2Fsupport&reason=required"
    );
    assert!(
        response["headers"]["content-security-policy"]
            .as_str()
            .is_some_and(|csp| csp.contains("frame-ancestors 'none'")),
        "{response}"
    );
}

#[tokio::test]
async fn the_sign_in_page_through_the_lambda_runtime_api() {
    let response = invoke("/console/sign-in").await;
    assert_eq!(response["statusCode"], 200, "{response}");
    let body = response["body"].as_str().unwrap();
    assert!(body.contains("Sign in to casesync"), "{body}");
    assert!(body.contains("action=\"/console/sign-in\""), "{body}");
}
