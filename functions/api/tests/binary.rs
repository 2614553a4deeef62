//! The `api` binary as Lambda runs it: configuration from the environment, the client secret
//! from Secrets Manager (moto), the AWS SDK from `AWS_ENDPOINT_URL`, and one invocation served
//! through a stand-in for the Lambda Runtime API on loopback.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::{get, post};
use tokio::sync::mpsc;

const NEXT: &str = "/2018-06-01/runtime/invocation/next";

#[derive(Clone)]
struct FakeRuntime {
    event: String,
    served: Arc<AtomicBool>,
    posted: mpsc::UnboundedSender<(String, String)>,
}

async fn next(State(rt): State<FakeRuntime>) -> (StatusCode, HeaderMap, String) {
    if rt.served.swap(true, Ordering::SeqCst) {
        // One invocation per test: the function then waits, as between real invocations.
        std::future::pending::<()>().await;
    }
    let mut headers = HeaderMap::new();
    headers.insert("lambda-runtime-aws-request-id", "req-1".parse().unwrap());
    headers.insert(
        "lambda-runtime-deadline-ms",
        "9999999999999".parse().unwrap(),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:api"
            .parse()
            .unwrap(),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        "Root=1-65f1c2d3-0123456789abcdef01234567".parse().unwrap(),
    );
    (StatusCode::OK, headers, rt.event.clone())
}

async fn posted(State(rt): State<FakeRuntime>, uri: Uri, body: String) -> StatusCode {
    let _ = rt.posted.send((uri.path().to_owned(), body));
    StatusCode::ACCEPTED
}

/// Serves `event` once; yields what the function posts back (path, body).
async fn fake_runtime(event: String) -> (SocketAddr, mpsc::UnboundedReceiver<(String, String)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let state = FakeRuntime {
        event,
        served: Arc::new(AtomicBool::new(false)),
        posted: tx,
    };
    let app = Router::new()
        .route(NEXT, get(next))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(posted))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(posted))
        .route("/2018-06-01/runtime/init/error", post(posted))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, rx)
}

/// The binary with only the given environment (plus PATH).
fn spawn(vars: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_api"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.spawn().expect("the api binary starts")
}

/// Kills the child when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn without_configuration_it_names_every_missing_variable_and_exits() {
    let child = spawn(&[("AWS_LAMBDA_LOG_FORMAT", "JSON".into())]);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();

    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for var in [
        "CONNECTIONS_TABLE",
        "DATA_POINTS_TABLE",
        "AUTH_STATES_TABLE",
        "SECRET_PREFIX",
        "SALESFORCE_CLIENT_ID",
        "SALESFORCE_CLIENT_SECRET_ARN",
    ] {
        assert!(text.contains(var), "{var} not named in: {text}");
    }
    assert!(
        text.contains("\"level\":\"ERROR\""),
        "a JSON log line: {text}"
    );
}

#[tokio::test]
async fn one_invocation_through_the_lambda_runtime_api() {
    let aws = casesync_aws::testing::moto().await;
    let names = aws.tables("api-bin").await;
    let secret_name = format!("{}/connected-app", names.secret_prefix);
    aws.secrets_manager()
        .create_secret()
        .name(&secret_name)
        .secret_string(r#"{"client_secret":"the-consumer-secret"}"#)
        .send()
        .await
        .unwrap();
    let event = common::event(
        "POST",
        "/connections",
        Some(r#"{"channel":"support","queues":"all","backfill":"30d"}"#),
    );
    let (runtime, mut posted) = fake_runtime(event).await;

    let _child = Running(spawn(&[
        ("AWS_LAMBDA_RUNTIME_API", runtime.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", "api".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "stream".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "group".into()),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
        ("AWS_ENDPOINT_URL", aws.endpoint_url().to_owned()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("CONNECTIONS_TABLE", names.tables.connections.clone()),
        ("DATA_POINTS_TABLE", names.tables.data_points.clone()),
        ("AUTH_STATES_TABLE", names.tables.auth_states.clone()),
        ("SECRET_PREFIX", names.secret_prefix.clone()),
        ("SALESFORCE_CLIENT_ID", "3MVG9-the-consumer-key".into()),
        ("SALESFORCE_CLIENT_SECRET_ARN", secret_name.clone()),
        ("CALLBACK_URL", String::new()),
    ]));

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
