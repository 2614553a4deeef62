//! The AWS figures: scheduler fan-out to many connections (moto), and each function's arm64
//! bootstrap size and cold-start init time (its local x86_64 build, started against a stand-in
//! Lambda Runtime API and moto, timed from spawn to its first `/invocation/next`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use casesync_aws::testing::{Moto, runtime_api};
use casesync_aws::{DynamoConnectionStore, Metrics, QueueOptions, SqsWorkQueue, create_queue};
use casesync_core::domain::{
    ApiVersion, BackfillWindow, ChannelName, Connection, ConnectionId, ConnectionState,
    InstanceUrl, LoginUrl, QueueScope,
};
use casesync_core::ports::{ConnectionWriter, SystemClock};
use chrono::Utc;
use futures::StreamExt;
use tokio::sync::mpsc;

pub async fn moto() -> anyhow::Result<Moto> {
    casesync_aws::testing::try_moto()
        .await
        .map_err(|e| anyhow::anyhow!("moto is needed for the AWS figures: {e}"))
}

/// Sends one scheduler tick to `n` connections (a tenth of them inactive, which it skips).
/// Returns (active connections, SendMessageBatch calls, elapsed).
pub async fn scheduler_fan_out(n: usize) -> anyhow::Result<(usize, u64, Duration)> {
    let aws = moto().await?;
    let names = aws.tables("bench-sched").await;
    let queue = create_queue(&aws.sqs(), &names.queue, &QueueOptions::default()).await?;
    let connections = Arc::new(DynamoConnectionStore::new(
        aws.dynamodb(),
        &names.tables.connections,
    ));
    let mut active = 0;
    let inserts = (0..n).map(|i| {
        let store = connections.clone();
        let mut c = Connection::new(
            ConnectionId::new_random(),
            ChannelName::parse("bench").expect("valid"),
            LoginUrl::parse("https://login.salesforce.com").expect("valid"),
            InstanceUrl::parse("https://acme.my.salesforce.com").expect("valid"),
            ApiVersion::DEFAULT,
            QueueScope::All,
            BackfillWindow::Days30,
            Utc::now(),
        );
        if i % 10 == 9 {
            c.state = ConnectionState::Disconnected;
        }
        async move { store.insert_connection(&c).await }
    });
    let results: Vec<_> = futures::stream::iter(inserts)
        .buffer_unordered(32)
        .collect()
        .await;
    for r in results {
        r?;
    }
    active += n - n / 10;
    let metrics = Arc::new(Metrics::new());
    let queue = SqsWorkQueue::new(aws.sqs(), &queue.queue_url).with_metrics(metrics.clone());
    let scheduler = casesync_scheduler::Scheduler::new(
        connections,
        Arc::new(queue),
        metrics.clone(),
        Arc::new(SystemClock),
    );
    let started = Instant::now();
    let summary = scheduler.tick(Utc::now()).await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(summary.sent as usize == active, "{summary:?}");
    Ok((active, metrics.snapshot().send_message_batch_calls, elapsed))
}

pub const FUNCTIONS: [&str; 7] = [
    "scheduler",
    "worker",
    "oauth-callback",
    "api",
    "publisher",
    "console",
    "change-router",
];

/// The arm64 bootstrap `sam build` (cargo lambda) left, if it has been built.
pub fn bootstrap_size(function: &str) -> Option<u64> {
    let root = workspace_root()?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    std::fs::metadata(target.join("lambda").join(function).join("bootstrap"))
        .ok()
        .map(|m| m.len())
}

fn workspace_root() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // target/<profile>/casesync-bench
    exe.parent()?.parent()?.parent().map(PathBuf::from)
}

/// Cold-start init times of each function's local build, `runs` times each (median).
pub async fn init_times(runs: usize) -> anyhow::Result<Vec<(&'static str, Option<Duration>)>> {
    let aws = moto().await?;
    let names = aws.tables("bench-init").await;
    let queue = create_queue(&aws.sqs(), &names.queue, &QueueOptions::default()).await?;
    let secret = aws
        .secrets_manager()
        .create_secret()
        .name(format!("{}-client-secret", names.secret_prefix))
        .secret_string("bench-client-secret")
        .send()
        .await
        .context("creating the client secret in moto")?;
    let secret_arn = secret.arn().unwrap_or_default().to_owned();
    let exe_dir = std::env::current_exe()?
        .parent()
        .context("the benchmark's directory")?
        .to_owned();
    let mut out = Vec::new();
    for function in FUNCTIONS {
        let binary = exe_dir.join(function);
        if !binary.exists() {
            out.push((function, None));
            continue;
        }
        let vars: Vec<(&str, String)> = vec![
            ("CONNECTIONS_TABLE", names.tables.connections.clone()),
            ("DATA_POINTS_TABLE", names.tables.data_points.clone()),
            ("AUTH_STATES_TABLE", names.tables.auth_states.clone()),
            ("WORK_QUEUE_URL", queue.queue_url.clone()),
            ("DLQ_URL", queue.dead_letter_queue_url.clone()),
            ("SECRET_PREFIX", names.secret_prefix.clone()),
            ("SALESFORCE_CLIENT_ID", "bench-client".into()),
            ("SALESFORCE_CLIENT_SECRET_ARN", secret_arn.clone()),
            ("APP_URL", "https://app.example.com/connected".into()),
            // Any secret's value signs cursors.
            ("CURSOR_SECRET_ARN", secret_arn.clone()),
            ("EVENT_BUS_NAME", "bench-data-points".into()),
            ("USER_POOL_ID", "us-east-1_BenchPool1".into()),
            ("USER_POOL_CLIENT_ID", "benchconsoleclient".into()),
        ];
        let mut times = Vec::new();
        for _ in 0..runs {
            times.push(init_once(&binary, &vars, aws.endpoint_url()).await?);
        }
        times.sort();
        out.push((function, Some(times[times.len() / 2])));
    }
    Ok(out)
}

/// Spawns the binary as Lambda would and times how long it takes to ask for its first event.
async fn init_once(
    binary: &std::path::Path,
    vars: &[(&str, String)],
    aws_endpoint: &str,
) -> anyhow::Result<Duration> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Instant>();
    let app = axum::Router::new().route(
        "/2018-06-01/runtime/invocation/next",
        axum::routing::get(move || {
            let tx = tx.clone();
            async move {
                let _ = tx.send(Instant::now());
                // No event: the function waits here, as between invocations.
                std::future::pending::<()>().await;
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let mut cmd = tokio::process::Command::new(binary);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(runtime_api::lambda_env(addr, aws_endpoint, "WARN"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let first = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .with_context(|| format!("{} never asked for an event", binary.display()))?
        .context("the stand-in runtime stopped")?;
    let _ = child.kill().await;
    server.abort();
    Ok(first.duration_since(started))
}
