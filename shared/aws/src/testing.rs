//! A moto server for integration tests (feature `test-support`).
//!
//! ```no_run
//! # async fn demo() {
//! let aws = casesync_aws::testing::moto().await;
//! let ddb = aws_sdk_dynamodb::Client::new(aws.sdk_config());
//! let names = aws.unique_names("t1");
//! casesync_aws::create_tables(&ddb, &names.tables).await.unwrap();
//! # }
//! ```
//!
//! * One `moto_server -H 127.0.0.1 -p <free port>` per test process, started by the first
//!   [`moto`] call and shared by every test of the process. When `CASESYNC_TEST_MOTO_URL` is
//!   set (the test command started a server itself), that one is used instead.
//! * The binary is `$MOTO_SERVER_BIN`, else `.venv/bin/moto_server` at the workspace root, else
//!   `moto_server` on `PATH`.
//! * The server runs under a small `sh` watchdog that holds a pipe from this process: when the
//!   process exits, however it exits, the pipe closes and the watchdog stops moto. A server
//!   started with [`MotoServer::start`] (your own, not shared) is also stopped when dropped.
//! * Tests isolate themselves by naming their resources uniquely ([`Moto::unique_names`]); the
//!   server is never reset, so tests can run in parallel.
//! * Each [`moto`] call returns a fresh [`Moto`] with its own `SdkConfig` (and so its own
//!   HTTP connection pool): a client must not outlive the Tokio runtime of the test that built
//!   it, and `#[tokio::test]` makes one runtime per test.
//!
//! Another crate's tests use it with
//! `[dev-dependencies] casesync-aws = { workspace = true, features = ["test-support"] }`.
//!
//! # moto 5.2's quirks (what these tests learned)
//!
//! * A FIFO queue needs an explicit name ending in `.fifo`.
//! * FIFO deduplication only compares with messages still in the queue: once a message is
//!   deleted, the same deduplication id is accepted again (SQS keeps it for 5 minutes). Test a
//!   retried send before draining the queue.
//! * A `ReceiveMessage` may return several messages of one group (so does SQS); what moto and
//!   SQS hold back is the group's next message while one is in flight to another receiver.
//! * `TransactWriteItems` deep-copies the whole table once per item of the transaction and, on
//!   a cancel, puts that copy back, undoing concurrent writers' work: slow (O(table size) per
//!   item) and unsafe under concurrency. This crate does not use it.
//! * TTL is recorded but items never expire.
//! * Each request costs moto a few milliseconds whatever it holds: 1,000 `PutItem`s take
//!   ~6 s on two cores. Do not read moto's timings as DynamoDB's.

pub mod runtime_api;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;

use crate::TableNames;

/// Set to use a moto server that is already running, e.g. `http://127.0.0.1:5000`.
pub const MOTO_URL_VAR: &str = "CASESYNC_TEST_MOTO_URL";
/// Set to the `moto_server` binary to start.
pub const MOTO_BIN_VAR: &str = "MOTO_SERVER_BIN";

#[derive(Debug, thiserror::Error)]
pub enum MotoError {
    #[error("could not start {bin}: {source}")]
    Spawn {
        bin: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "moto at {url} did not answer within {waited:?} (binary {bin}; its output is in {log})"
    )]
    NotReady {
        url: String,
        bin: String,
        log: String,
        waited: Duration,
    },
    #[error("{MOTO_URL_VAR}={0:?} is not an http://host:port URL")]
    BadUrl(String),
    #[error("no free local port: {0}")]
    NoPort(std::io::Error),
}

/// A moto server this process started. Stopping it: drop it (or let the process exit).
pub struct MotoServer {
    url: String,
    watchdog: Mutex<Option<Child>>,
}

impl std::fmt::Debug for MotoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MotoServer")
            .field("url", &self.url)
            .finish()
    }
}

impl MotoServer {
    /// Starts a new moto server on a free local port and waits until it accepts connections.
    pub fn start() -> Result<Self, MotoError> {
        let bin = moto_binary();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(MotoError::NoPort)?;
        let port = listener.local_addr().map_err(MotoError::NoPort)?.port();
        drop(listener);
        let log = std::env::temp_dir().join(format!("casesync-moto-{port}.log"));
        // The watchdog: moto in the background, in a process group of its own (`set -m`), so
        // that a wrapper (a pyenv shim) and the Python it starts stop together; then wait for
        // our end of stdin to close (this process exited or dropped the server); then stop it.
        let script = r#"log="$1"; shift; set -m; "$@" >"$log" 2>&1 </dev/null & m=$!; cat >/dev/null; kill -TERM -- "-$m" 2>/dev/null || kill "$m" 2>/dev/null; wait "$m" 2>/dev/null"#;
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("moto-watchdog")
            .arg(&log)
            .arg(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| MotoError::Spawn {
                bin: bin.clone(),
                source,
            })?;
        let server = Self {
            url: format!("http://127.0.0.1:{port}"),
            watchdog: Mutex::new(Some(child)),
        };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let waited = Duration::from_secs(30);
        let start = Instant::now();
        while start.elapsed() < waited {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(MotoError::NotReady {
            url: server.url.clone(),
            bin,
            log: log.display().to_string(),
            waited,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let mut guard = self.watchdog.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut child) = guard.take() {
            // Closing the watchdog's stdin makes it stop moto and exit.
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

fn moto_binary() -> String {
    if let Ok(bin) = std::env::var(MOTO_BIN_VAR)
        && !bin.is_empty()
    {
        return bin;
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server");
    if venv.is_file() {
        return venv.display().to_string();
    }
    "moto_server".to_owned()
}

/// The process-wide server: either the one `CASESYNC_TEST_MOTO_URL` names, or one we started.
enum Shared {
    External(String),
    Started(MotoServer),
}

static SHARED: OnceLock<Result<Arc<Shared>, String>> = OnceLock::new();

fn shared() -> Result<Arc<Shared>, String> {
    SHARED
        .get_or_init(|| {
            if let Ok(url) = std::env::var(MOTO_URL_VAR)
                && !url.is_empty()
            {
                if !url.starts_with("http://") && !url.starts_with("https://") {
                    return Err(MotoError::BadUrl(url).to_string());
                }
                return Ok(Arc::new(Shared::External(
                    url.trim_end_matches('/').to_owned(),
                )));
            }
            MotoServer::start()
                .map(|s| Arc::new(Shared::Started(s)))
                .map_err(|e| e.to_string())
        })
        .clone()
}

/// A handle on the shared moto server, with an `SdkConfig` pointed at it.
#[derive(Clone, Debug)]
pub struct Moto {
    url: String,
    config: SdkConfig,
}

/// Unique names for one test's resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceNames {
    pub tables: TableNames,
    /// A FIFO queue name (ends in `.fifo`).
    pub queue: String,
    /// A Secrets Manager name prefix.
    pub secret_prefix: String,
}

/// The shared moto server (started on first use), and a fresh `SdkConfig` for it.
///
/// Panics with the reason when moto cannot be started: in a test that is the clearest failure.
/// Use [`try_moto`] to handle it.
pub async fn moto() -> Moto {
    match try_moto().await {
        Ok(m) => m,
        Err(e) => panic!("moto server unavailable: {e}"),
    }
}

pub async fn try_moto() -> Result<Moto, String> {
    // Starting blocks for up to a second or two; keep it off the async worker threads.
    let shared = tokio::task::spawn_blocking(shared)
        .await
        .map_err(|e| format!("moto start-up task failed: {e}"))??;
    let url = match &*shared {
        Shared::External(url) => url.clone(),
        Shared::Started(s) => s.url().to_owned(),
    };
    Ok(Moto::connect(&url).await)
}

impl Moto {
    /// An `SdkConfig` for the moto server at `url`: static dummy credentials, `us-east-1`.
    pub async fn connect(url: &str) -> Self {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(url)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
            .load()
            .await;
        Self {
            url: url.to_owned(),
            config,
        }
    }

    pub fn endpoint_url(&self) -> &str {
        &self.url
    }

    pub fn sdk_config(&self) -> &SdkConfig {
        &self.config
    }

    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.config)
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.config)
    }

    pub fn secrets_manager(&self) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::new(&self.config)
    }

    pub fn eventbridge(&self) -> aws_sdk_eventbridge::Client {
        aws_sdk_eventbridge::Client::new(&self.config)
    }

    /// A reader of `table`'s DynamoDB stream, from its first record.
    pub async fn stream(&self, table: &str) -> StreamReader {
        StreamReader::open(&self.url, table).await
    }

    /// An EventBridge bus `bus` with a rule matching `pattern` whose target is a new standard
    /// SQS queue; returns the queue's URL. What a consumer of the change events sets up.
    pub async fn bus_to_queue(&self, bus: &str, pattern: &serde_json::Value) -> String {
        let events = self.eventbridge();
        let sqs = self.sqs();
        if let Err(e) = events.create_event_bus().name(bus).send().await {
            let text = aws_sdk_eventbridge::error::DisplayErrorContext(e).to_string();
            assert!(
                text.contains("ResourceAlreadyExists"),
                "create bus {bus}: {text}"
            );
        }
        let queue = sqs
            .create_queue()
            .queue_name(format!("{bus}-consumer"))
            .send()
            .await
            .expect("moto creates the consumer queue");
        let url = queue.queue_url().expect("a queue URL").to_owned();
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("moto reads the queue's ARN")
            .attributes()
            .and_then(|a| {
                a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                    .cloned()
            })
            .expect("the queue's ARN");
        let rule = format!("{bus}-to-consumer");
        events
            .put_rule()
            .name(&rule)
            .event_bus_name(bus)
            .event_pattern(pattern.to_string())
            .send()
            .await
            .expect("moto creates the rule");
        events
            .put_targets()
            .rule(&rule)
            .event_bus_name(bus)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("consumer")
                    .arn(arn)
                    .build()
                    .expect("a target"),
            )
            .send()
            .await
            .expect("moto adds the target");
        url
    }

    /// Receives and deletes every message of a standard queue now in it: their bodies, parsed.
    pub async fn drain_queue(&self, url: &str) -> Vec<serde_json::Value> {
        let sqs = self.sqs();
        let mut out = Vec::new();
        loop {
            let got = sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .send()
                .await
                .expect("moto receives messages");
            let messages = got.messages();
            if messages.is_empty() {
                return out;
            }
            for m in messages {
                let body = m.body().unwrap_or_default();
                out.push(serde_json::from_str(body).expect("an event as JSON"));
                if let Some(handle) = m.receipt_handle() {
                    sqs.delete_message()
                        .queue_url(url)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .expect("moto deletes the message");
                }
            }
        }
    }

    /// Every secret whose name starts with `prefix`, with its value: (name, value).
    pub async fn secrets_under(&self, prefix: &str) -> Vec<(String, String)> {
        let sm = self.secrets_manager();
        let list = sm
            .list_secrets()
            .filters(
                aws_sdk_secretsmanager::types::Filter::builder()
                    .key(aws_sdk_secretsmanager::types::FilterNameStringType::Name)
                    .values(prefix)
                    .build(),
            )
            .send()
            .await
            .expect("moto lists secrets");
        let mut out = Vec::new();
        for s in list.secret_list() {
            let name = s.name().unwrap_or_default().to_owned();
            // The name filter is not case-sensitive: keep only exact prefixes.
            if !name.starts_with(prefix) {
                continue;
            }
            let value = sm
                .get_secret_value()
                .secret_id(&name)
                .send()
                .await
                .expect("moto reads a listed secret")
                .secret_string()
                .unwrap_or_default()
                .to_owned();
            out.push((name, value));
        }
        out
    }

    /// Names no other test uses: `<label>-<random>-connections`, `<label>-<random>.fifo`, ...
    pub fn unique_names(&self, label: &str) -> ResourceNames {
        let prefix = format!(
            "{label}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        ResourceNames {
            tables: TableNames::with_prefix(&prefix),
            queue: format!("{prefix}.fifo"),
            secret_prefix: format!("{prefix}/refresh-tokens"),
        }
    }

    /// Unique names, with the tables created (see [`crate::create_tables`]).
    pub async fn tables(&self, label: &str) -> ResourceNames {
        let names = self.unique_names(label);
        if let Err(e) = crate::create_tables(&self.dynamodb(), &names.tables).await {
            panic!("create test tables: {e}");
        }
        names
    }
}

/// Reads a table's DynamoDB stream from moto over its JSON wire protocol (moto keeps one shard),
/// and hands the records on as Lambda's event source mapping would: in the DynamoDB stream
/// event's shape, `{"Records": [...]}`.
pub struct StreamReader {
    url: String,
    http: reqwest::Client,
    stream_arn: String,
    iterator: Option<String>,
    /// The highest sequence number handed on: a record at or below it is not handed on again
    /// (a reader looping on records served again would never end).
    last_sequence: Option<u128>,
}

impl StreamReader {
    async fn call(
        http: &reqwest::Client,
        url: &str,
        target: &str,
        body: serde_json::Value,
    ) -> serde_json::Value {
        let response = http
            .post(url)
            .header("X-Amz-Target", format!("DynamoDBStreams_20120810.{target}"))
            .header("Content-Type", "application/x-amz-json-1.0")
            // moto routes by the signing service named here; it checks no signature.
            .header(
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/dynamodb/aws4_request, \
                 SignedHeaders=host, Signature=0",
            )
            .body(body.to_string())
            .send()
            .await
            .expect("moto answers the streams call");
        let status = response.status();
        let text = response.text().await.expect("a streams answer");
        assert!(status.is_success(), "{target}: {status} {text}");
        serde_json::from_str(&text).expect("a JSON streams answer")
    }

    async fn open(url: &str, table: &str) -> Self {
        let http = reqwest::Client::new();
        let listed = Self::call(
            &http,
            url,
            "ListStreams",
            serde_json::json!({"TableName": table}),
        )
        .await;
        let stream_arn = listed["Streams"][0]["StreamArn"]
            .as_str()
            .expect("the table has a stream")
            .to_owned();
        let described = Self::call(
            &http,
            url,
            "DescribeStream",
            serde_json::json!({"StreamArn": stream_arn}),
        )
        .await;
        let shard = described["StreamDescription"]["Shards"][0]["ShardId"]
            .as_str()
            .expect("a shard")
            .to_owned();
        let iterator = Self::call(
            &http,
            url,
            "GetShardIterator",
            serde_json::json!({"StreamArn": stream_arn, "ShardId": shard, "ShardIteratorType": "TRIM_HORIZON"}),
        )
        .await["ShardIterator"]
            .as_str()
            .map(str::to_owned);
        Self {
            url: url.to_owned(),
            http,
            stream_arn,
            iterator,
            last_sequence: None,
        }
    }

    /// The records written since the last call, as one stream event (`None` when there are none).
    pub async fn next_event(&mut self) -> Option<serde_json::Value> {
        let iterator = self.iterator.clone()?;
        let got = Self::call(
            &self.http,
            &self.url,
            "GetRecords",
            serde_json::json!({"ShardIterator": iterator, "Limit": 1000}),
        )
        .await;
        self.iterator = got["NextShardIterator"].as_str().map(str::to_owned);
        let sequence = |r: &serde_json::Value| {
            r["dynamodb"]["SequenceNumber"]
                .as_str()
                .and_then(|n| n.parse::<u128>().ok())
        };
        let mut records: Vec<serde_json::Value> = got["Records"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| match (sequence(r), self.last_sequence) {
                (Some(n), Some(last)) => n > last,
                _ => true,
            })
            .collect();
        if records.is_empty() {
            return None;
        }
        if let Some(max) = records.iter().filter_map(sequence).max() {
            self.last_sequence = Some(self.last_sequence.map_or(max, |l| l.max(max)));
        }
        for r in &mut records {
            r["eventSourceARN"] = serde_json::Value::String(self.stream_arn.clone());
        }
        Some(serde_json::json!({ "Records": records }))
    }
}

/// An API Gateway HTTP API (payload format 2.0) event for an IAM-authorized `method` on
/// `path` (with its query string, as the client sent it), as Lambda hands it to the `api`
/// function. Decode it with `lambda_http::request::from_str`.
pub fn http_api_event(
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> String {
    let (raw_path, raw_query) = path.split_once('?').unwrap_or((path, ""));
    let mut all_headers = serde_json::json!({
        "accept": "application/json",
        "content-type": "application/json",
        "host": "k7x2m9q4ab.execute-api.us-east-1.amazonaws.com",
        "x-forwarded-proto": "https"
    });
    for (k, v) in headers {
        all_headers[*k] = serde_json::Value::String((*v).to_owned());
    }
    let mut json = serde_json::json!({
        "version": "2.0",
        "routeKey": format!("{method} {raw_path}"),
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": all_headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "k7x2m9q4ab",
            "authorizer": {"iam": {"accountId": "123456789012", "userArn": "arn:aws:iam::123456789012:user/consumer"}},
            "domainName": "k7x2m9q4ab.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "k7x2m9q4ab",
            "http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1",
                     "sourceIp": "198.51.100.20", "userAgent": "consumer/1.0"},
            "requestId": "Jx1Q2jKLoAMEVXw=",
            "routeKey": format!("{method} {raw_path}"),
            "stage": "$default",
            "time": "12/Mar/2024:10:00:00 +0000",
            "timeEpoch": 1710237600000i64
        },
        "isBase64Encoded": false
    });
    if let Some(body) = body {
        json["body"] = body.into();
    }
    json.to_string()
}
