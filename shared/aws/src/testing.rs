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
