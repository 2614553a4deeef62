//! A stand-in for the Lambda Runtime API on loopback, to run a function's binary as Lambda
//! does: it serves one event at `/next`, records what the function posts back, and spawns the
//! binary with only the environment given. The functions' binary tests and the benchmark's
//! init-time figure use it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::{get, post};
use tokio::sync::mpsc;

#[derive(Clone)]
struct Runtime {
    event: String,
    deadline_ms: u64,
    served: Arc<AtomicBool>,
    posted: mpsc::UnboundedSender<(String, String)>,
}

async fn next(State(rt): State<Runtime>) -> (StatusCode, HeaderMap, String) {
    if rt.served.swap(true, Ordering::SeqCst) {
        // One invocation: the function then waits, as between real invocations.
        std::future::pending::<()>().await;
    }
    let mut headers = HeaderMap::new();
    let mut set = |k: &'static str, v: String| {
        headers.insert(k, v.parse().expect("a header value"));
    };
    set("lambda-runtime-aws-request-id", "req-1".into());
    set("lambda-runtime-deadline-ms", rt.deadline_ms.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:casesync".into(),
    );
    set(
        "lambda-runtime-trace-id",
        "Root=1-65f1c2d3-0123456789abcdef01234567".into(),
    );
    (StatusCode::OK, headers, rt.event.clone())
}

async fn posted(State(rt): State<Runtime>, uri: Uri, body: String) -> StatusCode {
    let _ = rt.posted.send((uri.path().to_owned(), body));
    StatusCode::ACCEPTED
}

/// Serves `event` once with a deadline `time_left` from now; yields what the function posts
/// back (path, body).
pub async fn serve(
    event: String,
    time_left: Duration,
) -> (SocketAddr, mpsc::UnboundedReceiver<(String, String)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let deadline_ms = (SystemTime::now() + time_left)
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let state = Runtime {
        event,
        deadline_ms,
        served: Arc::new(AtomicBool::new(false)),
        posted: tx,
    };
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(posted))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(posted))
        .route("/2018-06-01/runtime/init/error", post(posted))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, rx)
}

/// The environment Lambda gives every function, for the runtime at `runtime` and the AWS
/// endpoint `aws_endpoint` (moto), with JSON logs at `level`.
pub fn lambda_env(runtime: SocketAddr, aws_endpoint: &str, level: &str) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", runtime.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", "casesync".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "stream".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "group".into()),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
        ("AWS_LAMBDA_LOG_LEVEL", level.into()),
        ("AWS_ENDPOINT_URL", aws_endpoint.into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Runs `binary` with only `vars` (and PATH); stdout to `log`, stderr piped.
pub fn spawn(binary: &str, vars: &[(String, String)], log: Option<&Path>) -> Running {
    let stdout = match log {
        Some(path) => Stdio::from(std::fs::File::create(path).expect("a log file")),
        None => Stdio::piped(),
    };
    let mut cmd = Command::new(binary);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    Running(Some(cmd.spawn().expect("the binary starts")))
}

/// A child process, killed when dropped (however the test ends).
pub struct Running(Option<Child>);

impl Running {
    /// Waits for the process to exit; returns its stdout and stderr together.
    pub async fn output(mut self) -> (bool, String) {
        let child = self.0.take().expect("running");
        let out = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .expect("join")
            .expect("wait");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `binary` with JSON logs and none of its configuration, and asserts that it exits
/// unsuccessfully, naming every variable in `missing` and logging an ERROR line.
pub async fn assert_refuses_to_start_without(binary: &str, missing: &[&str]) {
    let vars = vec![("AWS_LAMBDA_LOG_FORMAT".to_owned(), "JSON".to_owned())];
    let (ok, text) = spawn(binary, &vars, None).output().await;
    assert!(!ok, "it started without configuration: {text}");
    for var in missing {
        assert!(text.contains(var), "{var} not named in: {text}");
    }
    assert!(
        text.contains("\"level\":\"ERROR\""),
        "a JSON log line: {text}"
    );
}
