//! Several stores (threads) and several OS processes on one database: cursor commits are
//! compare-and-swaps, leases are exclusive, racing upserts end at the newest version, no Case is
//! created twice, and a page write does not stall the async runtime.

mod common;

use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use casesync_core::domain::{ConnectionId, Cursor};
use casesync_core::ports::*;
use casesync_local::SqliteStore;
use chrono::TimeDelta;
use common::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn of_threads_committing_from_the_same_cursor_exactly_one_wins_each_round() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("casesync.db");
    let c = connection();
    runtime().block_on(async {
        let store = SqliteStore::open(&path).unwrap();
        store.insert_connection(&c).await.unwrap();
    });
    const THREADS: usize = 4;
    const ROUNDS: usize = 40;
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (barrier, path, id) = (barrier.clone(), path.clone(), c.id.clone());
            std::thread::spawn(move || {
                // Each thread has a store of its own: separate SQLite connections, like separate
                // processes.
                let store = SqliteStore::open(&path).unwrap();
                let rt = runtime();
                let mut results = Vec::new();
                for _ in 0..ROUNDS {
                    barrier.wait();
                    let seen = rt
                        .block_on(store.get_connection(&id))
                        .unwrap()
                        .unwrap()
                        .cursor;
                    barrier.wait(); // everyone has read the same cursor
                    let next =
                        Cursor::new(seen.system_modstamp + TimeDelta::seconds(1), case(t as u64));
                    let r = rt.block_on(store.commit_cursor(&id, &seen, &next));
                    assert!(matches!(r, Ok(()) | Err(StoreError::Conflict(_))), "{r:?}");
                    results.push(r.is_ok().then_some(next));
                }
                results
            })
        })
        .collect();
    let per_thread: Vec<Vec<Option<Cursor>>> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();

    let mut last = None;
    for round in 0..ROUNDS {
        let winners: Vec<&Cursor> = per_thread
            .iter()
            .filter_map(|r| r[round].as_ref())
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        last = Some(winners[0].clone());
    }
    let store = SqliteStore::open(&path).unwrap();
    let stored = runtime()
        .block_on(store.get_connection(&c.id))
        .unwrap()
        .unwrap()
        .cursor;
    assert_eq!(Some(stored.clone()), last);
    assert_eq!(
        stored.system_modstamp,
        c.cursor.system_modstamp + TimeDelta::seconds(ROUNDS as i64)
    );
}

#[test]
fn of_threads_racing_for_a_lease_exactly_one_gets_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("casesync.db");
    let c = connection();
    runtime().block_on(async {
        SqliteStore::open(&path)
            .unwrap()
            .insert_connection(&c)
            .await
            .unwrap();
    });
    for round in 0..10i64 {
        let barrier = Arc::new(Barrier::new(6));
        let handles: Vec<_> = (0..6)
            .map(|t| {
                let (barrier, path, id) = (barrier.clone(), path.clone(), c.id.clone());
                std::thread::spawn(move || {
                    let store = SqliteStore::open(&path).unwrap();
                    barrier.wait();
                    // Each round starts after the previous round's lease expired.
                    let now = secs(round * 100);
                    runtime()
                        .block_on(store.try_acquire_lease(
                            &id,
                            &format!("worker-{t}"),
                            now,
                            now + TimeDelta::seconds(60),
                        ))
                        .unwrap()
                })
            })
            .collect();
        let granted = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|g| *g)
            .count();
        assert_eq!(granted, 1, "round {round}");
    }
}

#[test]
fn racing_upserts_of_different_versions_end_at_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("casesync.db");
    SqliteStore::open(&path).unwrap();
    let conn = ConnectionId::new_random();
    const CASES: u64 = 100;
    const VERSIONS: i64 = 8;
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = [false, true]
        .into_iter()
        .map(|descending| {
            let (barrier, path, conn) = (barrier.clone(), path.clone(), conn.clone());
            std::thread::spawn(move || {
                let store = SqliteStore::open(&path).unwrap();
                let rt = runtime();
                let mut versions: Vec<i64> = (0..VERSIONS).collect();
                if descending {
                    versions.reverse();
                }
                barrier.wait();
                let mut total = UpsertCounts::default();
                for v in versions {
                    let page: Vec<_> = (0..CASES)
                        .map(|n| {
                            let mut p = small_point(&conn, n, secs(v));
                            p.status = format!("version {v}");
                            p
                        })
                        .collect();
                    total += rt.block_on(store.upsert_data_points(&page)).unwrap();
                }
                total
            })
        })
        .collect();
    let totals: Vec<UpsertCounts> = handles.into_iter().map(|h| h.join().unwrap()).collect();

    let store = SqliteStore::open(&path).unwrap();
    let rt = runtime();
    for n in 0..CASES {
        let p = rt
            .block_on(store.get_data_point(&conn, &case(n)))
            .unwrap()
            .unwrap();
        assert_eq!(p.system_modstamp, secs(VERSIONS - 1), "case {n}");
        assert_eq!(p.status, format!("version {}", VERSIONS - 1));
    }
    let created: u64 = totals.iter().map(|t| t.created).sum();
    assert_eq!(
        created, CASES,
        "every Case created exactly once: {totals:?}"
    );
    let all: u64 = totals
        .iter()
        .map(|t| t.created + t.updated + t.unchanged + t.stale)
        .sum();
    assert_eq!(all, 2 * CASES * VERSIONS as u64);
}

#[test]
fn many_stores_opening_a_fresh_database_at_once_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("casesync.db");
    let barrier = Arc::new(Barrier::new(6));
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let (barrier, path) = (barrier.clone(), path.clone());
            std::thread::spawn(move || {
                barrier.wait();
                SqliteStore::open(&path).map(drop)
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }
}

/// Child side of the multi-process test: runs only when the parent test sets the variables.
#[test]
fn child_process_syncs_one_connection() {
    let Ok(db) = std::env::var("CASESYNC_LOCAL_TEST_DB") else {
        return;
    };
    let id = ConnectionId::parse(&std::env::var("CASESYNC_LOCAL_TEST_CONN").unwrap()).unwrap();
    let steps: i64 = std::env::var("CASESYNC_LOCAL_TEST_STEPS")
        .unwrap()
        .parse()
        .unwrap();
    let store = SqliteStore::open(&db).unwrap();
    let rt = runtime();
    rt.block_on(async {
        let start = secs(-1_000_000);
        loop {
            let cursor = store.get_connection(&id).await.unwrap().unwrap().cursor;
            let step = (cursor.system_modstamp - start).num_seconds();
            if step >= steps {
                break;
            }
            // Import "this step's Cases" (the same for every process), then move the cursor.
            let page: Vec<_> = (0..5)
                .map(|k| small_point(&id, (step * 5 + k) as u64, secs(step)))
                .collect();
            let counts = store.upsert_data_points(&page).await.unwrap();
            println!("CREATED {}", counts.created);
            let next = Cursor::at(cursor.system_modstamp + TimeDelta::seconds(1));
            match store.commit_cursor(&id, &cursor, &next).await {
                Ok(()) => println!("WON {step}"),
                Err(StoreError::Conflict(_)) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
    });
}

#[test]
fn processes_syncing_one_connection_move_its_cursor_once_per_step_and_create_each_case_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("casesync.db");
    let mut c = connection();
    c.cursor = Cursor::at(secs(-1_000_000));
    runtime().block_on(async {
        SqliteStore::open(&path)
            .unwrap()
            .insert_connection(&c)
            .await
            .unwrap();
    });
    const STEPS: i64 = 60;
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..3)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "child_process_syncs_one_connection",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("CASESYNC_LOCAL_TEST_DB", &path)
                .env("CASESYNC_LOCAL_TEST_CONN", c.id.as_str())
                .env("CASESYNC_LOCAL_TEST_STEPS", STEPS.to_string())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut won = Vec::new();
    let mut created = 0u64;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // libtest prints "test child_... ... " before the first line of output, unterminated.
        for line in stdout.lines() {
            if let Some((_, step)) = line.split_once("WON ") {
                won.push(step.trim().parse::<i64>().unwrap());
            } else if let Some((_, n)) = line.split_once("CREATED ") {
                created += n.trim().parse::<u64>().unwrap();
            }
        }
    }
    won.sort();
    assert_eq!(
        won,
        (0..STEPS).collect::<Vec<_>>(),
        "each step won exactly once"
    );
    assert_eq!(created, STEPS as u64 * 5, "each Case created exactly once");
    let store = SqliteStore::open(&path).unwrap();
    let rt = runtime();
    assert_eq!(
        rt.block_on(store.count_data_points(&c.id)).unwrap(),
        STEPS as u64 * 5
    );
    assert_eq!(
        rt.block_on(store.get_connection(&c.id))
            .unwrap()
            .unwrap()
            .cursor,
        Cursor::at(secs(-1_000_000 + STEPS))
    );
}

/// A page write runs on the blocking pool: a timer on the same single-threaded runtime keeps
/// firing while 200 points of 20 KB are written, again and again.
#[test]
fn a_page_write_does_not_stall_the_runtime() {
    let (_dir, store) = temp_store();
    let conn = ConnectionId::new_random();
    let rt = runtime();
    rt.block_on(async {
        let pages: Vec<Vec<_>> = (0..5)
            .map(|page| {
                (0..200)
                    .map(|n| point(&conn, &case(page * 200 + n), secs(0), 20_000))
                    .collect()
            })
            .collect();
        let ticker = tokio::spawn(async {
            let mut worst = Duration::ZERO;
            let mut last = Instant::now();
            let end = Instant::now() + Duration::from_millis(1500);
            while Instant::now() < end {
                tokio::time::sleep(Duration::from_millis(1)).await;
                worst = worst.max(last.elapsed());
                last = Instant::now();
            }
            worst
        });
        let mut slowest = Duration::ZERO;
        let writes = Instant::now();
        for page in &pages {
            let started = Instant::now();
            store.upsert_data_points(page).await.unwrap();
            slowest = slowest.max(started.elapsed());
        }
        let writing = writes.elapsed();
        let worst_gap = ticker.await.unwrap();
        eprintln!("5 pages in {writing:?}, slowest {slowest:?}, worst timer gap {worst_gap:?}");
        // If the writes ran on the runtime thread, the timer would wait for the whole SQLite
        // part of a page write (about 2/3 of it in a debug build, more in release); what runs
        // on it by design is serialisation in chunks of a few points. The bound leaves room for
        // the OS to deschedule this thread on a loaded machine.
        assert!(
            worst_gap < (slowest / 2).max(Duration::from_millis(40)),
            "timer stalled {worst_gap:?} (slowest page {slowest:?})"
        );
    });
}
