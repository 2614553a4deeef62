//! Each figure: what is measured, the limit it is measured against, the target.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use casesync_core::domain::{ApiVersion, BackfillWindow, ChannelName, LoginUrl, QueueScope};
use casesync_core::manage::connect::{self, ConnectionSettings};
use casesync_core::memory::{ManualClock, MemoryStore};
use casesync_core::ports::{Clock, SystemClock};
use casesync_core::salesforce::{HttpSettings, OAuthApp, Salesforce};
use casesync_core::sync::{SyncConfig, SyncEngine, SyncOutcome};
use chrono::{DateTime, TimeDelta, Utc};
use secrecy::SecretString;
use sf_simulator::{NewCase, Org, OrgSpec, SimConfig, SimHandle, Simulator};

use crate::child::ChildResult;
use crate::sim::{OrgShape, SimProcess};

/// One line of the report.
pub(crate) struct Row {
    pub figure: String,
    pub measured: String,
    pub limit: String,
    pub target: String,
    pub verdict: Verdict,
}

#[derive(Clone, Copy)]
pub(crate) enum Verdict {
    Met,
    Missed,
    Info,
}

impl Verdict {
    pub fn of(met: bool) -> Self {
        if met { Self::Met } else { Self::Missed }
    }
    fn as_str(self) -> &'static str {
        match self {
            Self::Met => "met",
            Self::Missed => "MISSED",
            Self::Info => "-",
        }
    }
}

struct Scale {
    calls_cases: usize,
    wall_cases: usize,
    wall_latency_ms: u64,
    throughput_cases: usize,
    rss_cases: [usize; 2],
    callgrind: Option<(usize, usize)>,
    steady_ticks: i64,
    steady_cases: usize,
    dynamo_cases: usize,
    fan_out: usize,
    init_runs: usize,
    channel_cases: usize,
    /// Cases and latency (ms) of the sliced backfill figure.
    sliced: (usize, u64),
    /// Cases closed one by one, each through its change event (freshness).
    fresh_changes: usize,
    /// Cases closed at once (Salesforce calls per change event).
    burst_changes: usize,
}

const FULL: Scale = Scale {
    calls_cases: 10_000,
    wall_cases: 10_000,
    wall_latency_ms: 100,
    throughput_cases: 20_000,
    rss_cases: [10_000, 100_000],
    callgrind: Some((500, 2_500)),
    steady_ticks: 1_440,
    steady_cases: 1_000,
    dynamo_cases: 1_000,
    // Not 10,000: moto recomputes a queue's attributes over every message it holds on each
    // SendMessage, so its sends slow down with the queue's depth and a 9,000-message tick does
    // not finish in half an hour. The scheduler's call count is ceil(active / 10) at any size.
    fan_out: 2_000,
    init_runs: 5,
    channel_cases: 10_000,
    sliced: (100_000, 300),
    fresh_changes: 200,
    burst_changes: 10_000,
};

const SMOKE: Scale = Scale {
    calls_cases: 1_000,
    wall_cases: 600,
    wall_latency_ms: 10,
    throughput_cases: 1_000,
    rss_cases: [500, 1_500],
    callgrind: None,
    steady_ticks: 120,
    steady_cases: 80,
    dynamo_cases: 100,
    fan_out: 100,
    init_runs: 1,
    channel_cases: 300,
    sliced: (2_500, 20),
    fresh_changes: 40,
    burst_changes: 400,
};

/// The benchmark org: 0–10 emails of 0.5–8 KB per Case, a fifth of them HTML-only.
pub(crate) const EMAILS: (u32, u32) = (0, 10);
pub(crate) const BODY_BYTES: (u32, u32) = (500, 8_000);

pub async fn run_all(smoke: bool, only: &[String]) -> anyhow::Result<()> {
    let scale = if smoke { &SMOKE } else { &FULL };
    let wanted = |name: &str| only.is_empty() || only.iter().any(|w| name.contains(w.as_str()));
    println!("{}", machine());
    println!(
        "org: 0-10 emails of 0.5-8 KB per Case, 20 % of emails HTML-only; {}\n",
        if smoke {
            "smoke sizes, no thresholds"
        } else {
            "full sizes"
        }
    );
    let mut rows = Vec::new();
    if wanted("calls") {
        rows.extend(salesforce_calls(scale).await?);
    }
    if wanted("wall") {
        rows.push(wall_time(scale).await?);
    }
    if wanted("throughput") {
        rows.extend(throughput(scale).await?);
    }
    if wanted("rss") {
        rows.extend(peak_rss(scale).await?);
    }
    if wanted("batch") {
        rows.extend(batch_sizes(scale).await?);
    }
    if wanted("slices") {
        rows.extend(sliced_backfill(scale).await?);
    }
    if wanted("steady") {
        rows.push(steady_state(scale).await?);
    }
    if wanted("dynamodb") {
        rows.push(dynamodb_writes(scale).await?);
    }
    if wanted("channel") {
        rows.extend(crate::channel::figures(scale.channel_cases).await?);
    }
    if wanted("fresh") {
        rows.extend(crate::freshness::figures(scale.fresh_changes, scale.burst_changes).await?);
    }
    if wanted("scheduler") {
        rows.push(scheduler_fan_out(scale).await?);
    }
    if wanted("lambda") {
        rows.extend(lambda_functions(scale).await?);
    }
    print_table(&rows, smoke);
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or_else(String::new, |kib| format!(", {} GiB", kib / 1024 / 1024));
    format!(
        "machine: {cpu}, {cores} cores{mem}; {}",
        Utc::now().format("%Y-%m-%d")
    )
}

fn print_table(rows: &[Row], smoke: bool) {
    let w = |f: fn(&Row) -> &str, title: &str| {
        rows.iter()
            .map(|r| f(r).len())
            .max()
            .unwrap_or(0)
            .max(title.len())
    };
    let (a, b, c, d) = (
        w(|r| &r.figure, "figure"),
        w(|r| &r.measured, "measured"),
        w(|r| &r.limit, "limit"),
        w(|r| &r.target, "target"),
    );
    println!(
        "| {:a$} | {:b$} | {:c$} | {:d$} | verdict |",
        "figure", "measured", "limit", "target"
    );
    println!(
        "|{}|{}|{}|{}|---------|",
        "-".repeat(a + 2),
        "-".repeat(b + 2),
        "-".repeat(c + 2),
        "-".repeat(d + 2)
    );
    for r in rows {
        let verdict = if smoke { "-" } else { r.verdict.as_str() };
        println!(
            "| {:a$} | {:b$} | {:c$} | {:d$} | {verdict:7} |",
            r.figure, r.measured, r.limit, r.target
        );
    }
}

fn http() -> HttpSettings {
    HttpSettings::default()
}

/// An in-process simulator and an engine over in-memory stores, for figures that count calls
/// (not CPU or memory).
async fn in_process(
    org: Org,
    sync: SyncConfig,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(
    SimHandle,
    Arc<MemoryStore>,
    SyncEngine,
    casesync_core::domain::ConnectionId,
)> {
    let sim = Simulator::start(SimConfig::default(), org).await?;
    let store = Arc::new(MemoryStore::new());
    let (salesforce, connection) =
        connect_to(&sim, store.as_ref(), store.as_ref(), clock.now()).await?;
    let engine = SyncEngine::new(
        store.clone(),
        store.clone(),
        store.clone(),
        clock,
        salesforce,
        sync,
    );
    Ok((sim, store, engine, connection.id))
}

async fn backfill_in_process(org: Org, batch_size: u32) -> anyhow::Result<(u64, u64)> {
    let sync = SyncConfig {
        batch_size,
        lag: TimeDelta::zero(),
        ..SyncConfig::default()
    };
    let (sim, store, engine, id) = in_process(org, sync, Arc::new(SystemClock)).await?;
    let before = sim.stats().data_calls;
    loop {
        let r = engine.sync(&id, Duration::from_secs(3600), None).await?;
        match r.outcome {
            SyncOutcome::Done => break,
            SyncOutcome::MoreWork => {}
            other => anyhow::bail!("backfill ended {other}: {:?}", r.error),
        }
    }
    let calls = sim.stats().data_calls - before;
    let cases = store.all_data_points().len() as u64;
    sim.shutdown().await;
    Ok((calls, cases))
}

/// Salesforce calls for a backfill, at batch sizes 200 and 2000.
async fn salesforce_calls(scale: &Scale) -> anyhow::Result<Vec<Row>> {
    let n = scale.calls_cases;
    let spec = |emails: (u32, u32)| OrgSpec {
        cases: n,
        emails_per_case: emails.0..=emails.1,
        body_bytes: BODY_BYTES.0..=BODY_BYTES.1,
        ..OrgSpec::default()
    };
    let mut rows = Vec::new();
    for batch in [200u32, 2000] {
        // Without emails: pages hold `batch` Cases.
        let (calls, cases) = backfill_in_process(Org::generated(spec((0, 0))), batch).await?;
        let limit = n.div_ceil(batch as usize) as u64;
        rows.push(Row {
            figure: format!(
                "Salesforce calls, backfill of {n} Cases, batchSize {batch}, no emails"
            ),
            measured: format!("{calls} calls ({cases} Cases)"),
            limit: format!("ceil(N/page) = {limit}; naive N+1 = {}", n + 1),
            target: format!("<= {}", limit + 2),
            verdict: Verdict::of(calls <= limit + 2 && cases == n as u64),
        });
        // With the benchmark's threads: Salesforce counts child rows toward the batch size and
        // keeps a Case's children on its page, so pages hold whole Cases of up to `batch` rows.
        let org = Org::generated(spec(EMAILS));
        let rows_total = n + org.emails().len();
        let served = pages_served(&org, batch);
        let (calls, cases) = backfill_in_process(org, batch).await?;
        rows.push(Row {
            figure: format!(
                "Salesforce calls, backfill of {n} Cases, batchSize {batch}, 0-10 emails"
            ),
            measured: format!("{calls} calls ({cases} Cases, {rows_total} rows)"),
            limit: format!(
                "pages Salesforce serves = {served}; ceil(rows/page) = {}",
                rows_total.div_ceil(batch as usize)
            ),
            target: format!("<= {} (pages + 2)", served + 2),
            verdict: Verdict::of(calls <= served + 2 && cases == n as u64),
        });
    }
    Ok(rows)
}

/// A Salesforce client for `sim`, and a connection to it (all queues, six months back) stored
/// in `connections` with its refresh token in `secrets`.
pub(crate) async fn connect_to<S>(
    sim: &SimHandle,
    connections: &S,
    secrets: &dyn casesync_core::ports::SecretStore,
    now: DateTime<Utc>,
) -> anyhow::Result<(Salesforce, casesync_core::domain::Connection)>
where
    S: casesync_core::ports::ConnectionReader
        + casesync_core::ports::ConnectionWriter
        + casesync_core::ports::StateWriter
        + ?Sized,
{
    let salesforce = Salesforce::new(
        OAuthApp {
            client_id: sim.client_id(),
            client_secret: Some(SecretString::from(sim.client_secret())),
        },
        &http(),
    )?;
    let connection = connect::with_refresh_token(
        &salesforce.oauth,
        connections,
        secrets,
        LoginUrl::parse(&sim.login_url())?,
        SecretString::from(sim.mint_refresh_token()),
        ConnectionSettings {
            channel: ChannelName::parse("bench")?,
            scope: QueueScope::All,
            backfill: BackfillWindow::Months6,
            api_version: ApiVersion::DEFAULT,
        },
        now,
    )
    .await?;
    Ok((salesforce, connection))
}

/// The pages Salesforce serves for a backfill of every Case of `org` at `batch`: Cases in
/// (SystemModstamp, Id) order, each costing one row plus one per email, packed whole into
/// pages of at most `batch` rows (a page always takes at least one Case). No client can make
/// fewer calls; the rows left unused at the end of each page are why this exceeds
/// ceil(rows / batch).
fn pages_served(org: &Org, batch: u32) -> u64 {
    let mut emails: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for e in org.emails() {
        *emails.entry(e.parent_id.as_str()).or_default() += 1;
    }
    let mut cases: Vec<_> = org.cases().iter().collect();
    cases.sort_by(|a, b| {
        (a.system_modstamp, a.id.as_str()).cmp(&(b.system_modstamp, b.id.as_str()))
    });
    let (mut pages, mut used) = (0u64, 0usize);
    for case in cases {
        let cost = 1 + emails.get(case.id.as_str()).copied().unwrap_or(0);
        if pages == 0 || used + cost > batch as usize {
            pages += 1;
            used = 0;
        }
        used += cost;
    }
    pages
}

/// Runs one measured backfill in a child process against an out-of-process simulator.
async fn child_backfill(
    shape: &OrgShape,
    batch_size: u32,
    valgrind_out: Option<&Path>,
) -> anyhow::Result<ChildResult> {
    child_backfill_sliced(shape, batch_size, 1, None, valgrind_out)
        .await
        .map(|(r, _)| r)
}

/// A measured backfill in `slices` slices, with another client of the same user opening a query
/// cursor every `other_client` meanwhile; also returns the simulator's counters.
async fn child_backfill_sliced(
    shape: &OrgShape,
    batch_size: u32,
    slices: usize,
    other_client: Option<Duration>,
    valgrind_out: Option<&Path>,
) -> anyhow::Result<(ChildResult, serde_json::Value)> {
    child_backfill_with(
        shape,
        batch_size,
        slices,
        other_client,
        valgrind_out,
        "sqlite",
    )
    .await
}

async fn child_backfill_with(
    shape: &OrgShape,
    batch_size: u32,
    slices: usize,
    other_client: Option<Duration>,
    valgrind_out: Option<&Path>,
    sink: &str,
) -> anyhow::Result<(ChildResult, serde_json::Value)> {
    let sim = SimProcess::start(shape).await?;
    let token = sim.mint_refresh_token().await?;
    let opened = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let pressure = match other_client {
        Some(every) => Some(sim.other_client(every, opened.clone()).await?),
        None => None,
    };
    let dir = tempdir()?;
    let exe = std::env::current_exe()?;
    let mut cmd = match valgrind_out {
        Some(out) => {
            let mut c = tokio::process::Command::new("valgrind");
            c.arg("--tool=callgrind")
                .arg(format!("--callgrind-out-file={}", out.display()))
                .arg("--quiet")
                .arg(&exe);
            c
        }
        None => tokio::process::Command::new(&exe),
    };
    cmd.args([
        "child-backfill",
        "--login-url",
        &sim.info.login_url,
        "--client-id",
        &sim.info.client_id,
        "--batch-size",
        &batch_size.to_string(),
        "--slices",
        &slices.to_string(),
        "--sink",
        sink,
        "--data-dir",
    ])
    .arg(dir.join("data"))
    .env("BENCH_REFRESH_TOKEN", token)
    .env("BENCH_CLIENT_SECRET", &sim.info.client_secret)
    .env("RUST_LOG", "warn");
    let out = cmd.output().await.context("running the measured backfill");
    if let Some(p) = pressure {
        p.abort();
    }
    let mut stats = sim.stats().await.unwrap_or_default();
    stats["other_client_queries"] = opened.load(std::sync::atomic::Ordering::Relaxed).into();
    sim.stop().await;
    let out = out?;
    let _ = std::fs::remove_dir_all(&dir);
    if !out.status.success() {
        anyhow::bail!(
            "the measured backfill failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let r = serde_json::from_str(line).with_context(|| format!("child printed {stdout:?}"))?;
    Ok((r, stats))
}

fn tempdir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("casesync-bench-{}", uuid_like()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or_default()
    )
}

/// Wall time of a 10,000-Case backfill with 100 ms per Salesforce call.
async fn wall_time(scale: &Scale) -> anyhow::Result<Row> {
    let shape = OrgShape {
        cases: scale.wall_cases,
        emails: EMAILS,
        body_bytes: BODY_BYTES,
        latency_ms: scale.wall_latency_ms,
        gzip: false,
    };
    let r = child_backfill(&shape, 200, None).await?;
    let floor = r.api_calls as f64 * scale.wall_latency_ms as f64 / 1000.0;
    let ratio = r.wall_s / floor;
    Ok(Row {
        figure: format!(
            "wall time, {}-Case backfill, {} ms per call",
            scale.wall_cases, scale.wall_latency_ms
        ),
        measured: format!("{:.1} s ({} calls, {:.3}x)", r.wall_s, r.api_calls, ratio),
        limit: format!("calls x latency = {floor:.1} s"),
        target: "<= 1.10x".into(),
        verdict: Verdict::of(ratio <= 1.10),
    })
}

/// Local throughput at 0 latency into SQLite, per CPU-second, and instructions per Case.
async fn throughput(scale: &Scale) -> anyhow::Result<Vec<Row>> {
    let shape = OrgShape {
        cases: scale.throughput_cases,
        emails: EMAILS,
        body_bytes: BODY_BYTES,
        latency_ms: 0,
        gzip: false,
    };
    // The same org read three ways: into SQLite (the CLI), into DynamoDB items built as the AWS
    // store builds them (zstd body, digest, attributes) and dropped, no SDK request, no
    // network; and with every point dropped, which is what reading and mapping alone cost: the
    // floor any store adds to.
    // Last, into SQLite again with the answers gzip-compressed, as Salesforce sends them when
    // asked (the client asks): what inflating adds.
    let mut rows = Vec::new();
    for (sink, gzip, into, limit) in [
        ("sqlite", false, "into SQLite", "parse + map + write"),
        (
            "dynamo-items",
            false,
            "into DynamoDB items without the network",
            "parse + map + item encoding",
        ),
        (
            "discard",
            false,
            "reading and mapping only (points dropped)",
            "parse + map",
        ),
        (
            "sqlite",
            true,
            "into SQLite, answers gzip-compressed",
            "inflate + parse + map + write",
        ),
    ] {
        let shape = OrgShape { gzip, ..shape };
        let (r, stats) = child_backfill_with(&shape, 200, 1, None, None, sink).await?;
        let per_cpu = r.cases as f64 / r.cpu_s;
        let json_bytes = stats["page_bytes_served"].as_u64().unwrap_or(0) as f64;
        rows.push(Row {
            figure: format!("local throughput, 0 latency, {into} ({} Cases)", r.cases),
            measured: format!(
                "{per_cpu:.0} Cases per CPU-second ({:.0} Cases/s wall; {:.1} KB of Salesforce JSON per Case, {:.0} MB per CPU-second)",
                r.cases as f64 / r.wall_s,
                json_bytes / r.cases.max(1) as f64 / 1e3,
                json_bytes / r.cpu_s / 1e6,
            ),
            limit: limit.into(),
            target: ">= 20000 Cases/s on one core".into(),
            verdict: Verdict::of(per_cpu >= 20_000.0),
        });
    }
    if let Some((small, large)) = scale.callgrind
        && which("valgrind")
    {
        let ir = |n: usize| async move {
            let out = std::env::temp_dir().join(format!("casesync-callgrind-{n}-{}", uuid_like()));
            let shape = OrgShape {
                cases: n,
                emails: EMAILS,
                body_bytes: BODY_BYTES,
                latency_ms: 0,
                gzip: false,
            };
            child_backfill(&shape, 200, Some(&out)).await?;
            let total = callgrind_total(&out)?;
            let _ = std::fs::remove_file(&out);
            anyhow::Ok(total)
        };
        let (a, b) = (ir(small).await?, ir(large).await?);
        let per_case = (b.saturating_sub(a)) as f64 / (large - small) as f64;
        rows.push(Row {
            figure: "instructions per Case (callgrind, marginal)".into(),
            measured: format!("{:.2} M instructions", per_case / 1e6),
            limit: format!("({large} - {small} Cases)"),
            target: "report".into(),
            verdict: Verdict::Info,
        });
    }
    Ok(rows)
}

fn which(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn callgrind_total(path: &Path) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(path).context("reading callgrind output")?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no summary in callgrind output")
}

/// Peak RSS of backfills of two sizes: one page in memory, so the same for both.
async fn peak_rss(scale: &Scale) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut peaks = Vec::new();
    for n in scale.rss_cases {
        let shape = OrgShape {
            cases: n,
            emails: EMAILS,
            body_bytes: BODY_BYTES,
            latency_ms: 0,
            gzip: false,
        };
        let r = child_backfill(&shape, 200, None).await?;
        let mib = r.peak_rss_kib as f64 / 1024.0;
        peaks.push(mib);
        rows.push(Row {
            figure: format!("peak RSS, backfill of {n} Cases"),
            measured: format!("{mib:.1} MiB"),
            limit: "one page in memory".into(),
            target: "<= 64 MiB".into(),
            verdict: Verdict::of(mib <= 64.0),
        });
    }
    if let [a, b] = peaks[..] {
        rows.push(Row {
            figure: "peak RSS growth between the two sizes".into(),
            measured: format!("{:+.1} MiB", b - a),
            limit: "independent of N".into(),
            target: "the same for both".into(),
            verdict: Verdict::of((b - a).abs() <= 8.0),
        });
    }
    Ok(rows)
}

/// The page size (`Sforce-Query-Options: batchSize`, which counts email rows too): Salesforce
/// calls against peak memory, for the same backfill.
async fn batch_sizes(scale: &Scale) -> anyhow::Result<Vec<Row>> {
    let n = scale.rss_cases[0];
    let shape = OrgShape {
        cases: n,
        emails: EMAILS,
        body_bytes: BODY_BYTES,
        latency_ms: 0,
        gzip: false,
    };
    let mut rows = Vec::new();
    for size in [200u32, 500, 1_000, 2_000] {
        let r = child_backfill(&shape, size, None).await?;
        rows.push(Row {
            figure: format!("batchSize {size}: backfill of {n} Cases"),
            measured: format!(
                "{} calls ({} pages), peak RSS {:.1} MiB, {:.0} Cases/CPU-s",
                r.api_calls,
                r.pages,
                r.peak_rss_kib as f64 / 1024.0,
                r.cases as f64 / r.cpu_s.max(1e-9)
            ),
            limit: "rows per page (parents + emails) <= batchSize".into(),
            target: "choose the default: fewest calls within 64 MiB".into(),
            verdict: Verdict::Info,
        });
    }
    Ok(rows)
}

/// A 6-month backfill read as P parallel slices, against a latency per call: wall time, calls
/// and memory at P = 1, 4, 8.
async fn sliced_backfill(scale: &Scale) -> anyhow::Result<Vec<Row>> {
    let (n, latency_ms) = scale.sliced;
    let shape = OrgShape {
        cases: n,
        emails: EMAILS,
        body_bytes: BODY_BYTES,
        latency_ms,
        gzip: false,
    };
    let mut rows = Vec::new();
    for p in [1usize, 4, 8] {
        let (r, stats) = child_backfill_sliced(
            &shape,
            casesync_core::sync::DEFAULT_BATCH_SIZE,
            p,
            None,
            None,
        )
        .await?;
        let per_page = if p == 1 {
            casesync_core::sync::DEFAULT_BATCH_SIZE
        } else {
            (casesync_core::sync::ROWS_IN_FLIGHT / p as u32).clamp(200, 1_000)
        };
        // The limit: 1.15 x ceil(pages / P) x latency, plus the slicing queries (the
        // COUNT() that decides whether to slice; a split's query serves a page, counted above).
        let slicing = stats["counts"].as_u64().unwrap_or(0);
        let bound = (1.15 * (r.pages as f64 / p as f64).ceil() + slicing as f64)
            * latency_ms as f64
            / 1_000.0;
        let mib = r.peak_rss_kib as f64 / 1024.0;
        rows.push(Row {
            figure: format!(
                "backfill of {n} Cases at {latency_ms} ms per call, P = {p} ({per_page} rows per page)"
            ),
            measured: format!(
                "{:.1} s, {} calls ({} pages), peak RSS {mib:.1} MiB, {:.0} Cases/CPU-s",
                r.wall_s,
                r.api_calls,
                r.pages,
                r.cases as f64 / r.cpu_s.max(1e-9)
            ),
            limit: format!(
                "1.15 x ceil(pages / P) x latency + {slicing} slicing queries x latency = \
                 {bound:.1} s"
            ),
            target: if p == 8 {
                "wall within the limit; <= 64 MiB".into()
            } else {
                "report".into()
            },
            verdict: if p == 8 {
                Verdict::of(r.wall_s <= bound && mib <= 64.0 && r.stored as usize == n)
            } else {
                Verdict::Info
            },
        });
    }
    // The AWS runtime: the default 4 slices into DynamoDB items (built as the store builds them,
    // then dropped), and what that CPU makes of the backfill on a 1,024 MB Lambda, which gets
    // 1,024 / 1,769 of a vCPU (Lambda allots one full vCPU at 1,769 MB).
    let (r, _) = child_backfill_with(
        &shape,
        casesync_core::sync::DEFAULT_BATCH_SIZE,
        4,
        None,
        None,
        "dynamo-items",
    )
    .await?;
    let share = 1_024.0 / 1_769.0;
    let cpu_bound = r.cpu_s / share;
    let estimate = r.wall_s.max(cpu_bound);
    rows.push(Row {
        figure: format!(
            "backfill of {n} Cases at {latency_ms} ms per call, P = 4, on a 1,024 MB Lambda's CPU \
             share ({share:.2} vCPU), into DynamoDB items (estimated)"
        ),
        measured: format!(
            "{:.1} CPU-s here ({:.0} Cases/CPU-s) = {cpu_bound:.1} s of the Lambda's share; wall \
             here {:.1} s; estimated {:.0} s ({})",
            r.cpu_s,
            r.cases as f64 / r.cpu_s.max(1e-9),
            r.wall_s,
            estimate,
            if cpu_bound > r.wall_s {
                "bound by CPU"
            } else {
                "bound by Salesforce's latency"
            },
        ),
        limit: "the larger of the wall time and CPU-seconds / share; DynamoDB's requests not \
                included"
            .into(),
        target: "stated".into(),
        verdict: Verdict::Info,
    });
    // Another client of the same user opens a query cursor every second while 8 slices read:
    // with 10 open cursors per user, every new one invalidates the oldest, often a slice's.
    let every = Duration::from_secs(1);
    let (r, stats) = child_backfill_sliced(
        &shape,
        casesync_core::sync::DEFAULT_BATCH_SIZE,
        8,
        Some(every),
        None,
    )
    .await?;
    let others = stats["other_client_queries"].as_u64().unwrap_or(0);
    let queries = stats["queries"]
        .as_u64()
        .unwrap_or(0)
        .saturating_sub(others);
    let lost = n as u64 - r.stored.min(n as u64);
    rows.push(Row {
        figure: format!(
            "backfill of {n} Cases at {latency_ms} ms per call, P = 8, another client of the \
             user opening a query cursor every {} s (10 open per user)",
            every.as_secs()
        ),
        measured: format!(
            "{} of {n} Cases stored ({lost} lost), {queries} queries by casesync ({} beyond \
             one per slice: re-queries after a lost cursor, and splits), {others} cursors \
             opened by the other client, {:.1} s",
            r.stored,
            queries.saturating_sub(8),
            r.wall_s
        ),
        limit: "an invalidated cursor costs a re-query from the slice's position".into(),
        target: "0 lost".into(),
        verdict: Verdict::of(lost == 0 && r.stored as usize == n),
    });
    Ok(rows)
}

/// Steady state: one connection, a tick every minute for a day, 1,000 Cases closed over it.
async fn steady_state(scale: &Scale) -> anyhow::Result<Row> {
    let day_start: DateTime<Utc> = Utc::now() - TimeDelta::days(3);
    let clock = Arc::new(ManualClock::new(day_start));
    let mut org = Org::new();
    let queue = org.add_queue("Tier 1 Support", "Tier_1_Support");
    let (sim, store, engine, id) = in_process(org, SyncConfig::default(), clock.clone()).await?;
    // The first run (the backfill of an empty org) is not steady state.
    engine.sync(&id, Duration::from_secs(60), None).await?;
    let before = sim.stats().data_calls;
    let ticks = scale.steady_ticks;
    let per_tick = scale.steady_cases as f64 / ticks as f64;
    let mut closed = 0usize;
    for t in 1..=ticks {
        let now = day_start + TimeDelta::minutes(t);
        // Cases closed during this minute, stamped as Salesforce would.
        let due = ((t as f64) * per_tick).round() as usize;
        sim.with_org(|o| {
            while closed < due {
                let at = now - TimeDelta::seconds(30);
                o.add_case(NewCase {
                    owner_id: Some(queue.clone()),
                    created_date: Some(at - TimeDelta::hours(2)),
                    system_modstamp: Some(at),
                    description: Some("steady".into()),
                    ..NewCase::default()
                });
                closed += 1;
            }
        });
        clock.set(now);
        let r = engine.sync(&id, Duration::from_secs(60), None).await?;
        anyhow::ensure!(r.outcome == SyncOutcome::Done, "tick {t}: {:?}", r);
    }
    // Everything closed more than the lag ago is in.
    let calls = sim.stats().data_calls - before;
    let imported = store.all_data_points().len();
    let hours = (ticks as f64 / 60.0).ceil() as u64;
    let limit = ticks as u64 + hours + (scale.steady_cases as u64).div_ceil(200);
    sim.shutdown().await;
    Ok(Row {
        figure: format!(
            "steady state: calls for {ticks} ticks at rate(1 minute), {} Cases closed",
            scale.steady_cases
        ),
        measured: format!("{calls} calls ({imported} Cases imported)"),
        limit: format!("one query per tick = {ticks}"),
        target: format!("<= {limit}"),
        verdict: Verdict::of(calls <= limit),
    })
}

/// DynamoDB write calls per 1,000 Cases (moto).
async fn dynamodb_writes(scale: &Scale) -> anyhow::Result<Row> {
    let aws = casesync_aws::testing::try_moto()
        .await
        .map_err(|e| anyhow::anyhow!("moto is needed for this figure: {e}"))?;
    let names = aws.tables("bench").await;
    let ddb = aws_sdk_dynamodb::Client::new(aws.sdk_config());
    let metrics = Arc::new(casesync_aws::Metrics::new());
    let points = Arc::new(
        casesync_aws::DynamoDataPointStore::new(ddb.clone(), &names.tables.data_points)
            .with_metrics(metrics.clone()),
    );
    let connections = Arc::new(casesync_aws::DynamoConnectionStore::new(
        ddb,
        &names.tables.connections,
    ));
    let org = Org::generated(OrgSpec {
        cases: scale.dynamo_cases,
        emails_per_case: EMAILS.0..=EMAILS.1,
        body_bytes: BODY_BYTES.0..=BODY_BYTES.1,
        ..OrgSpec::default()
    });
    let sim = Simulator::start(SimConfig::default(), org).await?;
    let secrets = Arc::new(MemoryStore::new());
    let (salesforce, connection) =
        connect_to(&sim, connections.as_ref(), secrets.as_ref(), Utc::now()).await?;
    let engine = SyncEngine::new(
        connections,
        points,
        secrets,
        Arc::new(SystemClock),
        salesforce,
        SyncConfig {
            lag: TimeDelta::zero(),
            ..SyncConfig::default()
        },
    );
    let started = Instant::now();
    let r = engine
        .sync(&connection.id, Duration::from_secs(3600), None)
        .await?;
    anyhow::ensure!(r.outcome == SyncOutcome::Done, "{r:?}");
    let used = metrics.snapshot();
    let n = r.counts.created as f64;
    let per_1000 = used.batch_write_item_calls as f64 * 1000.0 / n;
    sim.shutdown().await;
    Ok(Row {
        figure: format!(
            "DynamoDB write calls per 1,000 Cases (moto, {} Cases)",
            r.counts.created
        ),
        measured: format!(
            "{per_1000:.1} BatchWriteItem ({} retries) + {:.1} BatchGetItem; {:.1} s",
            used.retries,
            used.batch_get_item_calls as f64 * 1000.0 / n,
            started.elapsed().as_secs_f64()
        ),
        limit: "BatchWriteItem holds 25 = 40".into(),
        target: "<= 40 + retries".into(),
        verdict: Verdict::of(per_1000 <= 40.0 + used.retries as f64 * 1000.0 / n),
    })
}

/// Scheduler fan-out: one tick to `fan_out` connections on moto.
async fn scheduler_fan_out(scale: &Scale) -> anyhow::Result<Row> {
    let n = scale.fan_out;
    let (active, calls, elapsed) = crate::lambda::scheduler_fan_out(n).await?;
    let limit = active.div_ceil(10) as u64;
    Ok(Row {
        figure: format!("scheduler fan-out, {n} connections ({active} active; moto)"),
        measured: format!(
            "{calls} SendMessageBatch calls in {:.1} s",
            elapsed.as_secs_f64()
        ),
        limit: format!("SendMessageBatch holds 10 = {limit}"),
        target: format!("<= {}", n.div_ceil(10)),
        verdict: Verdict::of(calls <= n.div_ceil(10) as u64),
    })
}

/// Each function's arm64 bootstrap (from `sam build`) and its init time.
async fn lambda_functions(scale: &Scale) -> anyhow::Result<Vec<Row>> {
    let inits = crate::lambda::init_times(scale.init_runs).await?;
    Ok(inits
        .into_iter()
        .map(|(function, init)| {
            let size = crate::lambda::bootstrap_size(function).map_or_else(
                || "not built (run infra/scripts/deploy-checks.sh)".to_owned(),
                |b| format!("{:.1} MiB arm64", b as f64 / 1024.0 / 1024.0),
            );
            let init = init.map_or_else(
                || "binary not built".to_owned(),
                |d| {
                    format!(
                        "init {:.0} ms (local x86_64, moto)",
                        d.as_secs_f64() * 1000.0
                    )
                },
            );
            Row {
                figure: format!("Lambda {function}: bootstrap size, cold-start init"),
                measured: format!("{size}; {init}"),
                limit: "-".into(),
                target: "report".into(),
                verdict: Verdict::Info,
            }
        })
        .collect())
}
