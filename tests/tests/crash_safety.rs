//! Crash safety as a property: whatever the dataset (timestamp ties across pages, and across the
//! bounds of a sliced backfill's slices), the page size, the crash points (after any store
//! write, so also between a page's write and its cursor commit), one stream or several parallel
//! slices, edits between runs and two workers racing on one connection, the final set of data
//! points equals the closed queue-owned Cases of the org: none lost, none duplicated, each at
//! its latest version.
//!
//! `PROPTEST_CASES` sets the number of generated cases (64 by default; the reliability suite
//! runs 1,000).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use casesync_core::domain::{BackfillPlan, BackfillWindow, Cursor, QueueScope};
use casesync_core::memory::ManualClock;
use casesync_core::ports::{Clock, ConnectionReader};
use casesync_core::sync::{SyncConfig, SyncOutcome};
use casesync_tests::*;
use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use sf_simulator::{NewCase, Org, SimConfig};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

#[derive(Debug, Clone)]
struct CaseSpec {
    /// Index into a small set of instants, so many Cases share a SystemModstamp.
    stamp: usize,
    closed: bool,
    queue_owned: bool,
    emails: usize,
}

#[derive(Debug, Clone)]
struct Scenario {
    cases: Vec<CaseSpec>,
    page_cap: Option<u32>,
    child_inline_limit: usize,
    /// Writes allowed before each simulated crash; a final run always completes.
    crashes: Vec<u64>,
    /// Cases re-saved (re-stamped, new subject) between runs, by index.
    edits: Vec<usize>,
    racing: bool,
    /// Points per store write (a batching store, like DynamoDB's 25), or any number.
    write_batch: Option<usize>,
    /// Parallel slices of the backfill (1: one stream).
    slices: usize,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let case = (
        0usize..12,
        prop::bool::weighted(0.85),
        prop::bool::weighted(0.85),
        0usize..4,
    )
        .prop_map(|(stamp, closed, queue_owned, emails)| CaseSpec {
            stamp,
            closed,
            queue_owned,
            emails,
        });
    (
        prop::collection::vec(case, 0..160),
        prop_oneof![
            Just(None),
            (1u32..=2000).prop_map(Some),
            (1u32..=20).prop_map(Some)
        ],
        1usize..=3,
        prop::collection::vec(0u64..40, 0..4),
        prop::collection::vec(0usize..160, 0..6),
        any::<bool>(),
        prop_oneof![Just(None), Just(Some(25usize)), (1usize..10).prop_map(Some)],
        prop_oneof![Just(1usize), 2usize..=6],
    )
        .prop_map(
            |(cases, page_cap, child_inline_limit, crashes, edits, racing, write_batch, slices)| {
                Scenario {
                    cases,
                    page_cap,
                    child_inline_limit,
                    crashes,
                    edits,
                    racing,
                    write_batch,
                    slices,
                }
            },
        )
}

fn stamp(base: DateTime<Utc>, i: usize) -> DateTime<Utc> {
    base + TimeDelta::minutes(i as i64 * 13)
}

/// What one generated case exercised.
#[derive(Default)]
struct Tried {
    crashes: u64,
    races: u64,
    batching: u64,
    cases: u64,
    edits: u64,
    sliced: u64,
}

async fn check(s: Scenario, tried: &Mutex<Tried>) -> Result<(), TestCaseError> {
    let mut org = Org::new();
    let queue = org.add_queue("Tier 1 Support", "Tier_1_Support");
    let user = org.add_user("Agent");
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let h = Harness::start_with_clock(
        SimConfig {
            page_size_cap: s.page_cap,
            child_inline_limit: s.child_inline_limit,
            ..SimConfig::default()
        },
        org,
        SyncConfig {
            slices: s.slices,
            // The generated orgs are small: slice them anyway.
            slice_min_cases: 0,
            ..SyncConfig::default()
        },
        test_http(),
        clock.clone(),
    )
    .await;
    let conn = h.connect(QueueScope::All, BackfillWindow::Days7).await;
    h.store.set_write_batch_size(s.write_batch);
    // The Cases' stamps: around the first bound between slices when the backfill is sliced
    // (stamp 6 lies exactly on it, with its ties), three days back otherwise.
    let base = if s.slices > 1 {
        let until = Cursor::at(clock.now() - SyncConfig::default().lag).system_modstamp;
        let plan = BackfillPlan::new(&conn.cursor, until, s.slices);
        plan.slices[0].upper - TimeDelta::minutes(6 * 13)
    } else {
        minutes_ago(3 * 24 * 60)
    };
    let mut ids = Vec::new();
    h.sim.with_org(|org| {
        for (i, c) in s.cases.iter().enumerate() {
            let at = stamp(base, c.stamp);
            let id = org.add_case(NewCase {
                subject: Some(format!("case {i}")),
                status: if c.closed {
                    "Closed".into()
                } else {
                    "Working".into()
                },
                owner_id: Some(if c.queue_owned {
                    queue.clone()
                } else {
                    user.clone()
                }),
                created_date: Some(base - TimeDelta::hours(1)),
                system_modstamp: Some(at),
                ..NewCase::default()
            });
            for e in 0..c.emails {
                email(
                    org,
                    &id,
                    base - TimeDelta::minutes(30 - e as i64),
                    e % 2 == 0,
                    &format!("mail {e}"),
                );
            }
            ids.push(id);
        }
    });

    {
        let mut t = tried.lock().unwrap();
        t.crashes += s.crashes.len() as u64;
        t.races += u64::from(s.racing);
        t.batching += u64::from(s.write_batch.is_some());
        t.cases += s.cases.len() as u64;
        t.sliced += u64::from(s.slices > 1);
        t.edits += s
            .edits
            .iter()
            .filter(|&&i| i < ids.len())
            .count()
            .min(s.crashes.len()) as u64;
    }
    let mut edits = s.edits.iter().filter(|&&i| i < ids.len()).peekable();
    for (round, &allowed) in s.crashes.iter().enumerate() {
        h.store.crash_after_writes(allowed);
        let _ = h.engine.sync(&conn.id, Duration::from_secs(30), None).await;
        h.store.heal();
        // A crashed run leaves its lease behind; it expires.
        clock.advance(TimeDelta::minutes(10));
        if let Some(&i) = edits.next() {
            // One stream: stamped after every Case, behind the cursor's back (a row that
            // became visible late). Sliced: as Salesforce stamps an edit, now: a backfill's
            // slices hold only what was visible when it was planned (now − lag, the lag's
            // premise), and what is stamped later is read after it.
            let at = if s.slices > 1 {
                Cursor::at(clock.now()).system_modstamp
            } else {
                stamp(base, 20 + round)
            };
            h.sim.with_org(|o| {
                o.update_case(&ids[i], |c| {
                    c.subject = Some(format!("case {i} edited {round}"))
                });
                o.touch(&ids[i], at);
            });
        }
    }
    // Two workers at once, then to the end.
    if s.racing {
        let (a, b) = tokio::join!(
            h.engine.sync(&conn.id, Duration::from_secs(30), None),
            h.engine.sync(&conn.id, Duration::from_secs(30), None)
        );
        let outcomes = [a.unwrap().outcome, b.unwrap().outcome];
        prop_assert!(outcomes.contains(&SyncOutcome::Done), "{outcomes:?}");
    }
    clock.advance(TimeDelta::minutes(10));
    let last = h.sync_to_end(&conn.id).await;
    prop_assert_eq!(last.last().map(|r| r.outcome), Some(SyncOutcome::Done));

    // Expected: every closed queue-owned Case, at its final subject and stamp.
    let expected: BTreeMap<String, (Option<String>, DateTime<Utc>)> = h.sim.with_org(|o| {
        o.cases()
            .iter()
            .filter(|c| c.is_closed() && c.owner_id.as_str() == queue)
            .map(|c| {
                (
                    c.id.as_str().to_owned(),
                    (c.subject.clone(), c.system_modstamp),
                )
            })
            .collect()
    });
    let points = h.points();
    let got: BTreeMap<String, (Option<String>, DateTime<Utc>)> = points
        .iter()
        .map(|p| {
            (
                p.case_id.to_string(),
                (p.subject.clone(), p.system_modstamp),
            )
        })
        .collect();
    prop_assert_eq!(points.len(), got.len(), "duplicated data points");
    let lost: Vec<_> = expected.keys().filter(|k| !got.contains_key(*k)).collect();
    prop_assert!(lost.is_empty(), "lost: {:?}", lost);
    prop_assert_eq!(&got, &expected, "every data point at its latest version");
    let conversation_ok = points.iter().all(|p| {
        let n = s.cases[ids.iter().position(|i| i == p.case_id.as_str()).unwrap()].emails;
        p.conversation.len() == n.max(1) || (n == 0 && p.conversation.is_empty())
    });
    prop_assert!(conversation_ok, "every thread complete");
    let c = h.store.get_connection(&conn.id).await.unwrap().unwrap();
    prop_assert!(c.failures.is_empty(), "{:?}", c.failures);
    prop_assert_eq!(h.sim.stats().write_attempts, 0);
    Ok(())
}

#[test]
fn crashes_reruns_edits_and_races_lose_nothing_and_duplicate_nothing() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        ..ProptestConfig::default()
    });
    let tried = Mutex::new(Tried::default());
    let result = runner.run(&scenario(), |s| runtime().block_on(check(s, &tried)));
    if let Err(e) = result {
        panic!("{e}");
    }
    let t = tried.into_inner().unwrap();
    // Every trial asserted the final set exactly; reaching here means all held.
    let mut figures = Figures::new(format!(
        "crash safety property: {} Cases in all, {} crashes injected after any store write, {} \
         edits between runs, {} races of two workers, {} runs on a batching store, {} sliced \
         backfills",
        t.cases, t.crashes, t.edits, t.races, t.batching, t.sliced
    ));
    figures.trials = u64::from(cases);
    figures.report();
}
