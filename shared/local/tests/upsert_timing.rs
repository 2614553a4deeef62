//! How long a 200-point page of ~20 KB points takes to upsert. Ignored by default; run it
//! optimised:
//!
//! ```text
//! cargo test --release -p casesync-local --test upsert_timing -- --ignored --nocapture
//! ```

mod common;

use std::time::{Duration, Instant};

use casesync_core::data_point::DataPoint;
use casesync_core::domain::ConnectionId;
use casesync_core::ports::*;
use common::*;
use sha2::Digest;

const PAGE: u64 = 200;
const PAGES: u64 = 25;

/// CPU time of the whole process (every thread: the blocking pool does the writing).
fn cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn time(store: &casesync_local::SqliteStore, label: &str, pages: &[Vec<DataPoint>]) {
    let mut each = Vec::new();
    let mut total = UpsertCounts::default();
    let cpu = cpu_time();
    for page in pages {
        let started = Instant::now();
        total += store.upsert_data_points(page).await.unwrap();
        each.push(started.elapsed());
    }
    let cpu = (cpu_time() - cpu) / pages.len() as u32;
    let med = median(each);
    eprintln!(
        "{label:>9}: median {med:?} wall, {cpu:?} CPU per {PAGE}-point page = {:.0} points/s \
         per CPU second ({total:?})",
        PAGE as f64 / cpu.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
#[ignore = "a measurement, not a test: run with --release --ignored --nocapture"]
async fn upsert_200_points_of_20_kb() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt: u32 = std::env::var("CKPT")
        .map(|v| v.parse().unwrap())
        .unwrap_or(1000);
    let store = casesync_local::SqliteStore::open_with(
        dir.path().join("casesync.db"),
        &casesync_local::SqliteOptions {
            wal_autocheckpoint_pages: ckpt,
            ..Default::default()
        },
    )
    .unwrap();
    let conn = ConnectionId::new_random();
    // SIZE=5000 for smaller points; the default makes points of about 25 KB of JSON.
    let size: usize = std::env::var("SIZE").map_or(20_000, |v| v.parse().unwrap());
    let pages: Vec<Vec<_>> = (0..PAGES)
        .map(|p| {
            (0..PAGE)
                .map(|n| point(&conn, &case(p * PAGE + n), secs(0), size))
                .collect()
        })
        .collect();
    let bytes = serde_json::to_vec(&pages[0][0]).unwrap().len();

    // What the store does before SQLite: clone, serialise, hash.
    let (mut clone, mut serialise, mut hash) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for page in &pages {
        let t = Instant::now();
        let copy = page.to_vec();
        clone += t.elapsed();
        for p in &copy {
            let t = Instant::now();
            let body = serde_json::to_string(p).unwrap();
            serialise += t.elapsed();
            let t = Instant::now();
            std::hint::black_box(hex::encode(sha2::Sha256::digest(body.as_bytes())));
            hash += t.elapsed();
        }
    }
    let n = PAGES as u32;
    eprintln!(
        "per page: clone {:?}, serialise {:?}, hash {:?}",
        clone / n,
        serialise / n,
        hash / n
    );
    eprintln!("point size {bytes} bytes");
    time(&store, "create", &pages).await;
    time(&store, "unchanged", &pages).await;
    let newer: Vec<Vec<_>> = pages
        .iter()
        .map(|page| {
            page.iter()
                .map(|p| {
                    let mut p = p.clone();
                    p.system_modstamp = secs(1);
                    p
                })
                .collect()
        })
        .collect();
    time(&store, "update", &newer).await;
}
