//! A measured backfill in its own process: SQLite data dir, headless connect, sync to the end.
//! Prints one JSON line with its own wall time, CPU time and peak RSS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use casesync_core::data_point::DataPoint;
use casesync_core::domain::{ApiVersion, BackfillWindow, ChannelName, LoginUrl, QueueScope};
use casesync_core::manage::connect::{self, ConnectionSettings};
use casesync_core::ports::{
    DataPointReader, DataPointWriter, StoreResult, SystemClock, UpsertCounts,
};
use casesync_core::salesforce::{HttpSettings, OAuthApp, Salesforce};
use casesync_core::sync::{SyncConfig, SyncEngine, SyncOutcome};
use casesync_local::DataDir;
use chrono::{TimeDelta, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, clap::Args)]
pub struct ChildArgs {
    #[arg(long)]
    pub login_url: String,
    #[arg(long)]
    pub client_id: String,
    #[arg(long)]
    pub data_dir: std::path::PathBuf,
    #[arg(long, default_value_t = 200)]
    pub batch_size: u32,
    /// Parallel slices of the backfill (1: one stream, as the earlier figures measured).
    #[arg(long, default_value_t = 1)]
    pub slices: usize,
    /// Where the data points go: the CLI's SQLite store, DynamoDB items built as the AWS store
    /// builds them and dropped (the AWS runtime's CPU without the network), or nowhere (what
    /// reading and mapping alone cost).
    #[arg(long, value_enum, default_value_t = Sink::Sqlite)]
    pub sink: Sink,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Sink {
    Sqlite,
    DynamoItems,
    Discard,
}

/// Drops every point: what reading and mapping alone cost.
struct Discard;

#[async_trait::async_trait]
impl DataPointWriter for Discard {
    async fn upsert_data_points(&self, points: &[DataPoint]) -> StoreResult<UpsertCounts> {
        Ok(UpsertCounts {
            created: points.len() as u64,
            ..UpsertCounts::default()
        })
    }
}

/// Builds each point's DynamoDB items and drops them; every point counts as created.
struct DynamoItems;

#[async_trait::async_trait]
impl DataPointWriter for DynamoItems {
    async fn upsert_data_points(&self, points: &[DataPoint]) -> StoreResult<UpsertCounts> {
        casesync_aws::DynamoDataPointStore::encode_items(points)?;
        Ok(UpsertCounts {
            created: points.len() as u64,
            ..UpsertCounts::default()
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChildResult {
    pub cases: u64,
    pub api_calls: u64,
    pub pages: u64,
    pub wall_s: f64,
    pub cpu_s: f64,
    pub peak_rss_kib: u64,
    /// Data points in the store at the end (each Case once).
    #[serde(default)]
    pub stored: u64,
}

/// CPU time of this process (user + system, every thread).
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we pass and reads nothing else.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc != 0 {
        return f64::NAN;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Peak resident set size of this process, from /proc/self/status.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

pub async fn run(args: ChildArgs) -> anyhow::Result<()> {
    let refresh_token = std::env::var("BENCH_REFRESH_TOKEN").context("BENCH_REFRESH_TOKEN")?;
    let client_secret = std::env::var("BENCH_CLIENT_SECRET").context("BENCH_CLIENT_SECRET")?;
    let dir = DataDir::open(&args.data_dir)?;
    let stores = dir.open_stores()?;
    let store = Arc::new(stores.store);
    let secrets = Arc::new(stores.secrets);
    let salesforce = Salesforce::new(
        OAuthApp {
            client_id: args.client_id.clone(),
            client_secret: Some(SecretString::from(client_secret)),
        },
        &HttpSettings::default(),
    )?;
    let connection = connect::with_refresh_token(
        &salesforce.oauth,
        store.as_ref(),
        secrets.as_ref(),
        LoginUrl::parse(&args.login_url)?,
        SecretString::from(refresh_token),
        ConnectionSettings {
            channel: ChannelName::parse("bench")?,
            scope: QueueScope::All,
            backfill: BackfillWindow::Months6,
            api_version: ApiVersion::DEFAULT,
        },
        Utc::now(),
    )
    .await?;
    let points: Arc<dyn DataPointWriter> = match args.sink {
        Sink::Sqlite => store.clone(),
        Sink::DynamoItems => Arc::new(DynamoItems),
        Sink::Discard => Arc::new(Discard),
    };
    let engine = SyncEngine::new(
        store.clone(),
        points,
        secrets,
        Arc::new(SystemClock),
        salesforce,
        SyncConfig {
            batch_size: args.batch_size,
            slices: args.slices,
            // The generated org's newest Cases are stamped "now": read them all.
            lag: TimeDelta::zero(),
            ..SyncConfig::default()
        },
    );
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let mut result = ChildResult {
        cases: 0,
        api_calls: 0,
        pages: 0,
        wall_s: 0.0,
        cpu_s: 0.0,
        peak_rss_kib: 0,
        stored: 0,
    };
    loop {
        let r = engine
            .sync(&connection.id, Duration::from_secs(3600), None)
            .await?;
        result.cases += r.counts.created + r.counts.updated;
        result.api_calls += r.counts.api_calls;
        result.pages += r.counts.pages;
        match r.outcome {
            SyncOutcome::Done => break,
            SyncOutcome::MoreWork => continue,
            other => anyhow::bail!("backfill ended {other}: {:?}", r.error),
        }
    }
    result.wall_s = started.elapsed().as_secs_f64();
    result.cpu_s = cpu_seconds() - cpu_before;
    result.peak_rss_kib = peak_rss_kib();
    result.stored = match args.sink {
        Sink::Sqlite => store.count_data_points(&connection.id).await?,
        Sink::DynamoItems | Sink::Discard => result.cases,
    };
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}
