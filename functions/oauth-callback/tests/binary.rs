//! The `oauth-callback` binary as Lambda runs it: configuration from the environment, the
//! client secret from Secrets Manager (moto), the AWS SDK from `AWS_ENDPOINT_URL`, and one
//! invocation served through a stand-in for the Lambda Runtime API on loopback.

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
        "arn:aws:lambda:us-east-1:123456789012:function:oauth-callback"
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

/// The binary with only the given environment (plus PATH); its stdout goes to `log` when given
/// (a pipe nobody reads would fill up and block it).
fn spawn_logging_to(vars: &[(&str, String)], log: Option<&std::path::Path>) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oauth-callback"));
    let stdout = match log {
        Some(path) => Stdio::from(std::fs::File::create(path).expect("a log file")),
        None => Stdio::piped(),
    };
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.spawn().expect("the oauth-callback binary starts")
}

fn spawn(vars: &[(&str, String)]) -> Child {
    spawn_logging_to(vars, None)
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
        "AUTH_STATES_TABLE",
        "SECRET_PREFIX",
        "SALESFORCE_CLIENT_ID",
        "SALESFORCE_CLIENT_SECRET_ARN",
        "APP_URL",
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
    let (runtime, mut posted) = fake_runtime(event).await;

    let log = std::env::temp_dir().join(format!(
        "casesync-oauth-callback-{}.log",
        uuid_like(&names.secret_prefix)
    ));
    let child = Running(spawn_logging_to(
        &[
            ("AWS_LAMBDA_RUNTIME_API", runtime.to_string()),
            ("AWS_LAMBDA_FUNCTION_NAME", "oauth-callback".into()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "stream".into()),
            ("AWS_LAMBDA_LOG_GROUP_NAME", "group".into()),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
            ("AWS_LAMBDA_LOG_LEVEL", "TRACE".into()),
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
            ("APP_URL", "https://app.example.com/salesforce".into()),
        ],
        Some(&log),
    ));

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
